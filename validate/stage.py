"""The validate stage: measure every variant against the PyTorch FP32 baseline, gate it, assemble the report.

A short sequence of named calls; publishing is `publish/`'s job:

1. batch invariance of every variant (alone vs mixed-length batches), which also decides how it is scored;
2. eval logits of the baseline and every variant, as served;
3. the baseline's own sanity (above chance, ``eval.min_accuracy``): a checkpoint whose labels or vocabulary do
   not match its weights stops the run here, before anything is timed or published;
4. accuracy and drift per variant, and by token-length bucket;
5. speed and memory: every contender in fresh processes, re-measured while the machine is busy (`speed`);
6. the gate per variant, against the baseline and against its parent.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from structbert_lite.artifact import CHECKPOINT_WEIGHTS, Artifact
from structbert_lite.config import PipelineConfig
from structbert_lite.errors import BaselineError, StructbertLiteError
from structbert_lite.measure.machine import library_versions, machine_info
from structbert_lite.runtime import engine_class, predict_logits
from structbert_lite.validate import accuracy, speed
from structbert_lite.validate.batch_invariance import measure_batch_invariance
from structbert_lite.validate.eval_data import EvalSet
from structbert_lite.validate.gate import evaluate_gate, failed_step_gate
from structbert_lite.validate.length_buckets import by_bucket, compare_truncation, token_lengths
from structbert_lite.validate.report import build_report
from structbert_lite.validate.torch_baseline import TorchClassifier, load_baseline_model

logger = logging.getLogger(__name__)

BASELINE_NAME = "pytorch-fp32"
EVAL_BATCH_SIZE = 32
CHANCE_MARGIN = 0.02  # the baseline must beat the majority-class share by this much


@dataclasses.dataclass
class Validation:
    """What the stage measured and decided; ``report`` becomes report.json once `publish` fills in paths."""

    report: dict[str, Any]
    entries: list[dict[str, Any]]  # report["variants"], in config order
    baseline_metrics: dict[str, Any]
    speed_verified: bool

    def entry(self, name: str) -> dict[str, Any]:
        return next(e for e in self.entries if e["name"] == name)


def _progress(quiet: bool) -> Callable[..., Any]:
    from structbert_lite.console import progress_factory

    # No progress bars into logs and pipes: ~95 KB of carriage returns per run otherwise.
    return progress_factory(quiet)


def open_variant_for_eval(variant: Artifact, max_length: int, threads: int, truncation: str, tokenizer_dir: Path):
    """The variant's classifier on its engine, batched (invariance is measured before it is trusted); a
    checkpoint-format variant (a distilled student) runs in PyTorch with the run's tokenizer."""
    if variant.format == "checkpoint":
        model = load_baseline_model(variant.path)
        return TorchClassifier(model, tokenizer_dir, max_length, threads, truncation)
    engine = engine_class(variant.meta.get("engine") or "onnxruntime")
    return engine(variant.path, max_length=max_length, threads=threads, truncation=truncation)


def model_size_bytes(variant: Artifact) -> int:
    """Bytes of the variant's model files: ONNX (+ external data), OpenVINO IR, or a checkpoint's weights."""
    if variant.format == "checkpoint":
        return sum(p.stat().st_size for name in CHECKPOINT_WEIGHTS if (p := Path(variant.path) / name).is_file())
    return speed.onnx_size_bytes(Path(variant.path))


def truncation_comparison(model, tokenizer_dir: Path, eval_set: EvalSet, lengths: np.ndarray, cfg: PipelineConfig):
    """The baseline's accuracy on the texts longer than max_length, keeping their start vs start and end."""
    def score(texts, mode):
        classifier = TorchClassifier(model, tokenizer_dir, cfg.model.max_length, cfg.validate.threads, mode)
        return predict_logits(classifier, texts, EVAL_BATCH_SIZE)

    return compare_truncation(score, eval_set.texts, eval_set.labels, lengths, cfg.model.max_length)


def check_baseline(gold: np.ndarray, logits: np.ndarray, eval_set: EvalSet, min_accuracy: float) -> float:
    """The baseline's accuracy; raises `BaselineError` when it is no better than chance or below the minimum."""
    acc = float((logits.argmax(-1) == gold).mean())
    counts = np.bincount(gold)
    one_class = int((counts > 0).sum()) < 2  # warned about when loaded; chance is meaningless then
    majority = float(counts.max() / len(gold)) if len(gold) else 1.0
    chance = not one_class and acc <= majority + CHANCE_MARGIN
    if chance or acc < min_accuracy:
        why = (f"no better than chance ({majority:.1%}, the majority class)" if chance
               else f"below eval.min_accuracy {min_accuracy:.0%}")
        raise BaselineError(
            f"the source checkpoint itself scores {acc:.1%} on {eval_set.source} ({len(gold)} rows), {why}: its "
            "labels (id2label/label_mapping.json) or vocab.txt do not match its weights, or the eval labels are "
            "wrong. Nothing was published"
        )
    return acc


@dataclasses.dataclass
class ScoredBaseline:
    """The source model scored on the eval set (before any step runs: a broken source fails fast)."""

    model: Any  # the PyTorch module
    classifier: TorchClassifier
    logits: np.ndarray  # (rows, labels)
    accuracy: float


def score_baseline(model: Any, tokenizer_dir: Path, eval_set: EvalSet, cfg: PipelineConfig,
                   quiet: bool = False) -> ScoredBaseline:
    """Eval logits of the PyTorch baseline; raises `BaselineError` when the source itself is not sane."""
    classifier = TorchClassifier(model, tokenizer_dir, cfg.model.max_length, cfg.validate.threads, cfg.model.truncation)
    started = time.perf_counter()
    logits = eval_logits({BASELINE_NAME: classifier}, eval_set.texts, _progress(quiet))[BASELINE_NAME]
    acc = check_baseline(eval_set.labels, logits, eval_set, cfg.eval.min_accuracy)
    logger.info(
        "baseline (PyTorch FP32) accuracy %.4f on %s: %d texts in %.0f s (each variant's eval takes at most about as "
        "long; eval.limit bounds it)", acc, eval_set.source, len(eval_set), time.perf_counter() - started,
    )
    return ScoredBaseline(model, classifier, logits, acc)


def eval_logits(classifiers: dict[str, Any], texts: list[str], progress) -> dict[str, np.ndarray]:
    logits = {}
    for name, classifier in classifiers.items():
        bar = progress(total=len(texts), desc=f"eval {name}", unit="text")
        logits[name] = predict_logits(classifier, texts, EVAL_BATCH_SIZE, bar)
        bar.close()
    return logits


def contender_specs(baseline: Artifact, variants: list[Artifact], tokenizer_dir: Path, invariance: dict):
    """The baseline and the variants as the measurement core loads them; a variant that is not batch-invariant
    is timed as it is served, one text at a time (its staged folder has no manifest to say so yet)."""
    from structbert_lite.measure.contenders import ContenderSpec

    base = ContenderSpec(BASELINE_NAME, "torch", str(baseline.path), tokenizer_dir=str(tokenizer_dir))
    return base, [
        ContenderSpec(v.variant, "torch", str(v.path), tokenizer_dir=str(tokenizer_dir)) if v.format == "checkpoint"
        else ContenderSpec(v.variant, "variant", str(v.path), tokenizer_dir=str(v.path),
                           options={"batch_invariant": invariance[v.variant]["invariant"]})
        for v in variants
    ]


def variant_metrics(
    variant: Artifact, gold: np.ndarray, logits: dict, measured: "speed.SpeedResult", eval_set: EvalSet,
    cfg: PipelineConfig,
) -> dict[str, Any]:
    acc = accuracy.variant_accuracy(
        gold, logits[BASELINE_NAME], logits[variant.variant], eval_set.texts, cfg.eval.flipped_examples,
        eval_set.label_names,
    )
    parent = variant.meta.get("parent")
    parent_name = BASELINE_NAME if parent in (None, "source") else parent
    mine = (measured.contenders[variant.variant].get("latency_ms") or {}).get("p50")
    parents = (measured.contenders.get(parent_name, {}).get("latency_ms") or {}).get("p50")
    return {
        **acc,
        "speedup": measured.speedup(variant.variant),
        "speedup_vs_parent": parents / mine if parents and mine else None,
        "parent": parent_name,
        "size_bytes": model_size_bytes(variant),
        **measured.contenders[variant.variant],
    }


def run(
    baseline: Artifact,
    variants: list[Artifact],
    failures: dict[str, str],
    eval_set: EvalSet,
    cfg: PipelineConfig,
    scored: ScoredBaseline,
    tokenizer_dir: Path,
    quiet: bool = False,
    work_dir: Optional[Path] = None,
) -> Validation:
    """Measure and gate ``variants`` (built, to publish) and record ``failures`` (variant → why its step failed).

    ``baseline.path`` is the source checkpoint; ``scored`` is `score_baseline`'s result for it.
    """
    vcfg, max_length, threads, progress = cfg.validate, cfg.model.max_length, cfg.validate.threads, _progress(quiet)
    gold, texts, model = eval_set.labels, eval_set.texts, scored.model
    classifiers, invariance = {}, {}
    for v in variants:
        classifiers[v.variant] = open_variant_for_eval(v, max_length, threads, cfg.model.truncation, tokenizer_dir)
        invariance[v.variant] = measure_batch_invariance(
            classifiers[v.variant], texts[: vcfg.batch_invariance_rows], vcfg.max_batch_score_diff
        )
        classifiers[v.variant].batch_invariant = invariance[v.variant]["invariant"]  # scored as served
        classifiers[v.variant].equal_length_invariant = invariance[v.variant]["equal_length"]["invariant"]
    logits = {BASELINE_NAME: scored.logits, **eval_logits(classifiers, texts, progress)}
    lengths = token_lengths(scored.classifier.tokenizer, texts)
    variant_logits = {v.variant: logits[v.variant] for v in variants}
    buckets = by_bucket(lengths, gold, logits[BASELINE_NAME], variant_logits, max_length)
    buckets["truncation"] = truncation_comparison(model, tokenizer_dir, eval_set, lengths, cfg)

    base_spec, specs = contender_specs(baseline, variants, tokenizer_dir, invariance)
    measured = speed.measure_variants(base_spec, specs, texts, vcfg, max_length, progress, work_dir)
    verified = bool(measured.trust.get("verified"))
    base_metrics = {
        **accuracy.classification_metrics(gold, logits[BASELINE_NAME], eval_set.label_names),
        "size_bytes": speed.torch_size_bytes(model),
        **measured.contenders[BASELINE_NAME],
    }
    entries, measured_on = [], measuring_cpu(threads)
    for v in variants:
        metrics = {**variant_metrics(v, gold, logits, measured, eval_set, cfg), "measured_on": measured_on}
        gate = evaluate_gate(v.variant, metrics, cfg.variant(v.variant).gate, verified)
        entries.append(_entry(v.variant, gate, metrics, invariance[v.variant]))
    entries += [_entry(name, failed_step_gate(reason), {}, None) for name, reason in failures.items()]
    required = {v.name: v.required for v in cfg.variants}
    for entry in entries:
        entry["required"] = required.get(entry["name"], True)
    order = {v.name: i for i, v in enumerate(cfg.variants)}
    entries.sort(key=lambda e: order.get(e["name"], len(order)))
    report = _report(cfg, base_metrics, baseline, entries, eval_set, measured, buckets)
    return Validation(report, entries, base_metrics, verified)


def measuring_cpu(threads: int) -> dict[str, Any]:
    """``{cpu, isa, cpu_flags, threads}`` of this machine, recorded beside every variant's speed figures: which
    variant is fastest depends on the instruction set (`structbert_lite.variant_choice`)."""
    from structbert_lite.cpu import isa_of

    machine = machine_info(threads)
    return {"cpu": machine["cpu"], "isa": isa_of(machine["cpu_flags"]), "cpu_flags": machine["cpu_flags"],
            "threads": threads}


def _entry(name: str, gate: dict, metrics: dict, invariance: Optional[dict]) -> dict[str, Any]:
    flipped = metrics.pop("flipped", []) if metrics else []
    return {"name": name, "published": False, "path": None, "gate": gate, "metrics": metrics,
            "batch_invariance": invariance, "flipped": flipped}


def _report(cfg, base_metrics, baseline, entries, eval_set, measured, buckets) -> dict[str, Any]:
    vcfg = cfg.validate
    settings = {
        "threads": vcfg.threads,
        "max_length": cfg.model.max_length,
        "truncation": cfg.model.truncation,
        "speedup_point": list(vcfg.speedup_point),
        "latency": vcfg.latency.model_dump(),
        "throughput_batch_size": vcfg.throughput_batch_size,
        "throughput_rows": min(len(eval_set), vcfg.throughput_rows or len(eval_set)),
        "eval_batch_size": EVAL_BATCH_SIZE,
        "speed_method": measured.method,
        "speed_trust": measured.trust,
    }
    baseline_entry = {"name": BASELINE_NAME, "path": str(baseline.path), "metrics": base_metrics}
    report = build_report(cfg.name, baseline_entry, entries, eval_set.summary(), settings, cfg.resolved(),
                          machine_info(vcfg.threads), library_versions())
    report["length_buckets"] = buckets
    return report


def describe_step_error(exc: BaseException) -> str:
    """One line for a failed step (a user-facing error keeps its message; anything else names its type)."""
    if isinstance(exc, StructbertLiteError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
