"""The benchmark run: prepare every shape's contenders, measure them through the core, compare, report.

    prepare (this process)               measure (`structbert_lite.measure`)                 aggregate
    ──────────────────────                ──────────────────────────────────                ─────────
    per shape: model, tokenizer,          round r: GEMM ceilings, then every contender      ratios, checks,
    ours (config's steps), each     ──►   of every shape in its own fresh process,    ──►   trust verdict,
    peer's files (a failure is a          order rotated by r, the same thread budget        results.json,
    result, never a crash)                                                                  report.md, PNG
"""

from __future__ import annotations

import gc
import logging
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from structbert_lite.artifact import utc_now, write_json
from structbert_lite.bench import compare, workload
from structbert_lite.bench.contenders import BASELINE, PEERS, not_built, ours
from structbert_lite.bench.prepare import Prepared, describe_error, prepare_shape
from structbert_lite.bench.settings import BenchSettings
from structbert_lite.measure import machine, runner, trust

logger = logging.getLogger(__name__)

RESULTS_SCHEMA = 2
# Top-level keys of results.json (the test checks them).
RESULT_KEYS = (
    "schema", "created_at", "command", "wall_s", "settings", "machine", "trust", "ceilings", "shapes", "cross_shape",
    "checks",
)
# Keys of results.json["shapes"][shape]; and of each ...["contenders"][name].
SHAPE_KEYS = ("model", "flops", "contenders", "comparisons", "checks", "profile", "static_shapes")
CONTENDER_KEYS = (
    "group", "precision", "description", "status", "error", "prepare_s", "options", "details",
    "latency", "throughput", "throughput_one_text", "cold_start", "memory", "ceiling_share", "contention",
)
CEILINGS_FUNCTION = "structbert_lite.bench.ceilings:measure_ceilings"
PROFILE_FUNCTION = "structbert_lite.bench.profiling:profile_by_op_type"
STATIC_SHAPES_FUNCTION = "structbert_lite.bench.static_shapes:measure_static_shapes"
OURS_OPENVINO = "ours-openvino-int8"


def job_name(shape: str, name: str) -> str:
    return f"{shape}.{name}"


def new_entry(contender, **values) -> dict:
    entry = {key: None for key in CONTENDER_KEYS}
    entry.update(group=contender.group, precision=contender.precision, description=contender.description, **values)
    return entry


def prepare_contenders(prep: Prepared, settings: BenchSettings) -> tuple[dict, dict]:
    """({name: entry}, {name: ContenderSpec}) of one shape: its peers, ours, and ours that failed to build."""
    entries, specs = {}, {}
    for name, contender in PEERS.items():
        if prep.shape_name not in contender.shapes or (settings.peers is not None and name not in settings.peers):
            continue
        t0 = time.perf_counter()
        try:
            specs[name] = contender.prepare(prep, settings)
            entries[name] = new_entry(contender, status="prepared", options=specs[name].options)
        except Exception as exc:  # noqa: BLE001 - a peer library may raise anything: a result, not a crash
            entries[name] = new_entry(contender, status="failed", error=describe_error(exc))
            logger.warning("%s %s failed to prepare: %s", prep.shape_name, name, entries[name]["error"])
        entries[name]["prepare_s"] = time.perf_counter() - t0
    for name, (contender, spec) in ours(prep).items():
        entries[name], specs[name] = new_entry(contender, status="prepared", options=spec.options), spec
    for name, (contender, why) in not_built(prep).items():
        entries[name] = new_entry(contender, status="failed", error=why)
    return entries, specs


def model_info(prep: Prepared, texts: list[str], settings: BenchSettings) -> dict:
    from structbert_lite.runtime import load_tokenizer

    tokenizer = load_tokenizer(prep.tokenizer_dir, settings.max_length)
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(texts)]
    return {
        "weights": prep.weights, "shape": prep.shape, "vocab_size": prep.vocab_size, "params": prep.params,
        "params_in_matmuls": workload.matmul_params(prep.shape),
        "ours_config": {"path": prep.cfg_origin, "variants": [v.model_dump(mode="json") for v in prep.cfg.variants]},
        "ours_artifacts": {name: artifact.meta for name, artifact in prep.ours.items()},
        "ours_failures": prep.ours_failures,
        "throughput_reviews": {"rows": len(texts), "mean_tokens": float(np.mean(lengths)),
                               "max_length": settings.max_length},
        "useful_flops_per_text": float(np.mean([workload.forward_flops(prep.shape, 1, n) for n in lengths])),
    }


def ceiling_precision(entry: dict) -> str:
    """The GEMM precision a contender's matmuls ran at: int8 for quantized ones, else bf16 where OpenVINO
    ran the graph in bf16 (its default on CPUs with BF16), else fp32."""
    if entry["precision"] == "int8":
        return "int8"
    return "bf16" if (entry.get("details") or {}).get("INFERENCE_PRECISION_HINT") == "bf16" else "fp32"


def fill_entry(entry: dict, measured: dict, flops: dict, ceilings: Optional[dict], useful_flops: float) -> None:
    """A contender's figures from the core's aggregate, plus its share of the GEMM ceiling."""
    from structbert_lite.bench.ceilings import ceiling_for

    entry.update(
        latency=measured["latency"], throughput=measured["throughput"], details=measured["details"],
        throughput_one_text=measured.get("throughput_one_text"),
        cold_start={"s": measured["cold_start_s"], "load_s": measured["load_s"]},
        memory={"rss_first_answer_mb": measured["rss_first_answer_mb"], "peak_rss_mb": measured["peak_rss_mb"]},
        contention=measured["contention"], first_logits=measured["first_logits"],
        load_average_after_rounds=measured["load_average_after"],
    )
    kernel, best = ceiling_for(ceilings or {}, ceiling_precision(entry))
    if best:
        share = {p: {"gflops": flops[p] / (v["p50"] / 1000) / 1e9} for p, v in entry["latency"].items()}
        if entry["throughput"]:
            share["throughput"] = {"gflops": entry["throughput"]["texts_per_s"] * useful_flops / 1e9}
        for figures in share.values():
            figures["share_of_ceiling"] = figures["gflops"] / best
        entry["ceiling_share"] = {**share, "ceiling": {"kernel": kernel, "precision": ceiling_precision(entry),
                                                       "gflops_best": best}}


def merge_ceilings(runs: list[dict]) -> Optional[dict]:
    """The best of each kernel's per-round measurements, plus every round's best rate."""
    if not runs:
        return None
    merged = {}
    for kind in runs[0]:
        best = max(runs, key=lambda run: run[kind]["gflops_best"])[kind]
        merged[kind] = {**best, "rounds_gflops_best": [run[kind]["gflops_best"] for run in runs]}
    return merged


def add_first_answer_diffs(contenders: dict) -> None:
    """Max |Δlogit| of each contender's first answer (same review) vs the baseline's: every contender computes
    the same model (int8 ones differ by their quantization error only)."""
    reference = (contenders.get(BASELINE) or {}).get("first_logits")
    for entry in contenders.values():
        mine = entry.get("first_logits")
        entry["first_answer_max_abs_logit_diff"] = (
            float(np.max(np.abs(np.asarray(mine) - np.asarray(reference))))
            if mine is not None and reference is not None else None
        )


def profile_if_losing(shape: dict, specs: dict, settings: BenchSettings, work: Path) -> Optional[dict]:
    """onnxruntime's profile of our int8 by op type at the points where it loses to a peer (base shape only)."""
    losing = compare.losing_points(shape["contenders"])
    spec = specs.get(compare.OURS_INT8)
    if not losing or spec is None or shape["contenders"][compare.OURS_INT8]["status"] != "ok":
        return None
    logger.info("our int8 loses at %s: profiling by op type", losing)
    kwargs = {"model_path": str(Path(spec.path) / "model.onnx"), "tokenizer_dir": str(spec.tokenizer_dir),
              "threads": settings.threads, "points": losing, "runs": settings.profile_runs, "seed": settings.seed,
              "out_dir": str(work / "profiles")}
    by_op, error = runner.spawn_call(PROFILE_FUNCTION, kwargs, work / "jobs", "profile", settings.threads,
                                     settings.timeout_s)
    return {"points": [f"{b}x{s}" for b, s in losing], "by_op_type": by_op, "error": error}


def static_shapes(specs: dict, settings: BenchSettings, work: Path, texts: list[str]) -> Optional[dict]:
    """Static vs dynamic shapes of our OpenVINO int8 variant on the reviews (`bench.static_shapes`), or None."""
    spec = specs.get(OURS_OPENVINO)
    if spec is None or not settings.static_shapes:
        return None
    logger.info("static vs dynamic shapes of %s", OURS_OPENVINO)
    kwargs = {"model_dir": str(spec.path), "texts": texts, "threads": settings.threads,
              "max_length": settings.max_length, "rounds": settings.static_rounds, "repeats": settings.static_repeats}
    result, error = runner.spawn_call(STATIC_SHAPES_FUNCTION, kwargs, work / "jobs", "static-shapes", settings.threads,
                                      settings.timeout_s)
    return result if error is None else {"error": error}


def prepare_all(settings: BenchSettings, work: Path, texts: list[str]) -> tuple[dict, dict, dict]:
    """Per shape: ({shape: {"model", "flops", "contenders"}}, {job name: spec}, {shape: {name: spec}})."""
    shapes, jobs, by_shape = {}, {}, {}
    for shape_name in settings.shapes:
        logger.info("preparing the %s shape (%s)", shape_name, settings.model_dir or "random weights")
        prep = prepare_shape(settings, shape_name, work / shape_name, texts)
        entries, specs = prepare_contenders(prep, settings)
        flops = {f"{b}x{s}": workload.forward_flops(prep.shape, b, s) for b, s in settings.latency_grid}
        shapes[shape_name] = {"model": model_info(prep, texts, settings), "flops": flops, "contenders": entries}
        by_shape[shape_name] = specs
        for name, spec in specs.items():
            spec.name = job_name(shape_name, name)
            jobs[spec.name] = spec
        del prep
        gc.collect()
    return shapes, jobs, by_shape


def measure_all(settings: BenchSettings, work: Path, texts: list[str],
                jobs: dict) -> tuple[runner.Measurement, Optional[dict]]:
    """Every contender of every shape through the core, with the GEMM ceilings once per round (best kept)."""
    ceiling_runs = []

    def ceilings(round_index: int) -> None:
        kwargs = {"shape": list(settings.ceiling_shape), "threads": settings.threads,
                  "repeats": settings.ceiling_repeats}
        result, error = runner.spawn_call(CEILINGS_FUNCTION, kwargs, work / "jobs", f"ceilings.r{round_index}",
                                          settings.threads, settings.timeout_s)
        if error:
            logger.warning("GEMM ceilings failed: %s", error)
        else:
            ceiling_runs.append(result)

    measured = runner.measure_contenders(list(jobs.values()), texts, settings.plan(), work / "measure",
                                         before_round=ceilings)
    return measured, merge_ceilings(ceiling_runs)


def settle(settings: BenchSettings) -> None:
    # Preparation wrote GBs (checkpoints, graphs): flush them now, or kernel writeback competes with the first
    # timed block (seen: PyTorch FP32 at 1x32 took 1050 ms in the first block after preparation, 66 ms later).
    os.sync()
    time.sleep(settings.settle_s)


def run_benchmark(settings: BenchSettings, out: Path, command: str = "") -> dict:
    """Run everything, write results.json, report.md and the chart into ``out``; return the results."""
    from structbert_lite.bench.report import write_chart, write_report
    from structbert_lite.reviews import balanced_sample

    started = time.perf_counter()
    at_start = machine.machine_info(settings.threads)  # the load average before anything of ours runs
    out, work = Path(out), Path(out) / "work"
    texts = [text for text, _ in balanced_sample(settings.throughput_rows, settings.seed)]
    shapes, jobs, by_shape = prepare_all(settings, work, texts)
    settle(settings)
    measured, ceilings = measure_all(settings, work, texts, jobs)
    for shape_name, shape in shapes.items():
        for name, entry in shape["contenders"].items():
            result = measured.contenders.get(job_name(shape_name, name))
            if result is None:
                continue
            if result.get("latency"):
                fill_entry(entry, result, shape["flops"], ceilings, shape["model"]["useful_flops_per_text"])
            entry["status"], entry["error"] = ("failed", result["error"]) if result.get("error") else ("ok", None)
        add_first_answer_diffs(shape["contenders"])
        shape["comparisons"] = compare.compare(shape["contenders"])
        shape["checks"] = compare.issue_checks(shape_name, shape["contenders"], shape["comparisons"])
        shape["profile"] = (profile_if_losing(shape, by_shape[shape_name], settings, work)
                            if shape_name == "base" else None)
        shape["static_shapes"] = (static_shapes(by_shape[shape_name], settings, work, texts)
                                  if shape_name == "base" else None)
    cross = compare.cross_shape(shapes)
    verdict = trust.assess(measured, job_name(settings.shapes[0], BASELINE), compare.MIN_SPEEDUP_POINT,
                           trust.TrustLimits())
    results = {
        "schema": RESULTS_SCHEMA, "created_at": utc_now(), "command": command, "wall_s": None,
        "settings": settings.as_dict(),
        "machine": {**at_start, "versions": machine.library_versions()},
        "trust": verdict, "ceilings": ceilings, "shapes": shapes, "cross_shape": cross,
        "checks": [c for shape in shapes.values() for c in shape["checks"]] + compare.cross_checks(shapes, cross),
    }
    results["wall_s"] = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    write_report(results, out / "report.md", chart_name="chart.png")
    write_chart(results, out / "chart.png")
    return results
