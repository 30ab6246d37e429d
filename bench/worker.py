"""One measurement job in a fresh process: ``python -m structbert_lite.bench.worker JOB.json``.

Every timed block runs alone in its own process, so no other contender's threads are spinning next to it
(DESIGN.md: onnxruntime sessions in one process slow each other down). A contender job measures, in order:

1. cold start: process start (the parent's spawn time) → first answer on one review, and peak RSS then;
2. latency at every grid point: warm-up, then timed runs (at least ``min_repeats``, at most ``max_repeats``,
   otherwise as many as fit into ``point_budget_s``);
3. throughput (if asked): batch size tuned on median-length reviews, then all reviews in length-sorted
   buckets, bucket order shuffled with a fixed seed so a capped block is still a fair sample;
4. peak RSS over the whole job.

Only the contender's own runtime is imported (no torch for onnxruntime/OpenVINO contenders).
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

SPAWN_ENV = "STRUCTBERT_BENCH_SPAWN_T"  # time.time() of the parent just before it started this process


def peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM belongs to the current address space; getrusage's ru_maxrss
    would carry the parent's peak over fork+exec (the parent holds the model, so every worker would
    report at least its size)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # not Linux: KiB (macOS: bytes)


# ── loading a contender: each returns predict(feed) -> logits (batch, labels) ────────────────────────────


def load_torch(spec: dict, threads: int):
    import torch
    from transformers import BertForSequenceClassification

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    model = BertForSequenceClassification.from_pretrained(spec["model_path"]).eval()
    if spec["options"].get("quantize"):
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

    def predict(feed):
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()

    return predict


def load_ort(spec: dict, threads: int):
    from structbert_lite.runtime import create_session

    session = create_session(Path(spec["model_path"]), threads)
    names = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name

    def predict(feed):
        return session.run([output], {k: v for k, v in feed.items() if k in names})[0]

    return predict


def load_openvino(spec: dict, threads: int):
    import openvino as ov

    core = ov.Core()
    config = {**spec["options"], "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(spec["model_path"], "CPU", config)
    request = compiled.create_infer_request()
    names = {port.get_any_name() for port in compiled.inputs}
    spec["options"]["resolved"] = {k: str(compiled.get_property(k)) for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT")}

    def predict(feed):
        result = request.infer({k: v for k, v in feed.items() if k in names})
        return np.asarray(result[compiled.outputs[0]])

    return predict


LOADERS = {"torch": load_torch, "ort": load_ort, "openvino": load_openvino}


# ── measurements ──────────────────────────────────────────────────────────────────────────────────────────


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


def score(predict, tokenizer, texts: list[str]) -> None:
    from structbert_lite.runtime import encode

    predict(encode(tokenizer, texts))


def measure_throughput(predict, tokenizer, texts: list[str], job: dict) -> dict:
    """texts/s over length-sorted buckets (tokenization included), with the batch size this contender
    does best at among ``throughput_batch_sizes``, tuned on reviews of median length."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    n_tune = min(job["throughput_tune_texts"], len(texts))
    middle = [texts[i] for i in order[(len(order) - n_tune) // 2 :][:n_tune]]
    tuning = {}
    for batch_size in job["throughput_batch_sizes"]:
        score(predict, tokenizer, middle[:batch_size])  # warm-up: first call at this shape
        t0 = time.perf_counter()
        for start in range(0, len(middle), batch_size):
            score(predict, tokenizer, middle[start : start + batch_size])
        tuning[str(batch_size)] = len(middle) / (time.perf_counter() - t0)
    best = int(max(tuning, key=tuning.get))
    buckets = [order[s : s + best] for s in range(0, len(order), best)]
    random.Random(job["seed"]).shuffle(buckets)
    done, cap = 0, job["throughput_cap_s"]
    t0 = time.perf_counter()
    for bucket in buckets:
        score(predict, tokenizer, [texts[i] for i in bucket])
        done += len(bucket)
        if time.perf_counter() - t0 > cap:
            break
    elapsed = time.perf_counter() - t0
    return {
        "texts_per_s": done / elapsed,
        "texts": done,
        "of_texts": len(texts),
        "complete": done == len(texts),
        "seconds": elapsed,
        "batch_size": best,
        "tuning_texts_per_s": tuning,
    }


def run_contender(job: dict) -> dict:
    from structbert_lite.bench.workload import synthetic_feed
    from structbert_lite.runtime import encode, load_tokenizer

    spec, threads = job["spec"], job["threads"]
    texts = json.loads(Path(job["reviews"]).read_text(encoding="utf-8"))
    t_load = time.perf_counter()
    predict = LOADERS[spec["kind"]](spec, threads)
    tokenizer = load_tokenizer(Path(spec["tokenizer_dir"]), job["max_length"])
    load_s = time.perf_counter() - t_load
    first = predict(encode(tokenizer, texts[:1]))
    answered = time.time()
    result = {
        "cold_start_s": answered - float(os.environ.get(SPAWN_ENV, answered)),
        "load_s": load_s,
        "rss_first_answer_mb": peak_rss_mb(),
        "first_logits": np.asarray(first).tolist(),
        "options": spec["options"],
        "latency_ms": {},
    }
    for batch, seq_len in job["latency_grid"]:
        feed = synthetic_feed(batch, seq_len, job["vocab_size"], job["seed"])
        result["latency_ms"][f"{batch}x{seq_len}"] = time_point(
            predict, feed, job["warmup_runs"], job["min_repeats"], job["max_repeats"], job["point_budget_s"]
        )
    if job.get("throughput"):
        result["throughput"] = measure_throughput(predict, tokenizer, texts, job)
    result["peak_rss_mb"] = peak_rss_mb()
    result["load_average_after"] = list(os.getloadavg())  # other work on the machine skews every figure
    # Preemptions by other processes: PyTorch's OpenMP threads collapse under them (measured 30x at 1x32).
    result["involuntary_context_switches"] = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    return result


def run_ceilings(job: dict) -> dict:
    from structbert_lite.bench.ceilings import measure_ceilings

    return measure_ceilings(job["shape"], job["threads"], job["repeats"])


def run_profile(job: dict) -> dict:
    from structbert_lite.bench.profiling import profile_by_op_type

    return profile_by_op_type(job["spec"], job["threads"], job["points"], job["runs"], job["vocab_size"], job["seed"], Path(job["dir"]))


JOBS = {"contender": run_contender, "ceilings": run_ceilings, "profile": run_profile}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = JOBS[job["job"]](job)
    Path(job["result_path"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
