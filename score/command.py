"""The `score` and `export-triton` subcommands: arguments and what they print (imported by structbert_lite.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifact", required=True, type=Path,
                        help="a published set (artifacts/demo: its fastest variant on this CPU) or one of its "
                             "variant folders (artifacts/demo/int8-dynamic)")
    parser.add_argument("--input", required=True,
                        help="CSV/TSV/JSONL/JSON/Parquet file, or a quoted glob of shards ('data/*.parquet')")
    parser.add_argument("--output", required=True, type=Path,
                        help=".parquet/.csv/.tsv/.jsonl: the input columns + label, score, prob_*, error")
    parser.add_argument("--text-column", default="text", help="column holding the texts (default: text)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local worker processes (default) or a Ray cluster")
    parser.add_argument("--ray-address",
                        help="ray: join this running cluster (host:port; default $RAY_ADDRESS, else start a local one)")
    parser.add_argument("--workers", type=int,
                        help="worker processes (local) or actors (ray); default: CPUs // threads")
    parser.add_argument("--threads", type=int, help="onnxruntime threads per worker/actor (default 1)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="most texts per model call (default 32): length-sorted and padded, or of one exact "
                             "token length, or 1, as the variant's measured batch invariance allows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")


def score_command(args: argparse.Namespace) -> int:
    from structbert_lite.score.job import ScoreOptions, score_corpus

    options = ScoreOptions(
        artifact=args.artifact, input=args.input, output=args.output, text_column=args.text_column,
        engine=args.engine, ray_address=args.ray_address, workers=args.workers, threads=args.threads,
        batch_size=args.batch_size, quiet=args.quiet,
    )
    print(score_corpus(options).describe())
    return 0


def add_export_triton_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifact", required=True, type=Path, help="a published ONNX variant folder")
    parser.add_argument("--out", required=True, type=Path, help="the Triton model repository to write (or add to)")
    parser.add_argument("--name", help="model name in the repository (default: the variant folder's name)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="largest batch Triton's dynamic batcher forms")
    parser.add_argument("--instances", type=int, default=1, help="CPU model instances (each one onnxruntime session)")


def export_triton_command(args: argparse.Namespace) -> int:
    from structbert_lite.score.triton import export_triton

    model_dir = export_triton(args.artifact, args.out, name=args.name, max_batch_size=args.max_batch_size,
                              instances=args.instances)
    print(f"Wrote the Triton model {model_dir.name!r} into {args.out} (config.pbtxt checked against Triton's schema).")
    print(f"Serve it with: tritonserver --model-repository {Path(args.out).resolve()}")
    return 0
