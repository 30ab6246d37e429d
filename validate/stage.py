"""The validate stage: measure every variant against the PyTorch FP32 baseline, gate, publish, report.

Order matters for the guarantees in DESIGN.md:

1. restore anything a killed earlier run left half-published (as `artifact.recover_interrupted`);
2. measure (fresh-process memory probes first, while this process is still quiet; then eval logits,
   the latency grid and throughput, every contender on the same thread budget);
3. gate each variant;
4. for each passing variant: model card + manifest into a staging folder beside ``out_dir/<variant>``,
   verify it, then `artifact.publish_atomically` (rename aside, rename in, delete old). A failing variant
   is never staged over its published predecessor, so a good folder is never replaced by a bad one;
5. write report.json, report.md and the plot (each by temp file + rename);
6. raise `GateError` with the summary table if any variant failed — after the reports exist.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from structbert_lite.artifact import (
    Artifact,
    publish_atomically,
    recover_interrupted,
    staging_dir,
    verify_folder,
    write_manifest,
)
from structbert_lite.config import PipelineConfig
from structbert_lite.errors import ArtifactError, GateError, StructbertLiteError
from structbert_lite.runtime import OnnxClassifier, predict_logits
from structbert_lite.validate import accuracy, speed
from structbert_lite.validate.eval_data import LABEL_NAMES, EvalSet
from structbert_lite.validate.gate import evaluate_gate
from structbert_lite.validate.model_card import write_model_card
from structbert_lite.validate.report import (
    build_report,
    library_versions,
    machine_info,
    plot_latency,
    summary_table,
    write_report_json,
    write_report_md,
)
from structbert_lite.validate.torch_baseline import (
    DEFAULT_BASELINE_LOADER,
    TorchClassifier,
    load_baseline_model,
)

logger = logging.getLogger(__name__)

BASELINE_NAME = "pytorch-fp32"
REPORT_JSON, REPORT_MD, PLOT_PNG = "report.json", "report.md", "latency.png"
EVAL_BATCH_SIZE = 32


@dataclasses.dataclass
class RunReport:
    """What `run` measured and did. ``report`` is the dict written to ``report.json``."""

    report: dict[str, Any]
    passed: bool
    published: dict[str, Path]  # variant -> published folder
    failed: list[str]  # variants that failed their gate (not published)
    summary: str  # plain-text gate table (also the GateError message)
    report_json: Path
    report_md: Path
    plot: Optional[Path]


def _progress(quiet: bool) -> Callable[..., Any]:
    from tqdm.auto import tqdm

    return lambda **kw: tqdm(disable=quiet, leave=False, **kw)


def _grid_rows(latency: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for key, stats in latency.items():
        batch, seq_len = (int(x) for x in key.split("x"))
        rows.append({"batch": batch, "seq_len": seq_len, **{k: stats[k] for k in ("p50", "p95", "p99", "mean")}})
    return sorted(rows, key=lambda r: (r["batch"], r["seq_len"]))


def _at_point(latency: dict[str, dict[str, float]], point: tuple[int, int]) -> dict[str, Any]:
    stats = latency[speed.point_key(*point)]
    return {"batch": point[0], "seq_len": point[1], **{k: stats[k] for k in ("p50", "p95", "p99")}}


def _probe(kind: str, path: Path, texts: list[str], cfg: PipelineConfig, **kw) -> dict[str, Any]:
    """Fresh-process memory/cold start; a failure is recorded (and fails a configured RSS gate), not raised."""
    try:
        result = speed.measure_process(kind, path, texts, cfg.model.max_length, cfg.validate.threads, **kw)
    except speed.MeasurementError as exc:
        logger.warning("%s", exc)
        return {"peak_rss_mb": None, "cold_start_s": None, "memory_error": str(exc)}
    return {"peak_rss_mb": result["peak_rss_mb"], "cold_start_s": result["cold_start_s"], "load_s": result["load_s"]}


def _staged_in_place(variant: Artifact, out_dir: Path) -> bool:
    """True when the variant already sits in a hidden staging folder in ``out_dir`` (same filesystem)."""
    path = Path(variant.path).resolve()
    return path.parent == out_dir.resolve() and path.name.startswith(f".{variant.variant}.tmp-")


def _publish(variant: Artifact, out_dir: Path, write_extras: Callable[[Path], None]) -> Path:
    """Model card + manifest into a staging folder, verify it, rename it into ``out_dir/<variant>``."""
    final = out_dir / variant.variant
    if _staged_in_place(variant, out_dir):
        staged = Path(variant.path)
        write_extras(staged)
        _check_staged(staged)
        return publish_atomically(staged, final)
    with staging_dir(final) as staged:
        shutil.copytree(variant.path, staged, dirs_exist_ok=True)
        write_extras(staged)
        _check_staged(staged)
        return publish_atomically(staged, final)


def _check_staged(folder: Path) -> None:
    problems = verify_folder(folder)
    if problems:
        raise ArtifactError(f"staged folder {folder} does not verify, not publishing it: {problems}")


def run(
    baseline: Artifact,
    variants: list[Artifact],
    eval_set: EvalSet,
    cfg: PipelineConfig,
    out_dir: Path,
    quiet: bool = False,
    baseline_loader: str = DEFAULT_BASELINE_LOADER,
    baseline_model: Any = None,
) -> RunReport:
    """Measure, gate, publish passing variants into ``out_dir/<variant>``, write the reports.

    ``baseline.path`` is the PyTorch checkpoint folder, loaded with ``baseline_loader`` ("module:function";
    used in-process unless ``baseline_model`` is given, and in the fresh-process memory probe). Each
    variant's ``meta`` (source, config, versions, onnx_opset, quantization, cpu_isa...) goes into its
    manifest. Raises `GateError` (message: the summary table) after writing the reports if any variant failed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recover_interrupted(out_dir, keep={Path(v.path).resolve() for v in variants})
    names = [v.variant for v in variants]
    if not variants:
        raise StructbertLiteError("validate: no variants to validate (all disabled in the config?)")
    if len(set(names)) != len(names):
        raise StructbertLiteError(f"validate: duplicate variant names {names}")
    vcfg, max_length, threads = cfg.validate, cfg.model.max_length, cfg.validate.threads
    progress = _progress(quiet)
    base_name = baseline.variant or BASELINE_NAME
    tokenizer_folder = Path(variants[0].path)  # one tokenizer for all, so every model sees the same ids

    # 1. memory and cold start, each in a fresh process, before this process loads anything heavy
    memory: dict[str, dict[str, Any]] = {}
    if vcfg.memory:
        sample = eval_set.texts[: max(1, vcfg.speedup_point[0])]
        bar = progress(total=len(variants) + 1, desc="memory probes", unit="process")
        memory[base_name] = _probe(
            "torch", Path(baseline.path), sample, cfg, loader=baseline_loader, tokenizer_folder=tokenizer_folder
        )
        bar.update(1)
        for v in variants:
            memory[v.variant] = _probe("onnx", Path(v.path), sample, cfg)
            bar.update(1)
        bar.close()

    # 2. accuracy on the eval set
    model = baseline_model if baseline_model is not None else load_baseline_model(baseline.path, baseline_loader)
    contenders: dict[str, Any] = {base_name: TorchClassifier(model, tokenizer_folder, max_length, threads)}
    for v in variants:
        contenders[v.variant] = OnnxClassifier(Path(v.path), max_length, threads)
    logits = {}
    for name, classifier in contenders.items():
        bar = progress(total=len(eval_set), desc=f"eval {name}", unit="text")
        logits[name] = predict_logits(classifier, eval_set.texts, EVAL_BATCH_SIZE, bar)
        bar.close()
    gold = eval_set.labels

    # 3. latency grid and throughput, contenders in alternated blocks
    tokenizer = contenders[base_name].tokenizer
    latency = speed.measure_latency(contenders, tokenizer, vcfg.latency, [vcfg.speedup_point], progress)
    texts = eval_set.texts[: vcfg.throughput_rows] if vcfg.throughput_rows else eval_set.texts
    feeds = speed.bucket_feeds(tokenizer, texts, vcfg.throughput_batch_size)
    throughput = speed.measure_throughput(contenders, feeds, vcfg.latency.rounds, progress)

    def speed_metrics(name: str) -> dict[str, Any]:
        return {
            "latency_ms": _at_point(latency[name], vcfg.speedup_point),
            "latency_grid": _grid_rows(latency[name]),
            "throughput_texts_per_s": throughput[name],
            **memory.get(name, {"peak_rss_mb": None, "cold_start_s": None}),
        }

    base_metrics = {
        **accuracy.classification_metrics(gold, logits[base_name], LABEL_NAMES),
        "size_bytes": speed.torch_size_bytes(model),
        **speed_metrics(base_name),
    }

    # 4. gate
    entries, gates = [], {}
    for v in variants:
        acc = accuracy.variant_accuracy(
            gold, logits[base_name], logits[v.variant], eval_set.texts, cfg.eval.flipped_examples, LABEL_NAMES
        )
        flipped = acc.pop("flipped")
        metrics = {
            **acc,
            "speedup": speed.speedup(latency, base_name, v.variant, vcfg.speedup_point),
            "size_bytes": speed.onnx_size_bytes(Path(v.path)),
            **speed_metrics(v.variant),
        }
        gates[v.variant] = evaluate_gate(v.variant, metrics, cfg.gate.get(v.variant))
        entries.append({"name": v.variant, "published": False, "path": None, "kept_previous": False,
                        "gate": gates[v.variant], "metrics": metrics, "flipped": flipped})

    # 5. publish the passing variants
    machine, versions = machine_info(threads), library_versions()
    eval_info = eval_set.summary()
    published: dict[str, Path] = {}
    for v, entry in zip(variants, entries):
        final = out_dir / v.variant
        if not entry["gate"]["passed"]:
            entry["kept_previous"] = final.exists()
            logger.warning("%s failed the gate: not published%s", v.variant,
                           " (the previously published folder is kept)" if entry["kept_previous"] else "")
            continue

        def write_extras(folder: Path, v=v, entry=entry) -> None:
            write_model_card(folder, cfg.name, v.variant, entry["metrics"], entry["gate"], v.meta.get("source"),
                             max_length, display_path=str(final), baseline_metrics=base_metrics)
            write_manifest(folder, {
                **v.meta,
                "name": cfg.name,
                "variant": v.variant,
                "config": v.meta.get("config") or cfg.resolved(),
                "versions": {**versions, **(v.meta.get("versions") or {})},
                "onnxruntime_version": versions.get("onnxruntime"),
                # what the variant was tuned for (the int8 preset's ISA), else the flags of the validating CPU
                "cpu_isa": v.meta.get("cpu_isa")
                or (v.meta.get("quantization") or {}).get("isa")
                or machine["cpu_flags"],
                "metrics": entry["metrics"],
                "gate": entry["gate"],
                "baseline": {"name": base_name, "accuracy": base_metrics["accuracy"],
                             "latency_ms": base_metrics["latency_ms"]},
                "eval": {k: eval_info[k] for k in ("source", "total_rows", "used_rows")},
                "validated_on": machine,
            })

        published[v.variant] = _publish(v, out_dir, write_extras)
        entry.update(published=True, path=str(published[v.variant]))

    # 6. reports, then the verdict
    settings = {
        "threads": threads,
        "max_length": max_length,
        "speedup_point": list(vcfg.speedup_point),
        "latency": vcfg.latency.model_dump(),
        "throughput_batch_size": vcfg.throughput_batch_size,
        "throughput_rows": len(texts),
        "eval_batch_size": EVAL_BATCH_SIZE,
        "memory": vcfg.memory,
    }
    baseline_entry = {"name": base_name, "path": str(baseline.path), "metrics": base_metrics}
    report = build_report(cfg.name, baseline_entry, entries, eval_info, settings, cfg.resolved(), machine, versions)
    report_json = write_report_json(report, out_dir / REPORT_JSON)
    try:
        plot = plot_latency(report, out_dir / PLOT_PNG)
    except Exception as exc:  # a missing font or backend must not hide the verdict; say so
        logger.warning("could not draw %s: %s", PLOT_PNG, exc)
        plot = None
    report_md = write_report_md(report, out_dir / REPORT_MD, PLOT_PNG if plot else None)
    summary = summary_table(report)
    failed = [e["name"] for e in entries if not e["gate"]["passed"]]
    result = RunReport(report, not failed, published, failed, summary, report_json, report_md, plot)
    if failed:
        error = GateError(
            f"{len(failed)} variant(s) failed the gate and were not published: {', '.join(failed)}\n\n{summary}\n\n"
            f"Details: {report_md}"
        )
        error.run_report = result  # the CLI may print the rich table from it
        raise error
    return result
