"""Speed and memory of the baseline and every variant, through the shared measurement core (`measure_variants`).

`measure_variants` is the one entry point of the validate stage: each contender runs in its own fresh
process per round (`structbert_lite.measure`: same thread budget, same synthetic and real inputs, VmHWM),
rounds are rotated and reduced to medians, and the whole measurement is repeated while the machine shows
contention (`measure.trust`). When it stays disturbed the result says ``trust["verified"] is False`` with the
reasons, so the gate can mark its speed checks "not verified" instead of publishing noise as speedups.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from structbert_lite.config import ValidateConfig
from structbert_lite.errors import StructbertLiteError
from structbert_lite.measure import runner
from structbert_lite.measure.contenders import ContenderSpec
from structbert_lite.measure.plan import MeasurePlan
from structbert_lite.measure.trust import TrustLimits

logger = logging.getLogger(__name__)

# Keys of each SpeedResult.contenders[name] (the validate report's speed metrics).
METRIC_KEYS = (
    "latency_grid", "latency_ms", "throughput_texts_per_s", "peak_rss_mb", "cold_start_s", "load_s",
    "peak_rss_job_mb", "throughput", "error",
)
DEFAULT_THROUGHPUT_CAP_S = 60.0


class MeasurementError(StructbertLiteError):
    """A measurement could not be taken (e.g. the baseline's worker process failed)."""


def point_key(batch: int, seq_len: int) -> str:
    return f"{batch}x{seq_len}"


@dataclasses.dataclass
class SpeedResult:
    """What `measure_variants` measured. ``contenders[name]`` has the keys of `METRIC_KEYS`."""

    baseline: str
    contenders: dict[str, dict[str, Any]]
    trust: dict[str, Any]  # {verified, attempts, reasons, load_average, rounds_spread, baseline_p95_over_p50, ...}
    method: str  # one line for report.md: how the numbers were taken
    plan: dict[str, Any]  # the MeasurePlan, verbatim

    def metrics(self, name: str) -> dict[str, Any]:
        return self.contenders[name]

    def speedup(self, name: str) -> Optional[float]:
        """Baseline p50 / ``name``'s p50 at the speedup point (None if either was not measured)."""
        base = (self.contenders[self.baseline].get("latency_ms") or {}).get("p50")
        mine = (self.contenders[name].get("latency_ms") or {}).get("p50")
        return base / mine if base and mine else None


def latency_points(vcfg: ValidateConfig) -> tuple[tuple[int, int], ...]:
    """The config grid plus the speedup point, sorted."""
    grid = {(b, s) for b in vcfg.latency.batch_sizes for s in vcfg.latency.seq_lengths} | {tuple(vcfg.speedup_point)}
    return tuple(sorted(grid))


def plan_from_config(vcfg: ValidateConfig, max_length: int) -> MeasurePlan:
    """The validate stage's `MeasurePlan`: a fixed number of repeats per point, throughput every round."""
    return MeasurePlan(
        threads=vcfg.threads,
        max_length=max_length,
        latency_grid=latency_points(vcfg),
        warmup_runs=vcfg.latency.warmup,
        min_repeats=vcfg.latency.repeats,
        max_repeats=vcfg.latency.repeats,
        point_budget_s=0.0,
        throughput_batch_sizes=(vcfg.throughput_batch_size,),
        throughput_cap_s=float(getattr(vcfg, "throughput_cap_s", None) or DEFAULT_THROUGHPUT_CAP_S),
        throughput_rounds="all",
        first_answer_texts=max(1, vcfg.speedup_point[0]),
        rounds=vcfg.latency.rounds,
    )


def describe_method(plan: MeasurePlan, texts: int, verdict: dict) -> str:
    """One line for report.md saying how every speed and memory number was taken."""
    trusted = "verified" if verdict["verified"] else "NOT verified (" + "; ".join(verdict["reasons"][:3]) + ")"
    return (
        f"Each model in its own fresh process per round ({plan.rounds} rounds, order rotated; attempt "
        f"{verdict.get('kept_attempt', 1)} of {verdict.get('attempts', 1)} kept), "
        f"{plan.threads} intra-op threads each; "
        f"latency: median over rounds of each round's percentile of {plan.min_repeats} timed runs after "
        f"{plan.warmup_runs} warm-up runs, on synthetic ids of exactly batch × tokens; throughput: {texts} eval texts "
        f"in length-sorted batches of {plan.throughput_batch_sizes[0]} with dynamic padding, tokenization excluded "
        f"(a variant that is not batch-invariant one text at a time, as served); peak RSS: VmHWM of that process "
        f"after loading and answering {plan.first_answer_texts} text(s); cold start: spawn to first answer. "
        f"Speed {trusted}."
    )


def _grid_rows(latency: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for key, stats in latency.items():
        batch, seq_len = (int(x) for x in key.split("x"))
        figures = {k: stats[k] for k in ("p50", "p95", "p99", "mean", "samples")}
        rows.append({"batch": batch, "seq_len": seq_len, **figures})
    return sorted(rows, key=lambda r: (r["batch"], r["seq_len"]))


def speed_metrics(entry: dict[str, Any], point: tuple[int, int]) -> dict[str, Any]:
    """A contender's report metrics from its aggregate (`measure.runner.aggregate`), None where not measured."""
    latency = entry.get("latency") or {}
    at_point = latency.get(point_key(*point))
    throughput = entry.get("throughput")
    return {
        "latency_grid": _grid_rows(latency),
        "latency_ms": {"batch": point[0], "seq_len": point[1], **{k: at_point[k] for k in ("p50", "p95", "p99")}}
        if at_point else None,
        "throughput_texts_per_s": throughput["texts_per_s"] if throughput else None,
        "throughput": throughput,
        "peak_rss_mb": entry.get("rss_first_answer_mb"),
        "peak_rss_job_mb": entry.get("peak_rss_mb"),
        "cold_start_s": entry.get("cold_start_s"),
        "load_s": entry.get("load_s"),
        "error": entry.get("error"),
    }


def measure_variants(
    baseline: ContenderSpec,
    variants: list[ContenderSpec],
    texts: list[str],
    vcfg: ValidateConfig,
    max_length: int,
    progress: Optional[Callable[..., Any]] = None,
    work_dir: Optional[Path] = None,
) -> SpeedResult:
    """Latency grid, throughput on ``texts``, peak RSS and cold start of the baseline and every variant.

    Each contender runs in a fresh process per round (`measure.runner`); the measurement is repeated up to
    the trust limits' ``max_attempts`` while contention shows (`measure.trust`). A contender that fails has
    ``error`` set and None figures; a failed baseline makes the result "not verified". ``progress`` is a
    tqdm-like factory (``progress(total=..., desc=..., unit=...)``) or None.
    """
    if not texts:
        raise MeasurementError("validate: no eval texts to measure throughput on")
    plan = plan_from_config(vcfg, max_length)
    rows = getattr(vcfg, "throughput_rows", None)
    texts = list(texts[:rows] if rows else texts)
    limits = TrustLimits.from_config(vcfg)
    specs = [baseline, *variants]
    with tempfile.TemporaryDirectory(prefix="structbert-speed-") as scratch:
        measured, verdict = runner.measure_until_trusted(
            specs, texts, plan, Path(work_dir or scratch), baseline.name, point_key(*vcfg.speedup_point), limits,
            progress,
        )
    contenders = {s.name: speed_metrics(measured.contenders[s.name], tuple(vcfg.speedup_point)) for s in specs}
    return SpeedResult(baseline.name, contenders, verdict, describe_method(plan, len(texts), verdict), plan.as_dict())


# ---------------------------------------------------------------- sizes


def onnx_size_bytes(folder: Path) -> int:
    """Bytes of the model files in a variant folder: ``model.onnx`` plus external data, or OpenVINO's IR."""
    folder = Path(folder)
    return sum(
        p.stat().st_size for p in folder.iterdir()
        if p.is_file() and (p.name.startswith("model.onnx") or p.name.startswith("openvino_model."))
    )


def torch_size_bytes(model) -> int:
    """Bytes of the baseline's parameters and buffers (what its FP32 checkpoint weighs)."""
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))


