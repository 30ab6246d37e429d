"""Kill the real pipeline at random moments and check the published set after every kill.

    .venv/bin/python -m tests.publish.kill_loop --runs 30 [--work /tmp/kill-loop] [--seed 1]

A tiny self-labelled checkpoint and config (as tests/cli/test_run_cli.py builds them) are published once;
then each round starts `structbert-lite run` on the same output folder, SIGKILLs it after a random delay
(or lets it finish), and checks that ``OUT`` is a complete set — the old one or the new one, never a mix —
with `verify` and by reading every variant's run id. A second run started during the first must be refused.
Prints one line per round and the counts at the end. Not collected by pytest (minutes, not seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from structbert_lite.publish.output_set import RUN_MANIFEST, runs_root
from structbert_lite.publish.verify import verify_tree
from tests.builders import self_labels, write_eval_csv, write_tiny_checkpoint
from tests.cli.test_run_cli import TEXTS, tiny_config

CLI = [sys.executable, "-m", "structbert_lite.cli"]


def set_state(out: Path) -> tuple[str, list[str]]:
    """(the run the set belongs to, problems): every variant's manifest must name the same run config."""
    if not os.path.lexists(out):
        return "none", []
    problems = [p for ps in verify_tree(out).values() for p in ps]
    manifest = json.loads((out / RUN_MANIFEST).read_text(encoding="utf-8"))
    return manifest["run"], problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.publish.kill_loop")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kill-loop"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = write_tiny_checkpoint(work / "ckpt", layout="modelscope", center_on=TEXTS)
    eval_csv = write_eval_csv(work / "eval.csv", TEXTS, self_labels(checkpoint, TEXTS, max_length=64))
    config = tiny_config(work, {"max_size_mb": 5})
    out = work / "out"
    command = CLI + ["run", "--config", config, "--model", str(checkpoint), "--eval", str(eval_csv),
                     "--out", str(out), "--quiet"]
    started = time.monotonic()
    first = subprocess.run(command, capture_output=True, text=True)
    full_run_s = time.monotonic() - started
    print(f"reference run: exit {first.returncode} in {full_run_s:.0f} s; set {set_state(out)[0]}", flush=True)
    counts = {"old set": 0, "new set": 0, "mixed or broken": 0, "second run refused": 0, "second run not refused": 0}
    for index in range(args.runs):
        before, _ = set_state(out)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        launched = time.monotonic()
        delay = rng.uniform(0.5, full_run_s * 1.1)
        if index % 5 == 0:  # now and then, a second run on the same folder while the first holds it
            time.sleep(min(delay, 3.0))
            second = subprocess.run(command, capture_output=True, text=True)
            refused = second.returncode == 2 and "in use by another structbert-lite run" in second.stderr
            counts["second run refused" if refused else "second run not refused"] += 1
        time.sleep(max(0.0, launched + delay - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after, problems = set_state(out)
        verdict = "mixed or broken" if problems else ("old set" if after == before else "new set")
        counts[verdict] += 1
        leftovers = [p.name for p in runs_root(out).iterdir() if p.is_dir() and not (p / RUN_MANIFEST).is_file()
                     and p.name[0].isdigit()]
        print(f"round {index + 1}: killed after {delay:.1f} s → {verdict}{' ' + str(problems) if problems else ''}"
              f" (incomplete run folders until the next run cleans them: {len(leftovers)})", flush=True)
    print(json.dumps(counts))
    return 1 if counts["mixed or broken"] or counts["second run not refused"] else 0


if __name__ == "__main__":
    sys.exit(main())
