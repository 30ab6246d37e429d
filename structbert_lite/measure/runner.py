"""Fresh worker processes over rotated rounds, aggregated to medians; re-measured until they can be trusted.

    round r:  contenders in order rotated by r, each in its own process  ──►  per contender, per point:
              (same thread budget and environment for everyone)               median over rounds of each
                                                                              round's p50 / p95 / p99
    attempt:  rounds, then `trust.assess`; disturbed → back off, measure again (at most `max_attempts`)

A contender that fails (import, load, crash, timeout) is a result with an ``error``, never a crash of the run.
Separate processes are how "time each contender in its own block" is kept honest: an onnxruntime session's
intra-op threads keep spinning after a run and slow whichever session runs next (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from structbert_lite.measure import machine, trust
from structbert_lite.measure.contenders import ContenderSpec
from structbert_lite.measure.plan import MeasurePlan
from structbert_lite.measure.worker import SPAWN_ENV
from structbert_lite.processes import die_with_parent

logger = logging.getLogger(__name__)

WORKER_MODULE = "structbert_lite.measure.worker"
# Libraries that size their thread pools from the environment: torch's OpenMP, MKL/OpenBLAS, `tokenizers`' rayon.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def worker_env(threads: int) -> dict[str, str]:
    """The environment every worker gets: the same thread budget for every library that reads one."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_ENV}, "TOKENIZERS_PARALLELISM": "true"}
    env[SPAWN_ENV] = repr(time.time())
    return env


def spawn(job: dict, jobs_dir: Path, tag: str, threads: int, timeout_s: float) -> tuple[Optional[Any], Optional[str]]:
    """Run one worker job in a fresh process: (result, None) or (None, one line saying why it failed)."""
    jobs_dir = Path(jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    result_path = jobs_dir / f"{tag}.result.json"
    result_path.unlink(missing_ok=True)
    job_path = jobs_dir / f"{tag}.job.json"
    job_path.write_text(json.dumps({**job, "result_path": str(result_path)}, ensure_ascii=False), encoding="utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", WORKER_MODULE, str(job_path)],
            env=worker_env(threads), capture_output=True, text=True, timeout=timeout_s,
            preexec_fn=die_with_parent,  # a killed run leaves no worker behind
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s:.0f} s"
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
    if isinstance(result, dict) and result.get("error"):
        return None, result["error"]
    if proc.returncode != 0 or result is None:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        return None, f"worker exited with {proc.returncode}: " + " | ".join(tail)
    return result, None


def spawn_call(function: str, kwargs: dict, jobs_dir: Path, tag: str, threads: int, timeout_s: float):
    """Run ``"module:function"(**kwargs)`` in a fresh worker process (same environment as the contenders)."""
    return spawn({"job": "call", "function": function, "kwargs": kwargs}, jobs_dir, tag, threads, timeout_s)


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """Contender order per round, rotated so nobody always runs right after the same neighbour."""
    names = list(names)
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)] if names else []


def summarize_point(rounds_ms: list[list[float]]) -> dict:
    """One grid point: the median over rounds of each round's percentile; every round's p50 kept."""
    rounds_ms = [r for r in rounds_ms if r]
    per_round = [{q: float(np.percentile(r, q)) for q in (50, 95, 99)} | {"mean": float(np.mean(r))} for r in rounds_ms]
    return {
        "p50": float(np.median([r[50] for r in per_round])),
        "p95": float(np.median([r[95] for r in per_round])),
        "p99": float(np.median([r[99] for r in per_round])),
        "mean": float(np.median([r["mean"] for r in per_round])),
        "min": float(min(min(r) for r in rounds_ms)),
        "samples": sum(len(r) for r in rounds_ms),
        "rounds_p50": [r[50] for r in per_round],
    }


def summarize_throughput(results: list[dict], key: str = "throughput") -> Optional[dict]:
    blocks = [r[key] for r in results if r.get(key)]
    if not blocks:
        return None
    middle = sorted(blocks, key=lambda b: b["texts_per_s"])[(len(blocks) - 1) // 2]  # the lower median, as measured
    return {**middle, "texts_per_s": float(np.median([b["texts_per_s"] for b in blocks])),
            "rounds_texts_per_s": [b["texts_per_s"] for b in blocks]}


def aggregate(results: list[dict]) -> dict:
    """A contender's figures from its per-round worker results (at least one)."""
    points = results[0]["latency_ms"]
    shares = [r.get("contention") or {} for r in results]
    return {
        "latency": {p: summarize_point([r["latency_ms"][p] for r in results]) for p in points},
        "throughput": summarize_throughput(results),
        "throughput_one_text": summarize_throughput(results, "throughput_one_text"),  # exact-length batching only
        "cold_start_s": float(np.median([r["cold_start_s"] for r in results])),
        "load_s": float(np.median([r["load_s"] for r in results])),
        "rss_first_answer_mb": float(np.median([r["rss_first_answer_mb"] for r in results])),
        "peak_rss_mb": float(max(r["peak_rss_mb"] for r in results)),
        "first_logits": results[0].get("first_logits"),
        "details": results[-1].get("details") or {},
        "torch_imported": results[-1].get("torch_imported"),
        "contention": {
            key: max((s[key] for s in shares if s.get(key) is not None), default=None)
            for key in ("run_queue_wait_share", "steal_share")
        },
        "load_average_after": [r.get("load_average_after") for r in results],
        "involuntary_context_switches": [r.get("involuntary_context_switches") for r in results],
    }


@dataclasses.dataclass
class Measurement:
    """One attempt: every contender's aggregate (or error), the raw rounds, and what the machine looked like."""

    plan: MeasurePlan
    contenders: dict[str, dict]  # name -> aggregate() | {"error": ...} (+ "error" beside figures if one round failed)
    rounds: dict[str, list[dict]]  # name -> raw worker results, in round order
    orders: list[list[str]]  # contender order of each round
    load_before: list[Optional[list[float]]]  # the parent's load average before each job
    wall_s: float


def write_texts(texts: Sequence[str], work_dir: Path) -> Path:
    path = Path(work_dir) / "texts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(texts), ensure_ascii=False), encoding="utf-8")
    return path


def measure_contenders(
    specs: Sequence[ContenderSpec],
    texts: Sequence[str],
    plan: MeasurePlan,
    work_dir: Path,
    progress: Optional[Callable[..., Any]] = None,
    before_round: Optional[Callable[[int], None]] = None,
) -> Measurement:
    """Every contender once per round in a fresh process, order rotated per round; aggregated."""
    started = time.perf_counter()
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"contender names must be unique: {[s.name for s in specs]}")
    texts_path = write_texts(texts, work_dir)
    by_name = {s.name: s for s in specs}
    rounds: dict[str, list[dict]] = {name: [] for name in by_name}
    errors: dict[str, str] = {}
    orders, load_before = rotations(list(by_name), plan.rounds), []
    bar = progress(total=plan.rounds * len(specs), desc="speed", unit="process") if progress else None
    for index, order in enumerate(orders):
        if before_round:
            before_round(index)
        for name in order:
            if name in errors and not rounds[name]:
                continue  # failed in an earlier round and never measured: do not pay for it again
            job = {"job": "contender", "spec": by_name[name].as_dict(), "plan": plan.as_dict(),
                   "texts_path": str(texts_path), "throughput": plan.measures_throughput(index)}
            load_before.append(machine.load_average())
            logger.info("round %d/%d: %s", index + 1, plan.rounds, name)
            result, error = spawn(job, Path(work_dir) / "jobs", f"{name}.r{index}", plan.threads, plan.timeout_s)
            if error:
                errors[name] = f"round {index + 1}: {error}"
                logger.warning("contender %s failed: %s", name, error)
            else:
                rounds[name].append(result)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    contenders = {}
    for name in by_name:
        entry = aggregate(rounds[name]) if rounds[name] else {}
        contenders[name] = {**entry, "error": errors.get(name)}
    return Measurement(plan, contenders, rounds, orders, load_before, time.perf_counter() - started)


def measure_until_trusted(
    specs: Sequence[ContenderSpec],
    texts: Sequence[str],
    plan: MeasurePlan,
    work_dir: Path,
    baseline: str,
    point: str,
    limits: trust.TrustLimits,
    progress: Optional[Callable[..., Any]] = None,
) -> tuple[Measurement, dict]:
    """Measure; while `trust.assess` finds the figures disturbed, back off and measure again.

    Returns the first undisturbed attempt, else the least disturbed one (fewest reasons, the later on a tie),
    with its trust record (``verified``, ``attempts``, ``reasons``, ``history`` of every attempt's reasons).
    """
    attempts: list[tuple[Measurement, dict]] = []
    for attempt in range(1, limits.max_attempts + 1):
        measured = measure_contenders(specs, texts, plan, Path(work_dir) / f"attempt-{attempt}", progress)
        verdict = trust.assess(measured, baseline, point, limits)
        attempts.append((measured, verdict))
        if verdict["verified"]:
            break
        logger.warning("speed attempt %d/%d is not trustworthy: %s",
                       attempt, limits.max_attempts, "; ".join(verdict["reasons"]))
        if attempt < limits.max_attempts:
            time.sleep(limits.backoff_s * attempt)
    best = min(range(len(attempts)), key=lambda i: (len(attempts[i][1]["reasons"]), -i))
    measured, verdict = attempts[best]
    history = [{"attempt": i + 1, "verified": v["verified"], "reasons": v["reasons"]}
               for i, (_, v) in enumerate(attempts)]
    return measured, {**verdict, "attempts": len(attempts), "kept_attempt": best + 1, "history": history}
