"""The benchmark run: prepare every contender, measure each in fresh processes over rotated rounds, aggregate.

    prepare (this process)            measure (one fresh worker process per block)            aggregate
    ───────────────────────           ───────────────────────────────────────────────          ─────────
    model + tokenizer                 ceilings: MatMul / MatMulInteger micro-graphs             medians over rounds
    each contender's files      ──►   round r: contenders in order rotated by r, each:    ──►   ratios, checks
    (a failure = an error string)       cold start → latency grid → (last round) throughput     results.json
                                      profile our int8 by op type if it loses somewhere        report.md, PNG

Separate processes are how "time each contender in its own block" is kept honest here: an onnxruntime
session's intra-op threads keep spinning after a run and slow whichever session runs next (DESIGN.md).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from structbert_lite.artifact import utc_now, write_json
from structbert_lite.bench import compare, machine, workload
from structbert_lite.bench.prepare import CONTENDERS, describe_error, prepare_model, write_reviews
from structbert_lite.bench.settings import BenchSettings
from structbert_lite.bench.worker import SPAWN_ENV

logger = logging.getLogger(__name__)

RESULTS_SCHEMA = 1
# Top-level keys of results.json (the test checks them; README documents them).
RESULT_KEYS = (
    "schema", "created_at", "command", "wall_s", "settings", "machine", "model", "ceilings", "flops",
    "contenders", "comparisons", "checks", "profile",
)
# Keys of each results.json["contenders"][name].
CONTENDER_KEYS = (
    "group", "precision", "description", "status", "error", "prepare_s", "options",
    "latency", "throughput", "cold_start", "memory", "ceiling_share",
)


def spawn(job: dict, jobs_dir: Path, tag: str, threads: int, timeout_s: float) -> tuple[Optional[dict], Optional[str]]:
    """Run one worker job in a fresh process; (result, None) or (None, why it failed)."""
    jobs_dir.mkdir(parents=True, exist_ok=True)
    job = {**job, "result_path": str(jobs_dir / f"{tag}.result.json")}
    job_path = jobs_dir / f"{tag}.job.json"
    job_path.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    Path(job["result_path"]).unlink(missing_ok=True)
    # Every contender gets the same budget, including libraries that read it from the environment
    # (OpenMP in torch, rayon in `tokenizers`' encode_batch).
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
    env[SPAWN_ENV] = repr(time.time())
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "structbert_lite.bench.worker", str(job_path)],
            env=env, capture_output=True, text=True, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    if proc.returncode != 0 or not Path(job["result_path"]).is_file():
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        return None, f"worker exited with {proc.returncode}: " + " | ".join(tail)
    return json.loads(Path(job["result_path"]).read_text(encoding="utf-8")), None


def summarize_latency(rounds: list[list[float]]) -> dict:
    """p50/p95 of one grid point: the median over rounds of each round's percentile (all samples kept)."""
    rounds = [r for r in rounds if r]
    return {
        "p50_ms": float(np.median([np.percentile(r, 50) for r in rounds])),
        "p95_ms": float(np.median([np.percentile(r, 95) for r in rounds])),
        "min_ms": float(min(min(r) for r in rounds)),
        "runs": sum(len(r) for r in rounds),
        "rounds_p50_ms": [float(np.percentile(r, 50)) for r in rounds],
        "samples_ms": [[round(x, 3) for x in r] for r in rounds],
    }


def aggregate(entry: dict, results: list[dict], flops: dict, ceilings: Optional[dict], useful_flops_per_text: float) -> None:
    """Fill a contender's figures from its per-round worker results."""
    points = results[0]["latency_ms"].keys()
    entry["latency"] = {p: summarize_latency([r["latency_ms"][p] for r in results]) for p in points}
    throughput = [r["throughput"] for r in results if "throughput" in r]
    entry["throughput"] = throughput[-1] if throughput else None
    entry["cold_start"] = {
        "s": float(np.median([r["cold_start_s"] for r in results])),
        "load_s": float(np.median([r["load_s"] for r in results])),
        "samples_s": [r["cold_start_s"] for r in results],
    }
    entry["memory"] = {
        "rss_first_answer_mb": float(np.median([r["rss_first_answer_mb"] for r in results])),
        "peak_rss_mb": float(max(r["peak_rss_mb"] for r in results)),
    }
    entry["options"] = results[-1].get("options", entry.get("options"))
    entry["first_logits"] = results[0].get("first_logits")
    entry["load_average_after_rounds"] = [r.get("load_average_after") for r in results]
    entry["involuntary_context_switches_rounds"] = [r.get("involuntary_context_switches") for r in results]
    if ceilings:
        ceiling = ceilings[entry["precision"]]["gflops_best"]
        share = {p: {"gflops": flops[p] / (v["p50_ms"] / 1000) / 1e9} for p, v in entry["latency"].items()}
        if entry["throughput"]:
            share["throughput"] = {"gflops": entry["throughput"]["texts_per_s"] * useful_flops_per_text / 1e9}
        for figures in share.values():
            figures["share_of_ceiling"] = figures["gflops"] / ceiling
        entry["ceiling_share"] = share


def merge_ceilings(runs: list[dict]) -> Optional[dict]:
    """The best of each kernel's per-round measurements (the one with the highest best rate), plus every
    round's best rate."""
    if not runs:
        return None
    merged = {}
    for kind in runs[0]:
        best = max(runs, key=lambda run: run[kind]["gflops_best"])[kind]
        merged[kind] = {**best, "rounds_gflops_best": [run[kind]["gflops_best"] for run in runs]}
    return merged


def add_first_answer_diffs(contenders: dict, baseline: str = compare.BASELINE) -> None:
    """Max |Δlogit| of each contender's first answer (same review) vs the baseline's: a sanity check that
    every contender computes the same model (int8 ones differ by their quantization error only)."""
    reference = (contenders.get(baseline) or {}).get("first_logits")
    for entry in contenders.values():
        mine = entry.get("first_logits")
        entry["first_answer_max_abs_logit_diff"] = (
            float(np.max(np.abs(np.asarray(mine) - np.asarray(reference)))) if mine is not None and reference is not None else None
        )


def busiest_load(contenders: dict) -> Optional[float]:
    """The highest 1-minute load average seen after any worker job (other processes skew the figures)."""
    loads = [
        sample[0] for entry in contenders.values() for sample in (entry.get("load_average_after_rounds") or []) if sample
    ]
    return max(loads) if loads else None


def token_lengths(texts: list[str], tokenizer_dir: Path, max_length: int) -> list[int]:
    from structbert_lite.runtime import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir, max_length)
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def run_benchmark(settings: BenchSettings, out: Path, command: str = "") -> dict:
    """Run everything, write results.json, report.md and the chart into ``out``; return the results."""
    from structbert_lite.bench.report import write_chart, write_report

    started = time.perf_counter()
    cpu_at_start = machine.cpu_info()  # includes the load average before anything of ours runs
    out, work = Path(out), Path(out) / "work"
    jobs_dir = work / "jobs"
    timeout_s = 120.0 if settings.quick else 900.0
    logger.info("preparing the model (%s)", settings.model_dir or "random weights")
    prep = prepare_model(settings, work)
    texts = workload.sample_reviews(settings.throughput_rows, settings.seed)
    reviews_path = write_reviews(texts, work)
    lengths = token_lengths(texts, prep.tokenizer_dir, settings.max_length)
    useful_flops_per_text = float(np.mean([workload.forward_flops(prep.shape, 1, n) for n in lengths]))
    flops = {f"{b}x{s}": workload.forward_flops(prep.shape, b, s) for b, s in settings.latency_grid}

    contenders, specs = {}, {}
    for name, contender in CONTENDERS.items():
        entry = {key: None for key in CONTENDER_KEYS}
        entry.update(group=contender.group, precision=contender.precision, description=contender.description)
        t0 = time.perf_counter()
        try:
            specs[name] = contender.prepare(prep).as_dict()
            entry["status"], entry["options"] = "prepared", specs[name]["options"]
        except Exception as exc:  # every contender's failure is a result, never a crash of the run
            entry["status"], entry["error"] = "failed", describe_error(exc)
            logger.warning("contender %s failed to prepare: %s", name, entry["error"])
        entry["prepare_s"] = time.perf_counter() - t0
        contenders[name] = entry
    ours_meta = {variant: artifact.meta for variant, artifact in prep.ours.items()}
    model_info = {
        "weights": prep.weights,
        "shape": prep.shape,
        "vocab_size": prep.vocab_size,
        "params": int(sum(p.numel() for p in prep.model.parameters())),
        "params_in_matmuls": workload.matmul_params(prep.shape),
        "ours_config": {"path": prep.cfg_origin, **prep.cfg.resolved()},
        "ours_artifacts": ours_meta,
        "throughput_reviews": {"rows": len(texts), "mean_tokens": float(np.mean(lengths)), "max_length": settings.max_length},
    }
    del prep
    gc.collect()
    # Preparation wrote GBs (checkpoint, ONNX graphs): flush them now, or kernel writeback competes with the first
    # timed block (seen: PyTorch FP32 at 1x32 took 1050 ms in the first block after preparation, 66 ms later).
    os.sync()
    time.sleep(settings.settle_s)

    base_job = {
        "job": "contender", "threads": settings.threads, "reviews": str(reviews_path), "vocab_size": model_info["vocab_size"],
        "max_length": settings.max_length, "seed": settings.seed, "latency_grid": [list(p) for p in settings.latency_grid],
        **{k: getattr(settings, k) for k in (
            "warmup_runs", "min_repeats", "max_repeats", "point_budget_s", "throughput_batch_sizes",
            "throughput_tune_texts", "throughput_cap_s",
        )},
    }
    per_round: dict[str, list[dict]] = {name: [] for name in specs}
    ceiling_runs: list[dict] = []
    for round_index in range(settings.rounds):
        # Ceilings once per round, best kept: one measurement under a passing load spike would understate them.
        ceiling_job = {"job": "ceilings", "shape": list(settings.ceiling_shape), "threads": settings.threads, "repeats": settings.ceiling_repeats}
        measured, error = spawn(ceiling_job, jobs_dir, f"ceilings.r{round_index}", settings.threads, timeout_s)
        if error:
            logger.warning("GEMM ceilings failed: %s", error)
        else:
            ceiling_runs.append(measured)
        live = [name for name in specs if contenders[name]["status"] != "failed"]
        order = live[round_index % len(live):] + live[: round_index % len(live)] if live else []
        for name in order:
            logger.info("round %d/%d: %s", round_index + 1, settings.rounds, name)
            job = {**base_job, "spec": specs[name], "throughput": round_index == settings.rounds - 1}
            result, error = spawn(job, jobs_dir, f"{name}.r{round_index}", settings.threads, timeout_s)
            if error:
                contenders[name]["status"], contenders[name]["error"] = "failed", f"round {round_index + 1}: {error}"
                logger.warning("contender %s failed: %s", name, error)
            else:
                per_round[name].append(result)
    ceilings = merge_ceilings(ceiling_runs)
    for name, results in per_round.items():
        if results:
            aggregate(contenders[name], results, flops, ceilings, useful_flops_per_text)
            if contenders[name]["status"] != "failed":
                contenders[name]["status"] = "ok"

    add_first_answer_diffs(contenders)
    comparisons = compare.compare(contenders)
    checks = compare.issue_checks(contenders, comparisons)
    profile = None
    losing = compare.losing_points(contenders)
    if losing and contenders.get("ours-int8-dynamic", {}).get("status") == "ok":
        logger.info("our int8 loses at %s: profiling by op type", losing)
        profile_job = {
            "job": "profile", "spec": specs["ours-int8-dynamic"], "threads": settings.threads, "points": losing,
            "runs": settings.profile_runs, "vocab_size": model_info["vocab_size"], "seed": settings.seed, "dir": str(work / "profiles"),
        }
        by_op, error = spawn(profile_job, jobs_dir, "profile", settings.threads, timeout_s)
        profile = {"points": [f"{b}x{s}" for b, s in losing], "by_op_type": by_op, "error": error}

    results = {
        "schema": RESULTS_SCHEMA,
        "created_at": utc_now(),
        "command": command,
        "wall_s": None,
        "settings": settings.as_dict(),
        "machine": {
            "cpu": cpu_at_start, "versions": machine.library_versions(), "threads": settings.threads,
            "max_load_average_1min": busiest_load(contenders),
        },
        "model": model_info,
        "ceilings": ceilings,
        "flops": flops,
        "contenders": contenders,
        "comparisons": comparisons,
        "checks": checks,
        "profile": profile,
    }
    results["wall_s"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    write_report(results, out / "report.md", chart_name="chart.png")
    write_chart(results, out / "chart.png")
    return results
