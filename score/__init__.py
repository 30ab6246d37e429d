"""Score a corpus: `structbert-lite score` on one machine (worker processes) or on a Ray cluster.

    inputs.py       one file or a glob of shards (CSV/TSV/JSONL/JSON/Parquet), checked before any work starts
    texts.py        which values are scorable texts (bad rows get an error, never dropped) and scoring a batch
    outputs.py      Parquet/CSV/TSV/JSONL output: input columns + label, score, prob_*, error; temp + rename
    shards.py       resumable bookkeeping: shard plan, verified part files with JSON sidecars
    local.py        the local engine: N worker processes x T onnxruntime threads, re-runs shards of dead workers
    ray_engine.py   the Ray engine: Ray Data read -> map_batches on an actor pool -> ordered rows to the driver
    job.py          ScoreOptions and `score_corpus`, the one entry point both engines share
    command.py      the `score` and `export-triton` subcommands (arguments, what they print)
    triton.py       a Triton Inference Server model repository (ONNX Runtime backend) from a variant folder
    bench.py        `make score-bench`: texts/s of score vs the serving stub vs one process

Torch-free: only the runtime (onnxruntime/OpenVINO + tokenizers), pandas/pyarrow and, for `--engine ray`, ray.
"""

from structbert_lite.errors import StructbertLiteError


class ScoreError(StructbertLiteError):
    """A scoring job cannot run: bad --input, --output or settings, or workers that keep dying."""
