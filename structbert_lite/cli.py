"""The `structbert-lite` command: run | serve | verify | finetune | score | export-triton | config show.

    structbert-lite run --config FILE [--model SRC] [--eval SRC] [--out DIR] [--text-column C] [--label-column C]
                        [--distill-data FILE] [--quiet]
    structbert-lite serve --artifact DIR [--host 127.0.0.1] [--port 5000]
    structbert-lite verify DIR
    structbert-lite finetune --model SRC --train FILE [--eval FILE] --out DIR [--config FILE] [--text-column C]
                             [--label-column C] [--quiet]
    structbert-lite score --artifact DIR --input PATH|GLOB --output PATH [--engine local|ray] [--ray-address ADDR]
                          [--workers N] [--threads T]
    structbert-lite export-triton --artifact DIR --out REPO
    structbert-lite config show --config FILE
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path

from structbert_lite import __version__
from structbert_lite.errors import GateError, StructbertLiteError

# Exit statuses (README "Exit codes"): 0 published (everything passed); 1 an unexpected error (a bug: please
# report it with the traceback); 2 a user error (the message says how to fix it); 3 a gate failed (what passed
# was published as a set, the reports say why the rest was not); 4 published, but the machine was too busy to
# verify the speed checks; 5 serve could not bind its port; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM),
# cleaned up as Ctrl-C is.
EXIT_BUG, EXIT_ERROR, EXIT_GATE, EXIT_SPEED_UNVERIFIED = 1, 2, 3, 4
# What `run` and `finetune` need beyond a serve-only install.
CONVERT_MODULES = ("torch", "transformers", "onnx")
MODEL_HELP = "ModelScope id, hf:<owner>/<name>, a local ModelScope-layout folder, or 'demo'"


_ORT_PACKAGE = "/onnxruntime/"


def _quiet_onnxruntime(record: logging.LogRecord) -> bool:
    """Drop onnxruntime's INFO chatter (and its generic pre-processing hint); keep its real warnings."""
    if _ORT_PACKAGE not in record.pathname.replace("\\", "/"):
        return True
    return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


def _configure_logging(verbose: int, quiet: bool, compact: bool = False) -> None:
    """``compact`` (`run` without -v): stderr gets warnings and one line per stage (structbert_lite.console);
    the full INFO log goes to OUT/run.log."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from structbert_lite import console

    console.enable_stage_lines(compact and not verbose and not quiet)
    for handler in logging.getLogger().handlers if compact and not verbose else ():
        if console.is_stderr_handler(handler):
            handler.setLevel(max(handler.level, logging.WARNING))
    if verbose < 2:
        # onnxruntime's optimizer logs every fused node at INFO through module-named loggers
        # (fusion_attention, onnx_model_bert, ...); its quantizer logs a generic pre-processing hint
        # through the root logger. Neither says anything the fusion/structure checks do not.
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_onnxruntime)


def require_convert_extra(command: str) -> None:
    """One clear line instead of a ModuleNotFoundError deep inside, when a serve-only install runs `command`."""
    import importlib.util

    missing = [m for m in CONVERT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise StructbertLiteError(
            f"`structbert-lite {command}` needs the convert extra ({', '.join(missing)} not installed): "
            "pip install 'structbert-lite[convert]' (or `make setup`); serving alone needs only the base install"
        )


def _cmd_run(args: argparse.Namespace) -> int:
    from structbert_lite.config import load_config

    require_convert_extra("run")
    cfg = load_config(args.config)
    from structbert_lite.pipeline import RunOptions, run
    from structbert_lite.validate.report import fastest_published

    opts = RunOptions(args.model, args.eval, args.text_column, args.label_column, args.out, args.quiet,
                      distill_data=args.distill_data)
    try:
        result = run(cfg, opts)
    except GateError as exc:
        print(f"\nGate failed: what failed was not published.\n{exc}", file=sys.stderr)
        return EXIT_GATE
    print(result.summary)
    print(f"\nPublished {len(result.published)} variant(s) as one set: {result.out}; report: {result.report_md}")
    fastest = fastest_published(result.report)
    if fastest:
        print(fastest)
    if result.left_out:
        print(f"Left out (optional, failed on this machine; see the report): {', '.join(result.left_out)}",
              file=sys.stderr)
    if not result.speed_verified:
        from structbert_lite.console import speed_unverified_line

        print(speed_unverified_line(result.report, args.speed_unverified_ok, EXIT_SPEED_UNVERIFIED), file=sys.stderr)
        return 0 if args.speed_unverified_ok else EXIT_SPEED_UNVERIFIED
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from structbert_lite.serve.server import PortInUseError, serve_from_args

    try:
        return serve_from_args(args)
    except PortInUseError as exc:  # its own exit status (5): 3 means a failed gate
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from structbert_lite.config import load_config

    print(yaml.safe_dump(load_config(args.config).resolved(), allow_unicode=True, sort_keys=False), end="")
    return 0


def _data_flags() -> argparse.ArgumentParser:
    """The data flags `run` and `finetune` share (an argparse parent)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--text-column", help="text column of the data files (default: text)")
    flags.add_argument("--label-column", help="label column of the data files (default: label)")
    flags.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    return flags


def _cmd_verify(args: argparse.Namespace) -> int:
    from structbert_lite.publish.verify import verify_command

    return verify_command(Path(args.folder))


def _cmd_finetune(args: argparse.Namespace) -> int:
    require_convert_extra("finetune")
    from structbert_lite.train.finetune import FinetuneOptions, finetune, summarize

    opts = FinetuneOptions(
        args.model, args.train, args.out, args.eval, args.config, args.text_column, args.label_column, args.quiet
    )
    print(summarize(finetune(opts)))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from structbert_lite.score.command import score_command

    return score_command(args)


def _cmd_export_triton(args: argparse.Namespace) -> int:
    from structbert_lite.score.command import export_triton_command

    return export_triton_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="structbert-lite", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"structbert-lite {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: library internals)")
    sub = parser.add_subparsers(dest="command", required=True)

    data_flags = _data_flags()
    run = sub.add_parser("run", help="convert, quantize, validate and publish (gated)", parents=[data_flags])
    run.add_argument("--config", required=True, help="pipeline YAML (see configs/)")
    run.add_argument("--model", help=MODEL_HELP)
    run.add_argument("--eval", help="eval data: CSV/TSV/JSONL/Parquet file or a dataset id (default: the config's)")
    run.add_argument("--out", type=Path, help="output folder (default: artifacts/<config name>)")
    run.add_argument("--distill-data", help="unlabelled in-domain texts (CSV/TSV/JSONL/Parquet) for every distill step")
    run.add_argument("--speed-unverified-ok", action="store_true",
                     help="exit 0, not 4, when the set was published but a busy machine left its speed unverified "
                          "(`make demo`); a failed gate or a user error still fails")
    run.set_defaults(func=_cmd_run)

    serve = sub.add_parser("serve", help="serve a published variant over REST (onnxruntime + tokenizers only)")
    from structbert_lite.serve.server import add_serve_arguments

    add_serve_arguments(serve)
    serve.set_defaults(func=_cmd_serve)

    verify = sub.add_parser("verify", help="check a published folder against its manifest (hashes, files)")
    verify.add_argument("folder", help="a variant folder, or a folder holding several")
    verify.set_defaults(func=_cmd_verify)

    tune = sub.add_parser("finetune", help="fine-tune a checkpoint on labelled reviews (ModelScope layout out)",
                          parents=[data_flags])
    tune.add_argument("--model", required=True, help=MODEL_HELP)
    tune.add_argument("--train", required=True,
                      help="labelled training data: CSV/TSV/JSONL/Parquet (columns as --eval)")
    tune.add_argument("--eval", help="labelled eval data (default: a held-out share of --train)")
    tune.add_argument("--out", required=True, type=Path,
                      help="folder for the fine-tuned checkpoint (written atomically)")
    tune.add_argument("--config", help="YAML with a finetune: section (see configs/finetune.yaml)")
    tune.set_defaults(func=_cmd_finetune)

    config = sub.add_parser("config", help="inspect a pipeline config").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print the config fully resolved (every default spelled out) as YAML")
    show.add_argument("--config", required=True, help="pipeline YAML (see configs/)")
    show.set_defaults(func=_cmd_config_show)

    from structbert_lite.score.command import add_export_triton_arguments, add_score_arguments

    score = sub.add_parser("score", help="label a corpus (CSV/TSV/JSONL/Parquet, a file or a glob) locally or on Ray")
    add_score_arguments(score)
    score.set_defaults(func=_cmd_score)

    triton = sub.add_parser("export-triton", help="a Triton Inference Server model repository from a variant folder")
    add_export_triton_arguments(triton)
    triton.set_defaults(func=_cmd_export_triton)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same clean-up runs (exit 143)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose, getattr(args, "quiet", False), compact=args.command == "run")
    if args.command != "serve" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)  # serve shuts down gracefully on its own
    try:
        return args.func(args)
    except StructbertLiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            return _report_bug()
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"error: the disk is full (No space left on device){where}: free some space and re-run; "
              "nothing half-written was published", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: nothing half-written was published",
              file=sys.stderr)
        return 143 if terminated else 130
    except Exception:  # noqa: BLE001 - what is left is a bug: _report_bug prints its traceback, exit 1
        return _report_bug()


def _report_bug() -> int:
    traceback.print_exc()
    print("error: an unexpected error, a bug in structbert-lite or in a library it calls (not a problem with your "
          "model or data): please report it with the traceback above and the command you ran", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
