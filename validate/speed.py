"""Speed and memory of the baseline and every variant, through the shared measurement core.

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
from typing import Any, Callable, Optional, Sequence

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
        f"{verdict.get('kept_attempt', 1)} of {verdict.get('attempts', 1)} kept), {plan.threads} intra-op threads each; "
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
        rows.append({"batch": batch, "seq_len": seq_len, **{k: stats[k] for k in ("p50", "p95", "p99", "mean", "samples")}})
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
            specs, texts, plan, Path(work_dir or scratch), baseline.name, point_key(*vcfg.speedup_point), limits, progress
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



# ---------------------------------------------------------------- transitional: removed once stage calls measure_variants
# validate/stage.py (lead-owned) still times in-process and probes memory per contender; these keep it running
# on the core's feeds and worker until it switches to `measure_variants`. Not for new code.

from structbert_lite.measure.feeds import bucket_feeds, synthetic_feed  # noqa: E402  (re-exported for stage.py)


def measure_latency(contenders, tokenizer, cfg, extra_points=(), progress=None):
    """In-process latency (transitional): ``{name: {"BxS": {p50, p95, p99, mean, samples}}}`` in ms."""
    import time

    import numpy as np

    points = sorted({(b, s) for b in cfg.batch_sizes for s in cfg.seq_lengths} | {tuple(p) for p in extra_points})
    feeds = {p: synthetic_feed(tokenizer, *p) for p in points}
    samples = {n: {p: [] for p in points} for n in contenders}
    for order in runner.rotations(list(contenders), cfg.rounds):
        for name in order:
            for point in points:
                for i in range(cfg.warmup + cfg.repeats):
                    start = time.perf_counter()
                    contenders[name].logits_for_encoding(feeds[point])
                    if i >= cfg.warmup:
                        samples[name][point].append((time.perf_counter() - start) * 1000.0)
    return {n: {point_key(*p): {k: v for k, v in runner.summarize_point([s]).items() if k != "rounds_p50"}
                for p, s in per.items()} for n, per in samples.items()}


def measure_throughput(contenders, feeds, rounds=2, progress=None):
    """In-process texts/s over pre-tokenized ``feeds`` (transitional), median over rounds."""
    import time

    import numpy as np

    n_texts = sum(len(f["input_ids"]) for f in feeds)
    per_round = {name: [] for name in contenders}
    for order in runner.rotations(list(contenders), rounds):
        for name in order:
            start = time.perf_counter()
            for feed in feeds:
                contenders[name].logits_for_encoding(feed)
            per_round[name].append(n_texts / max(time.perf_counter() - start, 1e-9))
    return {name: float(np.median(values)) for name, values in per_round.items()}


def speedup(latency, baseline, contender, point):
    """Baseline p50 / contender p50 at ``point`` (transitional)."""
    key = point_key(*point)
    return latency[baseline][key]["p50"] / latency[contender][key]["p50"]


def measure_process(kind, path, texts, max_length=128, threads=None, loader=None, tokenizer_folder=None,
                    timeout_s=600.0, python=None):
    """Peak RSS and cold start of a fresh worker that loads a contender and answers ``texts`` (transitional)."""
    spec = ContenderSpec("probe", "torch" if kind == "torch" else "variant", str(path),
                         str(tokenizer_folder) if tokenizer_folder else None, loader)
    plan = MeasurePlan(threads=threads or 1, max_length=max_length, latency_grid=((1, 8),), warmup_runs=0,
                       min_repeats=1, max_repeats=1, throughput_rounds="none", first_answer_texts=len(texts),
                       rounds=1, timeout_s=timeout_s)
    with tempfile.TemporaryDirectory(prefix="structbert-probe-") as scratch:
        measured = runner.measure_contenders([spec], list(texts), plan, Path(scratch))
    entry = measured.contenders["probe"]
    if entry.get("error"):
        raise MeasurementError(f"memory probe for {path} failed: {entry['error']}")
    return {"peak_rss_mb": entry["rss_first_answer_mb"], "cold_start_s": entry["cold_start_s"],
            "load_s": entry["load_s"], "torch_imported": entry["torch_imported"]}
