"""Synthetic labelled reviews for the train tests: a sentiment word in neutral filler, one character per token."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE_WORDS = ["好", "棒", "喜欢", "满意", "推荐"]
NEGATIVE_WORDS = ["差", "烂", "讨厌", "失望", "垃圾"]
FILLER = "这家店的东西质量服务快递包装价格一般还可以我们买了次天"
VOCAB = SPECIAL_TOKENS + sorted(set("".join(POSITIVE_WORDS + NEGATIVE_WORDS) + FILLER))


def write_vocab(path: Path) -> Path:
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return path


def make_reviews(per_class: int, seed: int = 0, positive: str = "正面",
                 negative: str = "负面") -> list[tuple[str, str]]:
    """``per_class`` distinct texts of each class, labelled ``positive``/``negative``, shuffled with ``seed``."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for label, words in ((positive, POSITIVE_WORDS), (negative, NEGATIVE_WORDS)):
        made = 0
        while made < per_class:
            filler = "".join(rng.choice(FILLER) for _ in range(rng.randint(3, 12)))
            cut = rng.randint(0, len(filler))
            text = filler[:cut] + rng.choice(words) + filler[cut:]
            if text not in seen:
                seen.add(text)
                rows.append((text, label))
                made += 1
    rng.shuffle(rows)
    return rows


def write_table(path: Path, rows, text_column: str = "text", label_column: str = "label") -> Path:
    """``rows`` ((text, label) pairs) as CSV, TSV, JSONL or Parquet, chosen by ``path``'s suffix."""
    path = Path(path)
    records = [{text_column: text, label_column: label} for text, label in rows]
    if path.suffix in (".csv", ".tsv"):
        with open(path, "w", encoding="utf-8", newline="") as fh:
            delimiter = "\t" if path.suffix == ".tsv" else ","
            writer = csv.DictWriter(fh, fieldnames=[text_column, label_column], delimiter=delimiter)
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(records).to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_checkpoint(folder: Path, layout: str = "transformers", seed: int = 0) -> Path:
    """A tiny ModelScope-layout checkpoint over `VOCAB` (tests/builders.py's model)."""
    from structbert_lite.convert.checkpoint import save_checkpoint
    from tests.builders import tiny_model

    return save_checkpoint(tiny_model(seed=seed, vocab_size=len(VOCAB)), VOCAB, folder, layout=layout)


def encoded(rows, vocab_path: Path, max_length: int = 32, label_ids=None):
    """An `EncodedSet` of ``rows`` with a ``labels`` field (正面 -> 1, 负面 -> 0 unless ``label_ids``)."""
    from structbert_lite.train.batching import encode_set, load_training_tokenizer

    label_ids = label_ids or {"负面": 0, "正面": 1}
    tokenizer = load_training_tokenizer(vocab_path, max_length)
    return encode_set(tokenizer, [t for t, _ in rows], labels=[label_ids[y] for _, y in rows])
