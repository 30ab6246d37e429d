"""Keep only the fusions that make this model faster on this CPU: leave-one-out timing per fusion group.

onnxruntime already fuses much of an FP32 BERT graph when it loads it (Gelu, LayerNorm, SkipLayerNorm-like
patterns); on an AVX-512 EPYC the fully fused graph ran 3–12% *slower* than the unfused export (issue 13).
So the fuse step can measure instead of trusting the optimizer:

    parent (unfused) ─┐
    all fusions      ─┼─► fresh process per graph, rounds rotated, same thread budget (`structbert_lite.measure`)
    all − group g    ─┘   one graph per optional group

A group is dropped only when the graph without it is faster than the graph with all of them by more than
``min_gain`` in *every* round (geometric mean over the grid points, each round's p50): one noisy round cannot
drop a fusion, and a tie keeps it. ``required`` groups are never dropped (int8's QAttention and
QEmbedLayerNormalization come from the Attention and EmbedLayerNormalization fusions). Every figure and the
decision land in the step's meta (``fuse.selection``).
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

# Fusion group -> the FusionOptions flags it switches (a bias fold depends on its fusion).
FUSION_GROUPS = {
    "attention": ("enable_attention",),
    "skip_layer_norm": ("enable_skip_layer_norm", "enable_bias_skip_layer_norm"),
    "gelu": ("enable_gelu", "enable_bias_gelu"),
    "embed_layer_norm": ("enable_embed_layer_norm",),
    "layer_norm": ("enable_layer_norm",),
}
ALL, PARENT = "all", "parent"

Optimize = Callable[[Path, dict], None]  # (out model.onnx, {flag: bool}) -> writes the graph


def enabled_groups(options) -> list[str]:
    """Groups whose main flag is on in ``options``."""
    return [g for g, flags in FUSION_GROUPS.items() if getattr(options, flags[0])]


def without(options, group: str) -> dict:
    """The options' fusion flags with ``group`` switched off."""
    flags = {flag: getattr(options, flag) for fs in FUSION_GROUPS.values() for flag in fs}
    return {**flags, **{flag: False for flag in FUSION_GROUPS[group]}}


def round_ratios(latency: dict, candidate: str, reference: str) -> list[float]:
    """Per round: geometric mean over grid points of candidate p50 / reference p50."""
    points = sorted(latency[reference])
    rounds = min(len(latency[candidate][p]["rounds_p50"]) for p in points)
    ratios = []
    for r in range(rounds):
        logs = [math.log(latency[candidate][p]["rounds_p50"][r] / latency[reference][p]["rounds_p50"][r])
                for p in points]
        ratios.append(math.exp(sum(logs) / len(logs)))
    return ratios


def decide(latency: dict, groups: Sequence[str], required: Sequence[str], min_gain: float) -> dict:
    """``{group: {kept, reason, ratios}}``: drop a group only when removing it is faster in every round."""
    decisions = {}
    for group in groups:
        ratios = round_ratios(latency, f"{ALL}-{group}", ALL)  # < 1: faster without the group
        faster_without = bool(ratios) and max(ratios) < 1.0 - min_gain
        if group in required:
            kept, reason = True, "required" + (" (timing alone would drop it)" if faster_without else "")
        elif faster_without:
            kept, reason = False, f"faster without it in every round (by ≥ {min_gain:.0%})"
        else:
            kept, reason = True, "not slower with it beyond the noise margin"
        decisions[group] = {"kept": kept, "reason": reason, "time_without_over_with": [round(r, 4) for r in ratios]}
        logger.info("%s fusion group %s: %s (time without / with, per round: %s)",
                    "✓ keep" if kept else "✗ drop", group, reason, decisions[group]["time_without_over_with"])
    return decisions


def measure_graphs(graphs: dict[str, Path], tokenizer_dir: Path, texts: Sequence[str], threads: int,
                   max_length: int, grid: Sequence[tuple[int, int]], rounds: int, work: Path) -> tuple[dict, dict]:
    """Latency of each graph in fresh processes (rotated rounds); (``{name: {point: summary}}``, machine notes)."""
    from structbert_lite.measure import runner
    from structbert_lite.measure.contenders import ContenderSpec
    from structbert_lite.measure.plan import MeasurePlan

    specs = [ContenderSpec(name, "onnxruntime", str(path), tokenizer_dir=str(tokenizer_dir))
             for name, path in graphs.items()]
    plan = MeasurePlan(threads=threads, max_length=max_length, latency_grid=tuple(grid), rounds=rounds,
                       throughput_rounds="none", warmup_runs=2, min_repeats=5, max_repeats=30, point_budget_s=1.0)
    measured = runner.measure_contenders(specs, list(texts)[:8] or ["测试"], plan, work)
    failed = {n: c["error"] for n, c in measured.contenders.items() if c.get("error") and not c.get("latency")}
    if failed:
        from structbert_lite.errors import StructbertLiteError

        raise StructbertLiteError(
            f"fusion selection: timing failed for {failed}; set the fuse step's keep: all to skip it")
    latency = {n: c["latency"] for n, c in measured.contenders.items()}
    loads = [entry[0] for entry in measured.load_before if entry]
    notes = {
        "load_average_1min": [min(loads), max(loads)] if loads else None,  # over the jobs: a busy machine shows here
        "wall_s": round(measured.wall_s, 1),
        "orders": measured.orders,
    }
    return latency, notes


def select_fusions(parent_model: Path, options, optimize: Optimize, tokenizer_dir: Path, texts: Sequence[str],
                   threads: int, max_length: int, work: Path) -> dict:
    """Build and time the candidate graphs; returns ``{decisions, kept_flags, median_ms, ...}`` for the meta."""
    work = Path(work)
    groups = enabled_groups(options)
    graphs = {PARENT: Path(parent_model)}
    for name, flags in [(ALL, _flags(options))] + [(f"{ALL}-{g}", without(options, g)) for g in groups]:
        path = work / name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        optimize(path, flags)
        graphs[name] = path
    try:
        latency, notes = measure_graphs(graphs, tokenizer_dir, texts, threads, max_length, options.selection_grid,
                                        options.selection_rounds, work / "measure")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    decisions = decide(latency, groups, options.required_fusions, options.min_gain)
    kept = _flags(options)
    for group, decision in decisions.items():
        if not decision["kept"]:
            kept.update({flag: False for flag in FUSION_GROUPS[group]})
    return {
        "method": "leave-one-out per fusion group, fresh process per graph, rounds rotated, same thread budget",
        "threads": threads,
        "grid": [list(p) for p in options.selection_grid],
        "rounds": options.selection_rounds,
        "min_gain": options.min_gain,
        "median_ms": {name: {p: round(v["p50"], 3) for p, v in points.items()} for name, points in latency.items()},
        "all_over_parent": [round(r, 4) for r in round_ratios(latency, ALL, PARENT)],
        "decisions": decisions,
        "kept_flags": kept,
        "machine": notes,
    }


def _flags(options) -> dict:
    return {flag: getattr(options, flag) for fs in FUSION_GROUPS.values() for flag in fs}
