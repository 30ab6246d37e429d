"""``python -m structbert_lite.bench [--out DIR] [--model DIR] [--shapes base,student] [--threads N] [--rounds N]
[--peers A,B] [--throughput-cap S] [--quick]`` (``make bench``)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

DEFAULT_OUT = Path("bench/out")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m structbert_lite.bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: bench/out)")
    parser.add_argument("--model", default=None, help="a ModelScope-layout checkpoint folder (default: random weights)")
    parser.add_argument("--config", default=None, help="pipeline config whose variants are ours, built by its steps "
                        "(default: configs/structbert-base.yaml, the published recipe)")
    parser.add_argument("--shapes", default="base,student", help="model shapes to run, comma-separated "
                        "(default: base,student; "
                        "student = the config's distill step's student size on the same vocabulary)")
    parser.add_argument("--threads", type=int, default=2, help="thread budget of every contender (default: 2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: 3; quick: 1)")
    parser.add_argument("--peers", default=None, help="only these peers, comma-separated (default: all; the baseline "
                        "pytorch-fp32 always runs)")
    parser.add_argument("--throughput-cap", type=float, default=None, help="seconds per throughput block (default: 30)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats: checks the harness in seconds")
    args = parser.parse_args(argv)
    if args.peers is not None:
        from structbert_lite.bench.contenders import BASELINE, PEERS

        args.peers = tuple(dict.fromkeys([BASELINE] + [p.strip() for p in args.peers.split(",") if p.strip()]))
        if set(args.peers) - set(PEERS):
            parser.error(f"--peers: unknown {sorted(set(args.peers) - set(PEERS))}; choose from {', '.join(PEERS)}")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be >= 1")
    args.shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    if not args.shapes or set(args.shapes) - {"base", "student"}:
        parser.error(f"--shapes {','.join(args.shapes)}: choose from base, student")
    if args.model and not Path(args.model).is_dir():
        parser.error(f"--model {args.model}: not a folder (give a ModelScope-layout checkpoint folder)")
    return args


def main(argv: list[str] | None = None) -> int:
    from structbert_lite.bench.runner import run_benchmark
    from structbert_lite.bench.settings import BenchSettings

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    # Our progress at INFO; libraries (onnxruntime's quantizer logs every tensor at INFO) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("structbert_lite").setLevel(logging.INFO)
    overrides = {"threads": args.threads, "model_dir": args.model, "shapes": args.shapes}
    if args.config:
        overrides["config_path"] = args.config
    if args.rounds:
        overrides["rounds"] = args.rounds
    if args.peers is not None:
        overrides["peers"] = args.peers
    if args.throughput_cap:
        overrides["throughput_cap_s"] = args.throughput_cap
    settings = BenchSettings.quick_run(**overrides) if args.quick else BenchSettings.full_run(**overrides)
    command = "python -m structbert_lite.bench " + " ".join(shlex.quote(a) for a in argv)
    results = run_benchmark(settings, args.out, command.strip())
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}, {args.out / 'chart.png'} "
          f"in {results['wall_s']:.0f} s")
    if not results["trust"]["verified"]:
        print("  NOT VERIFIED (do not quote these figures): " + "; ".join(results["trust"]["reasons"][:3]))
    for check in results["checks"]:
        mark = {True: "PASS", False: "FAIL", None: "PENDING"}[check["passed"]]
        value = "—" if check["value"] is None else f"{check['value']:.2f}x"
        print(f"  {mark:7s} {check['name']}: {value} (limit {check['limit']:.1f}x)")
    for shape_name, shape in results["shapes"].items():
        for name, entry in shape["contenders"].items():
            if entry.get("error"):
                print(f"  contender {shape_name}/{name}: {entry['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
