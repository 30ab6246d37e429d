"""Put a validated run into its run folder — variant folders, manifests, cards, reports, run manifest — and switch.

Only variants that passed their gate leave the run's work area: each is renamed into the run folder, given its
model card and manifest, and verified; then the reports and ``run-manifest.json`` (the set: every folder's
manifest digest and every report's sha256, plus its own digest) are written, and `OutputSet.switch` makes the
whole set appear at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from structbert_lite.artifact import (
    MANIFEST_NAME,
    Artifact,
    content_digest,
    sha256_file,
    utc_now,
    verify_folder,
    write_json,
    write_manifest,
)
from structbert_lite.errors import ArtifactError
from structbert_lite.publish.model_card import write_model_card
from structbert_lite.publish.output_set import RUN_MANIFEST, OutputSet
from structbert_lite.validate.report import plot_latency, write_report_json, write_report_md

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD, PLOT_PNG = "report.json", "report.md", "latency.png"
RUN_MANIFEST_SCHEMA = 1


def manifest_fields(variant: Artifact, entry: dict, validation, cfg, license_id: str) -> dict[str, Any]:
    """Everything a variant's manifest records beside the file hashes (what DESIGN.md promises)."""
    report = validation.report
    meta = variant.meta
    versions = {**report["versions"], **(meta.get("versions") or {})}
    return {
        **meta,
        "name": cfg.name,
        "variant": variant.variant,
        "format": variant.format,
        "engine": meta.get("engine") or "onnxruntime",
        "config": cfg.resolved(),
        "license": license_id,
        "versions": versions,
        "onnxruntime_version": versions.get("onnxruntime"),
        # what the variant was tuned for (the int8 preset's ISA), else the flags of the validating CPU
        "cpu_isa": (meta.get("quantization") or {}).get("isa") or report["machine"]["cpu_flags"],
        "metrics": entry["metrics"],
        "gate": entry["gate"],
        "batch_invariance": entry["batch_invariance"],
        "baseline": {"name": report["baseline"]["name"], "accuracy": validation.baseline_metrics.get("accuracy"),
                     "latency_ms": validation.baseline_metrics.get("latency_ms")},
        "eval": {k: report["eval"].get(k) for k in ("source", "total_rows", "used_rows", "label_counts", "note")},
        "speed_trust": report["settings"].get("speed_trust"),
        "validated_on": report["machine"],
    }


def publish_variant(output: OutputSet, variant: Artifact, entry: dict, validation, cfg, license_id: str) -> Path:
    """Move a passing variant out of the work area into the run folder; card, manifest, verify."""
    final = output.run_dir / variant.variant
    os.rename(variant.path, final)
    variant = Artifact(final, variant.variant, variant.meta, variant.format)
    write_model_card(final, {
        "name": cfg.name, "variant": variant.variant, "metrics": entry["metrics"], "gate": entry["gate"],
        "source": variant.meta.get("source"), "max_length": cfg.model.max_length, "meta": variant.meta,
        "baseline_metrics": validation.baseline_metrics, "eval": validation.report["eval"], "license": license_id,
        "speed_verified": entry["gate"].get("speed_verified", True), "batch_invariance": entry["batch_invariance"],
        "format": variant.format,
    })
    write_manifest(final, manifest_fields(variant, entry, validation, cfg, license_id))
    problems = verify_folder(final)
    if problems:
        raise ArtifactError(f"{final} does not verify after writing it, not publishing the set: {problems}")
    return final


def write_reports(output: OutputSet, report: dict) -> dict[str, str]:
    """report.json, report.md and the latency plot into the run folder; ``{file: sha256}``."""
    run_dir = output.run_dir
    files = [write_report_json(report, run_dir / REPORT_JSON)]
    try:
        files.append(plot_latency(report, run_dir / PLOT_PNG))
        plot = PLOT_PNG
    except Exception as exc:  # noqa: BLE001 - a missing font or backend must not hide the verdict; say so
        logger.warning("could not draw %s: %s", PLOT_PNG, exc)
        plot = None
    files.append(write_report_md(report, run_dir / REPORT_MD, plot))
    return {p.name: sha256_file(p) for p in files}


def write_run_manifest(output: OutputSet, report: dict, reports: dict[str, str]) -> dict[str, Any]:
    """``run-manifest.json``: the set (published folders with their manifest digests, failed variants, reports)."""
    published, failed = {}, {}
    for entry in report["variants"]:
        if entry["published"]:
            folder = output.run_dir / entry["name"]
            published[entry["name"]] = {"manifest_sha256": sha256_file(folder / MANIFEST_NAME)}
        else:
            failed[entry["name"]] = "; ".join(
                c.get("detail") or f"{c['name']} {c['value']} vs {c['limit']}"
                for c in entry["gate"]["checks"] if not c["passed"]
            ) or "not published"
    manifest = {
        "schema": RUN_MANIFEST_SCHEMA, "name": report["name"], "run": output.run_dir.name, "created_at": utc_now(),
        "passed": report["passed"], "speed_verified": report.get("speed_verified", True),
        "variants": published, "not_published": failed, "reports": reports,
    }
    manifest["manifest_digest"] = content_digest(manifest)
    write_json(output.run_dir / RUN_MANIFEST, manifest)
    return manifest


def publish_run(output: OutputSet, validation, built: dict[str, Artifact], cfg, license_id: str) -> dict[str, Path]:
    """Publish the passing variants and the reports as one set; returns ``{variant: OUT/variant}``."""
    published = {}
    for entry in validation.entries:
        if not entry["gate"]["passed"]:
            optional = "" if entry.get("required", True) else " (optional: left out, the run goes on)"
            logger.warning("%s failed the gate: not published%s", entry["name"], optional)
            continue
        publish_variant(output, built[entry["name"]], entry, validation, cfg, license_id)
        published[entry["name"]] = output.out / entry["name"]
        entry.update(published=True, path=str(output.out / entry["name"]))
    validation.report["speed_verified"] = validation.speed_verified
    output.link_shared_checkpoint()
    reports = write_reports(output, validation.report)
    write_run_manifest(output, validation.report, reports)
    output.switch()
    return published
