"""The one training loop: the demo model, `structbert-lite finetune` and the distilled student all train here.

    train(model, train_set, settings, heldout=..., loss_fn=..., state_dir=...) -> TrainResult

* seeded (python, numpy, torch; batch order from ``(seed, epoch)``), AdamW with linear warmup and decay,
  gradient clipping, length-bucketed batches padded to their longest row;
* after each epoch: held-out accuracy, early stopping with ``patience``, the best epoch's weights kept, and
  (with ``state_dir``) the whole state saved atomically so a killed run resumes with identical results;
* ``loss_fn(outputs, batch) -> scalar tensor`` is the hook for other objectives: ``outputs`` is the model's
  output (``.logits``: (batch, labels)), ``batch`` holds ``input_ids``, ``attention_mask`` and every field of
  the `EncodedSet` for those rows (``labels``, or e.g. ``teacher_logits`` for distillation);
* CPU with ``settings.threads`` threads by default, CUDA when ``device`` allows and torch sees a GPU;
  progress bars (loss, texts/s) only on a terminal and never with ``quiet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from structbert_lite.train import state as train_state
from structbert_lite.train.batching import EncodedSet, collate, count_batches, epoch_batches, sorted_batches
from structbert_lite.train.settings import TrainSettings

logger = logging.getLogger(__name__)

IGNORE_LABEL = -100  # a row without a gold label (cross-entropy skips it)
LOSS_POINTS_PER_EPOCH = 20  # points of the loss curve recorded per epoch
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")

LossFn = Callable[[Any, dict], Any]
EpochHook = Callable[[dict], None]


def cross_entropy_loss(outputs, batch: dict):
    """The default objective: cross-entropy of the logits against ``batch["labels"]`` (-100 = no label)."""
    import torch.nn.functional as F

    return F.cross_entropy(outputs.logits, batch["labels"], ignore_index=IGNORE_LABEL)


@dataclasses.dataclass
class TrainResult:
    """What a run did. The model passed to `train` holds the best epoch's weights, on the CPU, in eval mode."""

    history: list[dict]  # one record per epoch: train_loss, loss_curve, heldout_accuracy, texts_per_s, seconds, lr
    best_epoch: int
    best_accuracy: Optional[float]
    stopped_early: bool
    resumed_from: Optional[int]  # the epoch a killed run was resumed after
    seconds: float  # this process's training time (a resumed run counts only its own part)
    device: str
    trainable_parameters: int


def pick_device(setting: str):
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        from structbert_lite.errors import ConfigError

        raise ConfigError("device: cuda was asked for but torch sees no GPU; use device: auto or cpu")
    return torch.device("cuda" if setting != "cpu" and torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def freeze(model, embeddings: bool, layers: int) -> int:
    """Stop gradients for the embeddings and the first ``layers`` transformer layers; trainable count left."""
    base = model.base_model
    if layers > len(base.encoder.layer):
        from structbert_lite.errors import ConfigError

        raise ConfigError(f"freeze_layers={layers} but the model has only {len(base.encoder.layer)} layers")
    frozen = ([base.embeddings] if embeddings else []) + list(base.encoder.layer[:layers])
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_optimizer(model, settings: TrainSettings):
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": settings.weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.learning_rate)


def build_scheduler(optimizer, total_steps: int, warmup_share: float):
    """Linear warmup over ``warmup_share`` of the steps, then linear decay to 0."""
    import torch

    warmup = round(total_steps * warmup_share)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def predict_logits(model, data: EncodedSet, batch_size: int = 64, device=None) -> np.ndarray:
    """Logits (rows, labels) for every row of ``data``, in row order, scored in length-sorted batches."""
    import torch

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(data), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for rows in sorted_batches(data.lengths, batch_size):
            batch = collate(EncodedSet(data.ids, {}, data.pad_id), rows, device)
            out[rows] = model(**batch).logits.float().cpu().numpy()
    model.train(was_training)
    return out


def accuracy(logits: np.ndarray, labels) -> float:
    labels = np.asarray(labels)
    known = labels != IGNORE_LABEL
    return float((logits.argmax(-1)[known] == labels[known]).mean()) if known.any() else 0.0


def fingerprint_of(settings: TrainSettings, train_set: EncodedSet, heldout: Optional[EncodedSet], model,
                   extra: str) -> str:
    """What a saved state must match to be resumed: settings (bar threads/device), data, model shape, ``extra``."""
    digest = hashlib.sha256()
    digest.update(json.dumps(settings.model_dump(mode="json", exclude={"threads", "device"}), sort_keys=True).encode())
    for data in (train_set, heldout):
        if data is not None:
            digest.update(json.dumps(data.ids).encode())
            for name in sorted(data.fields):
                digest.update(name.encode() + data.fields[name].cpu().numpy().tobytes())
    digest.update(json.dumps([(n, list(p.shape), p.requires_grad) for n, p in model.named_parameters()]).encode())
    digest.update(extra.encode())
    return digest.hexdigest()


def _progress(batches, desc: str, quiet: bool):
    from structbert_lite.console import progress

    return progress(batches, desc=desc, unit="batch", quiet=quiet)  # drawn on a terminal only


def _run_epoch(model, data: EncodedSet, bar, optimizer, scheduler, loss_fn: LossFn, settings, device) -> dict:
    """One pass over ``bar`` (the epoch's batches, wrapped in a progress bar); the epoch's record."""
    import torch

    model.train()
    started, seen, losses = time.perf_counter(), 0, []
    for rows in bar:
        batch = collate(data, rows, device)
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = loss_fn(outputs, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        seen += len(rows)
        rate = seen / max(1e-9, time.perf_counter() - started)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", texts_per_s=f"{rate:.0f}", refresh=False)
    seconds = time.perf_counter() - started
    chunks = np.array_split(np.asarray(losses), min(LOSS_POINTS_PER_EPOCH, len(losses)))
    return {
        "train_loss": float(np.mean(losses)),
        "loss_curve": [float(c.mean()) for c in chunks],
        "texts_per_s": round(seen / max(1e-9, seconds), 1),
        "seconds": round(seconds, 2),
        "lr": float(scheduler.get_last_lr()[0]),
    }


def _improved(record: dict, accuracy_now: Optional[float], settings: TrainSettings) -> bool:
    if accuracy_now is None:
        return True  # no held-out data: the latest epoch is the one kept
    return record["best_accuracy"] is None or accuracy_now > record["best_accuracy"] + settings.min_delta


def train(
    model,
    train_set: EncodedSet,
    settings: TrainSettings,
    *,
    heldout: Optional[EncodedSet] = None,
    loss_fn: LossFn = cross_entropy_loss,
    state_dir: Optional[Path] = None,
    fingerprint_extra: str = "",
    desc: str = "train",
    quiet: bool = False,
    on_epoch: Optional[EpochHook] = None,
) -> TrainResult:
    """Train ``model`` (a transformers classifier) in place; it ends with the best epoch's weights, on the CPU.

    ``heldout`` (with a ``labels`` field) drives early stopping and the choice of the best epoch; without it the
    last epoch is kept. With ``state_dir`` every epoch's state is saved there and a matching saved state is
    resumed; the caller removes it (`state.clear_state`) once the result is safely stored. ``on_epoch`` is
    called with each epoch's record after its state is saved.
    """
    import torch

    device = pick_device(settings.device)
    if device.type == "cpu":
        torch.set_num_threads(settings.threads)
    trainable = freeze(model, settings.freeze_embeddings, settings.freeze_layers)
    fingerprint = fingerprint_of(settings, train_set, heldout, model, fingerprint_extra)
    seed_everything(settings.seed)
    model.to(device)
    optimizer = build_optimizer(model, settings)
    steps = count_batches(len(train_set), settings.batch_size)
    scheduler = build_scheduler(optimizer, steps * settings.epochs, settings.warmup_share)
    record, best_weights = _resume(state_dir, fingerprint, model, optimizer, scheduler, desc)
    resumed_from = record["epoch"] or None
    started = time.perf_counter()
    for epoch in range(record["epoch"] + 1, settings.epochs + 1):
        if record["stopped"]:
            break
        batches = epoch_batches(train_set.lengths, settings.batch_size, settings.seed, epoch)
        with _progress(batches, f"{desc} epoch {epoch}/{settings.epochs}", quiet) as bar:
            epoch_record = _run_epoch(model, train_set, bar, optimizer, scheduler, loss_fn, settings, device)
        epoch_record = {"epoch": epoch, **epoch_record}
        new_best = _close_epoch(model, heldout, settings, device, record, epoch_record)
        best_weights = best_weights if new_best is None else new_best
        improved = new_best is not None and epoch_record["heldout_accuracy"] is not None
        _log_epoch(desc, epoch_record, settings.epochs, improved, record["stopped"])
        if state_dir is not None:
            _save(state_dir, record, fingerprint, model, optimizer, scheduler, new_best)
        if on_epoch is not None:
            on_epoch(epoch_record)
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.to("cpu").eval()
    return TrainResult(history=record["history"], best_epoch=record["best_epoch"],
                       best_accuracy=record["best_accuracy"], stopped_early=record["stopped"],
                       resumed_from=resumed_from, seconds=round(time.perf_counter() - started, 1), device=str(device),
                       trainable_parameters=trainable)


def _close_epoch(model, heldout, settings: TrainSettings, device, record: dict, epoch_record: dict) -> Optional[dict]:
    """Score the epoch on ``heldout``, update the early-stopping ``record``; the epoch's weights if it improved."""
    epoch = epoch_record["epoch"]
    acc = None
    if heldout is not None:
        logits = predict_logits(model, heldout, settings.eval_batch_size, device)
        acc = accuracy(logits, heldout.fields["labels"].numpy())
    epoch_record["heldout_accuracy"] = acc
    improved = _improved(record, acc, settings)
    weights = None
    if improved:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        record.update(best_epoch=epoch, best_accuracy=acc, bad_epochs=0)
    else:
        record["bad_epochs"] += 1
    record["history"].append(epoch_record)
    record["epoch"] = epoch
    patience_spent = settings.patience is not None and record["bad_epochs"] >= settings.patience
    record["stopped"] = patience_spent and epoch < settings.epochs
    return weights


def _resume(state_dir, fingerprint: str, model, optimizer, scheduler, desc: str) -> tuple[dict, Optional[dict]]:
    """(early-stopping record, best weights so far): from a matching saved state, else a fresh start."""
    record = {"epoch": 0, "history": [], "best_epoch": 0, "best_accuracy": None, "bad_epochs": 0, "stopped": False}
    saved = train_state.load_state(state_dir, fingerprint)
    if saved is None:
        return record, None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    train_state.restore_rng(saved["rng"])
    record = {k: saved[k] for k in (*record, "best_file") if k in saved}
    logger.info("%s: resuming after epoch %d from %s", desc, record["epoch"], state_dir)
    return record, train_state.load_best(state_dir, saved)


def _save(state_dir, record: dict, fingerprint: str, model, optimizer, scheduler, best_weights: Optional[dict]) -> None:
    """Everything a resumed run needs, after an epoch (``best_weights`` only when this epoch is the best)."""
    state = {
        **record,
        "fingerprint": fingerprint,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": train_state.capture_rng(),
    }
    train_state.save_state(state_dir, state, best_weights)
    record["best_file"] = state.get("best_file")


def _log_epoch(desc: str, rec: dict, epochs: int, best: bool, stopping: bool) -> None:
    held = ""
    if rec["heldout_accuracy"] is not None:
        held = f", held-out accuracy {rec['heldout_accuracy']:.4f}{' (best)' if best else ''}"
    logger.info(
        "%s epoch %d/%d: loss %.4f%s, %.0f texts/s, %.0f s%s",
        desc, rec["epoch"], epochs, rec["train_loss"], held, rec["texts_per_s"], rec["seconds"],
        " — no gain for `patience` epochs: stopping early" if stopping else "",
    )
