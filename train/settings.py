"""Training settings: the trainer's knobs (`TrainSettings`) and the ``finetune:`` YAML section (`FinetuneSettings`).

Unknown keys, wrong types and impossible values are errors naming the key and the file, like
`structbert_lite.config`. ``configs/finetune.yaml`` mirrors `FinetuneSettings` one to one. The defaults fit
StructBERT-base on 2 CPU cores (batch 16 × 128 tokens); a GPU is used when present (``device: auto``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from structbert_lite.config import format_validation_errors
from structbert_lite.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainSettings(_Strict):
    """What `trainer.train` needs; the demo model and the distill step build one of these too."""

    epochs: int = Field(4, ge=1, le=100, description="maximum training epochs")
    batch_size: int = Field(16, ge=1, le=1024, description="texts per optimizer step")
    learning_rate: float = Field(3e-5, gt=0, lt=1, description="AdamW peak learning rate")
    weight_decay: float = Field(0.01, ge=0, lt=1,
                                description="AdamW weight decay (not applied to biases and LayerNorm)")
    warmup_share: float = Field(0.1, ge=0, le=0.5, description="share of all steps spent warming the learning rate up")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    max_length: int = Field(128, ge=8, le=512, description="truncation length in tokens, training and held-out")
    patience: Optional[int] = Field(
        2, ge=1, description="stop after this many epochs without a better held-out accuracy (null: never)"
    )
    min_delta: float = Field(0.0, ge=0, lt=1, description="held-out accuracy gain that counts as better")
    eval_batch_size: int = Field(64, ge=1, le=4096, description="texts per batch when scoring held-out data")
    seed: int = Field(20240601, description="seed for python/numpy/torch, the held-out split and the batch order")
    threads: int = Field(2, ge=1, le=256, description="CPU threads for torch (ignored on CUDA)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': CUDA when torch sees a GPU, else CPU")
    freeze_embeddings: bool = Field(False, description="keep the embedding tables fixed (small data)")
    freeze_layers: int = Field(0, ge=0, le=48, description="keep the first N transformer layers fixed (small data)")


class FinetuneSettings(TrainSettings):
    """The ``finetune:`` section: the trainer's settings plus the data checks of `structbert-lite finetune`."""

    text_column: str = Field("text", description="column holding the text (CLI: --text-column)")
    label_column: str = Field(
        "label", description="column holding the label: 0/1, 负面/正面, negative/positive (CLI: --label-column)"
    )
    heldout_share: float = Field(
        0.1, gt=0, lt=0.5, description="share of --train held out for early stopping when no --eval is given"
    )
    min_rows_per_class: int = Field(
        20, ge=1, description="refuse to train when a class has fewer training rows than this"
    )
    max_overlap_share: float = Field(
        0.05, ge=0, le=1,
        description="refuse when more than this share of training texts is also in --eval (fewer: dropped)",
    )


class _FinetuneFile(_Strict):
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings, description="fine-tuning settings")


def parse_finetune_settings(data: object, origin: str = "<dict>") -> FinetuneSettings:
    """Validate a mapping holding a ``finetune:`` section (missing keys take their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid finetune config {origin}: the top level must be a mapping with a 'finetune:' section")
    try:
        return _FinetuneFile.model_validate(data).finetune
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, f"finetune {origin}")) from None


def load_finetune_settings(path: str | Path | None) -> FinetuneSettings:
    """The defaults (``path`` None) or the validated ``finetune:`` section of a YAML file."""
    if path is None:
        return FinetuneSettings()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"finetune config {path} does not exist (see configs/finetune.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"finetune config {path} is not valid YAML: {exc}") from None
    return parse_finetune_settings(data, str(path))


def train_settings(settings: TrainSettings) -> TrainSettings:
    """Just the trainer's part of ``settings`` (a `FinetuneSettings` or a distill step's options)."""
    return TrainSettings.model_validate({k: getattr(settings, k) for k in TrainSettings.model_fields})
