"""`structbert-lite finetune`: adapt a checkpoint to your own labelled reviews, then convert it like any other.

    source (--model) ─► strict load ─► data (--train, --eval or a held-out split) ─► refusals
        ─► held-out metrics before ─► train (shared trainer, resumable) ─► metrics after
        ─► OUT/ in ModelScope layout, written in a staging folder and renamed into place

``OUT`` holds config.json, configuration.json, pytorch_model.bin, vocab.txt, ``heldout.jsonl`` (the held-out
set, labels named as the checkpoint names them, so ``run --model OUT`` evaluates on it by default),
``training-curve.png`` and ``training.json`` (data hashes, settings, curve, metrics before/after, time).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from structbert_lite.errors import StructbertLiteError
from structbert_lite.train.data import LabelledSet, check_trainable, drop_overlap, read_labelled, split_heldout
from structbert_lite.train.settings import FinetuneSettings, load_finetune_settings, train_settings

logger = logging.getLogger(__name__)

TRAINING_NAME = "training.json"
HELDOUT_NAME = "heldout.jsonl"
TRAINING_FORMAT = "structbert-lite finetune 1"
DEMO_CHECKPOINT = Path("artifacts/demo/checkpoint")  # where `make demo` keeps it (what `--model demo` means)


class OutputError(StructbertLiteError):
    """The output folder cannot be used (it would overwrite something that is not a fine-tuned checkpoint)."""


@dataclasses.dataclass
class FinetuneOptions:
    """The command line of `structbert-lite finetune`."""

    model: str
    train: str
    out: Path
    eval: Optional[str] = None
    config: Optional[str] = None
    text_column: Optional[str] = None
    label_column: Optional[str] = None
    quiet: bool = False


@dataclasses.dataclass
class FinetuneResult:
    out_dir: Path
    info: dict[str, Any]  # what training.json holds


def resolve_checkpoint(spec: str) -> tuple[Path, dict]:
    """(local ModelScope-layout folder, source record) for anything ``--model`` accepts.

    ``demo`` is the checkpoint `make demo` keeps in ``artifacts/demo/checkpoint``; it is not trained here (a
    second writer of that shared folder would race the pipeline's).
    """
    from structbert_lite.convert.sources import resolve_source
    from structbert_lite.errors import SourceError

    source = resolve_source(spec)
    if source.kind == "demo":
        if not (DEMO_CHECKPOINT / "config.json").is_file():
            raise SourceError(
                f"--model demo means the checkpoint `make demo` trains into {DEMO_CHECKPOINT}, and there is none yet: "
                "run `make demo` first, or pass --model DIR"
            )
        return DEMO_CHECKPOINT, {"spec": spec, "kind": "demo", "id": "demo", "path": str(DEMO_CHECKPOINT.resolve())}
    record = {"spec": spec, "kind": source.kind, "id": source.id, "revision": source.revision, "path": str(source.path)}
    return source.path, record


def check_out_dir(out: Path, source_dir: Optional[Path] = None) -> None:
    """Refuse an ``--out`` that is the source, or an existing folder that is not a fine-tuned checkpoint."""
    out = Path(out)
    if source_dir is not None and out.resolve() == Path(source_dir).resolve():
        raise OutputError(f"--out {out} is the source checkpoint; write the fine-tuned model to a new folder")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_finetune_output(out))):
        raise OutputError(
            f"--out {out} exists and is not a structbert-lite fine-tuned checkpoint; choose a new folder "
            "(an earlier finetune output is replaced, anything else is left alone)"
        )


def _is_finetune_output(folder: Path) -> bool:
    try:
        return json.loads((folder / TRAINING_NAME).read_text(encoding="utf-8")).get("format") == TRAINING_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def prepare_data(opts: FinetuneOptions, settings: FinetuneSettings, id2label) -> tuple[LabelledSet, LabelledSet, dict]:
    """(train, held-out, record) after reading, de-duplication, the split or overlap check, and the refusals."""
    text_col, label_col = settings.text_column, settings.label_column
    train = read_labelled(opts.train, text_col, label_col, id2label, what="train")
    record: dict[str, Any] = {"train_file": train.summary(id2label)}
    if opts.eval:
        heldout = read_labelled(opts.eval, text_col, label_col, id2label, what="eval", dedupe=False)
        train, overlap = drop_overlap(train, heldout, settings.max_overlap_share)
        record.update(heldout_from="eval", overlap_dropped=overlap)
    else:
        train, heldout = split_heldout(train, settings.heldout_share, settings.seed)
        record.update(heldout_from="train", heldout_share=settings.heldout_share)
    check_trainable(train, id2label, settings.min_rows_per_class)
    record.update(train=train.summary(id2label), heldout=heldout.summary(id2label))
    return train, heldout, record


def measure(model, data, id2label, batch_size: int) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1 of ``model`` on an encoded set with labels."""
    from structbert_lite.constants import english_label
    from structbert_lite.train.trainer import predict_logits
    from structbert_lite.validate.accuracy import classification_metrics

    logits = predict_logits(model, data, batch_size)
    names = [english_label(id2label[i]) for i in range(len(id2label))]
    return classification_metrics(data.fields["labels"].numpy(), logits, names)


def source_layout(loaded) -> str:
    """Write tensors the way the source named them, so ModelScope's own loader reads the result too."""
    return "modelscope" if any(rule.startswith(("head.", "encoder.")) for rule in loaded.remapped) else "transformers"


def source_configuration(checkpoint_dir: Path) -> Optional[dict]:
    path = Path(checkpoint_dir) / "configuration.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        logger.warning("%s is not valid JSON; writing a minimal configuration.json instead", path)
        return None


def write_labelled_jsonl(path: Path, data: LabelledSet, id2label) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in zip(data.texts, data.labels, strict=True):
            fh.write(json.dumps({"text": text, "label": id2label[label]}, ensure_ascii=False) + "\n")


def finetune(opts: FinetuneOptions) -> FinetuneResult:
    """Fine-tune ``opts.model`` on ``opts.train``; publish the checkpoint into ``opts.out`` atomically."""
    from structbert_lite.artifact import utc_now
    from structbert_lite.convert.checkpoint import load_classifier

    started = time.perf_counter()
    settings = load_finetune_settings(opts.config)
    if opts.text_column:
        settings.text_column = opts.text_column
    if opts.label_column:
        settings.label_column = opts.label_column
    out = Path(opts.out)
    check_out_dir(out)  # before a download or a demo training, not after
    checkpoint_dir, source = resolve_checkpoint(opts.model)
    check_out_dir(out, checkpoint_dir)
    loaded = load_classifier(checkpoint_dir)  # strict: a re-initialised tensor is refused, never trained
    source["file_hashes"] = loaded.file_hashes
    train_data, heldout_data, data_record = prepare_data(opts, settings, loaded.id2label)
    state_dir = out.parent / f".{out.name}.train-state"
    info = {"format": TRAINING_FORMAT, "created_at": utc_now(), "source": source, "data": data_record}
    info.update(train_and_measure(loaded, checkpoint_dir, train_data, heldout_data, settings, state_dir, opts.quiet))
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    write_output(out, loaded, checkpoint_dir, heldout_data, info, Path(opts.train).name)
    from structbert_lite.train.state import clear_state

    clear_state(state_dir)
    return FinetuneResult(out, info)


def train_and_measure(
    loaded, checkpoint_dir: Path, train_data, heldout_data, settings, state_dir: Path, quiet: bool
) -> dict:
    """Held-out metrics before, training (resumable through ``state_dir``), metrics after: training.json's part."""
    import torch

    from structbert_lite.train.batching import encode_set, load_training_tokenizer
    from structbert_lite.train.trainer import train

    torch.set_num_threads(settings.threads)
    tokenizer = load_training_tokenizer(checkpoint_dir / "vocab.txt", settings.max_length)
    train_set = encode_set(tokenizer, train_data.texts, labels=train_data.labels)
    heldout_set = encode_set(tokenizer, heldout_data.texts, labels=heldout_data.labels)
    logger.info("fine-tuning on %d texts, %d held out", len(train_set), len(heldout_set))
    before = measure(loaded.model, heldout_set, loaded.id2label, settings.eval_batch_size)
    result = train(
        loaded.model,
        train_set,
        train_settings(settings),
        heldout=heldout_set,
        state_dir=state_dir,
        fingerprint_extra=json.dumps(loaded.file_hashes, sort_keys=True),
        desc="finetune",
        quiet=quiet,
    )
    after = measure(loaded.model, heldout_set, loaded.id2label, settings.eval_batch_size)
    return {
        "settings": settings.model_dump(mode="json"),
        "device": result.device,
        "threads": settings.threads if result.device == "cpu" else None,
        "trainable_parameters": result.trainable_parameters,
        "curve": result.history,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_after_epoch": result.resumed_from,
        "metrics": {"before": before, "after": after},
        "train_seconds": result.seconds,
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
    }


def write_output(out: Path, loaded, checkpoint_dir: Path, heldout_data, info: dict, train_name: str) -> None:
    """The checkpoint, heldout.jsonl, the curve and training.json, staged beside ``out`` and renamed into place."""
    from structbert_lite.artifact import publish_atomically, staging_dir, write_json
    from structbert_lite.convert.checkpoint import save_checkpoint
    from structbert_lite.train.curves import CURVE_NAME, plot_training_curve

    with staging_dir(out) as tmp:
        save_checkpoint(
            loaded.model,
            checkpoint_dir / "vocab.txt",
            tmp,
            layout=source_layout(loaded),
            configuration=source_configuration(checkpoint_dir),
        )
        write_labelled_jsonl(tmp / HELDOUT_NAME, heldout_data, loaded.id2label)
        plot_training_curve(info["curve"], tmp / CURVE_NAME, f"fine-tuning on {train_name}", info["best_epoch"])
        write_json(tmp / TRAINING_NAME, info)
        publish_atomically(tmp, out)


def _version(package: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def summarize(result: FinetuneResult) -> str:
    """The lines the CLI prints: data, time, accuracy before/after overall and per class, where things are."""
    info = result.info
    data, before, after = info["data"], info["metrics"]["before"], info["metrics"]["after"]
    where = "the eval set" if data["heldout_from"] == "eval" else f"a held-out {data['heldout_share']:.0%} of --train"
    epochs = len(info["curve"])
    threads = f" ({info['threads']} threads)" if info["threads"] else ""
    if info["resumed_after_epoch"]:
        threads += f"; resumed after epoch {info['resumed_after_epoch']} of a killed run"
    lines = [
        f"Fine-tuned on {data['train']['rows']} texts for {epochs} epoch(s) (best: {info['best_epoch']}"
        f"{', stopped early' if info['stopped_early'] else ''}) in {info['train_seconds']:.0f} s on "
        f"{info['device']}{threads}.",
        f"Accuracy on {where} ({data['heldout']['rows']} texts): {before['accuracy']:.2%} -> {after['accuracy']:.2%} "
        f"({100 * (after['accuracy'] - before['accuracy']):+.2f} points); "
        f"macro F1 {before['macro_f1']:.3f} -> {after['macro_f1']:.3f}",
    ]
    for name, b in before["per_class"].items():
        a = after["per_class"][name]
        lines.append(
            f"  {name:<9} recall {b['recall']:.2%} -> {a['recall']:.2%}, precision {b['precision']:.2%} -> "
            f"{a['precision']:.2%} ({a['support']} texts)"
        )
    lines.append(f"Checkpoint: {result.out_dir} (training.json, training-curve.png, heldout.jsonl)")
    lines.append(
        f"Convert, gate and publish it: structbert-lite run --config CONFIG --model {result.out_dir} [--eval FILE]")
    return "\n".join(lines)
