"""Variants as steps: every variant is made by one step module from its parent artifact.

    source ─► export ─► fp32 ─► fuse ─► fp32-optimized ─► ort-dynamic-int8 ─► int8-dynamic
                          └──────────► openvino-int8 ─► openvino-int8
    source ─► distill ─► student ─► export ─► student-fp32 ─► …

A step module has two names, nothing else is required of it (Olive's pass contract without the search):

    class Options(StepOptions): ...                                   # its config, validated, unknown keys are errors
    def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact

``run`` writes only into ``ctx.work_dir`` and returns an `Artifact` whose ``meta`` holds only its own keys
(the runner merges them over the parent's). Adding a variant is one module, one line in `STEPS` (or a dotted
module path in the config) and one config entry.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from structbert_lite.artifact import Artifact
from structbert_lite.errors import ConfigError

SOURCE = "source"  # the parent name of steps that start from the source checkpoint

# Step name -> module (a dict literal, ORT MODEL_TYPES style). Imported only when a config uses the step.
STEPS = {
    "export": "structbert_lite.convert.export_onnx",
    "fuse": "structbert_lite.quantize.optimize_graph",
    "ort-dynamic-int8": "structbert_lite.quantize.dynamic_int8",
    "openvino-int8": "structbert_lite.quantize.openvino_int8",
    "distill": "structbert_lite.train.distill",
}


class StepOptions(BaseModel):
    """Base of every step's ``Options``: strict (unknown keys are errors), validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclasses.dataclass
class StepContext:
    """What steps read, nothing more (a step's own settings, its seed included, are its ``Options``). Built by the
    pipeline once per step (``name``, ``work_dir`` and ``artifacts`` differ)."""

    name: str  # the variant this step makes
    work_dir: Path  # an empty folder for the step's output, inside the run's staging area
    threads: int  # intra-op threads for anything the step runs (the same budget as validation)
    max_length: int  # truncation length in tokens, as served
    tokenizer_dir: Path  # tokenizer.json / vocab.txt / tokenizer_config.json every variant ships
    source: Any  # convert.checkpoint.LoadedClassifier: .model (torch, eval mode), .id2label, .checkpoint_dir
    calibration_texts: list[str]  # eval texts (calibration, fallback, parity on real text)
    calibration_labels: Optional[np.ndarray] = None  # (rows,) model label ids of calibration_texts, if known
    artifacts: dict[str, Artifact] = dataclasses.field(default_factory=dict)  # made so far, by variant name
    quiet: bool = False  # no progress bars
    cache_dir: Optional[Path] = None  # kept across runs of the same output (teacher logits, resumable training state)
    # the whole eval set (e.g. to keep it out of training)
    eval_texts: list[str] = dataclasses.field(default_factory=list)


def resolve_step(step: str) -> ModuleType:
    """The module of ``step``: a name in `STEPS`, or a dotted module path (e.g. a project's own step)."""
    module_name = STEPS.get(step, step)
    if step not in STEPS and "." not in step:
        raise ConfigError(f"unknown step {step!r}; use one of {sorted(STEPS)} or a dotted module path")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(f"step {step!r}: module {module_name} does not exist") from None
        raise ConfigError(f"step {step!r} needs {exc.name}, which is not installed: run `make setup`") from None
    for attr in ("Options", "run"):
        if not hasattr(module, attr):
            raise ConfigError(f"step {step!r}: {module_name} has no {attr} (a step defines Options and run)")
    return module


def step_options(step: str, options: Optional[dict], where: str) -> StepOptions:
    """Validate ``options`` against the step's ``Options``; errors name the variant and the key."""
    try:
        module = resolve_step(step)
    except ConfigError as exc:
        raise ConfigError(f"invalid config {where}: {exc}") from None
    try:
        return module.Options.model_validate(options or {})
    except ValidationError as exc:
        from structbert_lite.config import format_validation_errors

        raise ConfigError(format_validation_errors(exc, f"{where} (step {step})", prefix="options.")) from None


def run_step(step: str, parent: Artifact, options: StepOptions, ctx: StepContext) -> Artifact:
    """Run one step; its meta is merged over the parent's (each step writes only its own keys)."""
    module = resolve_step(step)
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    made = module.run(parent, options, ctx)
    meta = {**parent.meta, **made.meta, "variant": ctx.name, "step": step, "parent": parent.variant}
    return dataclasses.replace(made, variant=ctx.name, meta=meta)
