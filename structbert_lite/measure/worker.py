"""One measurement job in a fresh process: ``python -m structbert_lite.measure.worker JOB.json``.

Every timed block runs alone in its own process, so no other contender's threads are spinning next to it
(DESIGN.md: onnxruntime sessions in one process slow each other down). A ``contender`` job measures, in order:

1. load (``load_s``) and the first answer on real text: ``cold_start_s`` runs from the parent's spawn
   (interpreter start, imports, load, tokenizer, one run), ``rss_first_answer_mb`` is VmHWM then;
2. the latency grid on synthetic ids: warm-up, then timed runs (`MeasurePlan` repeats / budget);
3. throughput if asked: real texts in length-sorted buckets, dynamic padding, tokenization excluded, at the
   plan's batch size (or the fastest of several, tuned on median-length texts), bucket order shuffled with
   a fixed seed so a capped block is still a fair sample; a non-batch-invariant contender (dynamic int8
   through `runtime.open_variant`) is scored one text at a time, as it is served. The spec's ``batching``
   option overrides that: "padded" (the buckets above), "exact-length" (groups of equal token length,
   unpadded: `feeds.exact_length_feeds`; then also one text at a time, for the ratio) or "one";
4. peak RSS over the job, and how contended the machine was during the timed blocks (`machine.ContentionMeter`).

A ``call`` job runs ``"module:function"(**kwargs)`` (bench's GEMM ceilings and profiles) the same way.
Only the contender's own runtime is imported (no torch for onnxruntime/OpenVINO contenders).
The result (or ``{"error": ...}``, exit 1) is written as JSON to ``result_path``.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import numpy as np

from structbert_lite.files import atomic_write

SPAWN_ENV = "STRUCTBERT_MEASURE_SPAWN_T"  # time.time() of the parent just before it started this process


def time_point(predict, feed, warmup: int, min_repeats: int, max_repeats: int, budget_s: float) -> list[float]:
    """Milliseconds of each timed run at one grid point."""
    for _ in range(warmup):
        predict(feed)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        predict(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _texts_per_s(predict, feeds: list) -> float:
    t0 = time.perf_counter()
    for feed in feeds:
        predict(feed)
    return sum(len(f["input_ids"]) for f in feeds) / max(time.perf_counter() - t0, 1e-9)


def tune_batch_size(predict, tokenizer, texts: list[str], batch_sizes, tune_texts: int,
                    make_feeds=None) -> tuple[int, dict]:
    """The fastest of ``batch_sizes`` on ``tune_texts`` median-length texts; (best, {size: texts/s})."""
    from structbert_lite.measure.feeds import bucket_feeds, length_order

    make_feeds = make_feeds or bucket_feeds

    if len(batch_sizes) == 1:
        return int(batch_sizes[0]), {}
    order = length_order(tokenizer, texts)
    n = min(tune_texts, len(texts))
    middle = [texts[i] for i in order[(len(order) - n) // 2 :][:n]]
    tuning = {}
    for batch_size in batch_sizes:
        feeds = make_feeds(tokenizer, middle, batch_size)
        predict(feeds[0])  # first call at this shape
        tuning[str(batch_size)] = round(_texts_per_s(predict, feeds), 3)
    return int(max(tuning, key=tuning.get)), tuning


BATCHINGS = ("padded", "exact-length", "one")


def measure_throughput(loaded, texts: list[str], plan: dict, meter, batching: Optional[str] = None, cap_s=None) -> dict:
    """Texts/s over ``texts`` (see the module docstring, step 3)."""
    from structbert_lite.measure.feeds import bucket_feeds, exact_length_feeds

    batching = batching or ("padded" if loaded.batch_invariant else "one")
    if batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; expected one of {BATCHINGS}")
    make_feeds = exact_length_feeds if batching == "exact-length" else bucket_feeds
    sizes = [1] if batching == "one" else plan["throughput_batch_sizes"]
    best, tuning = tune_batch_size(loaded.predict, loaded.tokenizer, texts, sizes, plan["throughput_tune_texts"],
                                   make_feeds)
    buckets = make_feeds(loaded.tokenizer, texts, best)
    loaded.predict(buckets[len(buckets) // 2])  # warm-up at a typical shape
    random.Random(plan["seed"]).shuffle(buckets)
    cap_s = plan["throughput_cap_s"] if cap_s is None else cap_s
    done, t0 = 0, time.perf_counter()
    with meter:
        for feed in buckets:
            loaded.predict(feed)
            done += len(feed["input_ids"])
            if time.perf_counter() - t0 > cap_s:
                break
    elapsed = time.perf_counter() - t0
    return {
        "texts_per_s": done / elapsed, "texts": done, "of_texts": len(texts), "complete": done == len(texts),
        "seconds": elapsed, "batch_size": best, "tuning_texts_per_s": tuning, "batching": batching,
        "batches": len(buckets), "one_text_at_a_time": batching == "one",
    }


def measure_latency(loaded, plan: dict) -> dict[str, list[float]]:
    """``{"BxS": [ms, ...]}`` over the plan's grid, on synthetic ids of exactly that shape."""
    from structbert_lite.measure.feeds import synthetic_feed

    samples = {}
    for batch, seq_len in plan["latency_grid"]:
        feed = synthetic_feed(loaded.tokenizer, batch, seq_len, plan["seed"])
        samples[f"{batch}x{seq_len}"] = time_point(
            loaded.predict, feed, plan["warmup_runs"], plan["min_repeats"], plan["max_repeats"], plan["point_budget_s"]
        )
    return samples


def run_contender(job: dict) -> dict:
    from structbert_lite.measure import machine
    from structbert_lite.measure.contenders import ContenderSpec, load_contender
    from structbert_lite.runtime import encode

    plan, spec = job["plan"], ContenderSpec(**job["spec"])
    texts = json.loads(Path(job["texts_path"]).read_text(encoding="utf-8"))
    t_load = time.perf_counter()
    loaded = load_contender(spec, plan["threads"], plan["max_length"])
    load_s = time.perf_counter() - t_load
    first = loaded.predict(encode(loaded.tokenizer, texts[: plan["first_answer_texts"]]))
    answered = time.time()
    result = {
        "cold_start_s": answered - float(os.environ.get(SPAWN_ENV, answered)),
        "load_s": load_s,
        "rss_first_answer_mb": machine.peak_rss_mb(),
        "first_logits": np.asarray(first, dtype=np.float64).tolist(),
        "details": loaded.details,
        "torch_imported": "torch" in sys.modules,
    }
    meter = machine.ContentionMeter()  # over the timed blocks only (tokenization is not timed)
    with meter:
        result["latency_ms"] = measure_latency(loaded, plan)
    if job.get("throughput"):
        batching = spec.options.get("batching")
        result["throughput"] = measure_throughput(loaded, texts, plan, meter, batching)
        if batching == "exact-length":  # the same variant served one text per call, for the ratio (half the cap)
            half_cap = plan["throughput_cap_s"] / 2
            result["throughput_one_text"] = measure_throughput(loaded, texts, plan, meter, "one", half_cap)
    result["contention"] = meter.result()
    result["peak_rss_mb"] = machine.peak_rss_mb()
    result["load_average_after"] = machine.load_average()
    result["involuntary_context_switches"] = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    return result


def run_call(job: dict):
    from structbert_lite.measure.contenders import resolve_callable

    return resolve_callable(job["function"])(**job.get("kwargs", {}))


JOBS = {"contender": run_contender, "call": run_call}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result_path = Path(job["result_path"])
    status = 0
    try:
        result = JOBS[job["job"]](job)
    except Exception as exc:  # noqa: BLE001 - a contender's library may raise anything: the parent records it
        # as this contender's failure, in one line
        traceback.print_exc()
        result, status = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}, 1
    atomic_write(result_path, json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
