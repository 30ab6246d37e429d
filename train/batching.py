"""Tokenized training sets and their batches: length-bucketed, seeded per epoch, padded to the longest in the batch.

The order of epoch ``e`` depends only on ``(seed, e)``, so a run resumed at epoch ``e`` sees exactly the batches
an uninterrupted run would have seen, with no RNG state to carry for it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from pathlib import Path
from typing import Sequence

BUCKET_BATCHES = 50  # texts are sorted by length within windows of this many batches: little padding, still shuffled


@dataclasses.dataclass
class EncodedSet:
    """Token ids per text (truncated, unpadded) and per-row tensors (``labels``, ``teacher_logits``, ...)."""

    ids: list[list[int]]
    fields: dict  # name -> torch.Tensor whose first dimension is the row
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> list[int]:
        return [len(row) for row in self.ids]


def load_training_tokenizer(vocab_path: Path, max_length: int):
    """The exact tokenizer the published variants ship (tokenizer.json from ``vocab.txt``), unpadded."""
    from structbert_lite.convert.tokenizer_files import write_tokenizer_files
    from structbert_lite.runtime import load_tokenizer

    with tempfile.TemporaryDirectory(prefix="structbert-lite-tok-") as tmp:
        write_tokenizer_files(Path(vocab_path), Path(tmp), max_length)
        tokenizer = load_tokenizer(Path(tmp), max_length)
    tokenizer.no_padding()
    return tokenizer


def encode_set(tokenizer, texts: Sequence[str], **fields) -> EncodedSet:
    """Tokenize ``texts``; ``fields`` are per-row values (lists, arrays or tensors) kept as tensors."""
    import torch

    ids = [encoding.ids for encoding in tokenizer.encode_batch(list(texts))]
    tensors = {}
    for name, values in fields.items():
        tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
        if tensor.shape[0] != len(ids):
            raise ValueError(f"field {name!r} has {tensor.shape[0]} rows for {len(ids)} texts")
        tensors[name] = tensor
    pad_id = tokenizer.token_to_id("[PAD]")
    return EncodedSet(ids, tensors, 0 if pad_id is None else pad_id)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices per batch for ``epoch``: shuffled, bucketed by length in windows, batches shuffled again."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def count_batches(rows: int, batch_size: int) -> int:
    """How many batches `epoch_batches` makes (the same every epoch)."""
    window = batch_size * BUCKET_BATCHES
    full, rest = divmod(rows, window)
    return full * BUCKET_BATCHES + math.ceil(rest / batch_size)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices per batch for scoring: sorted by length, so padding is minimal."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(data: EncodedSet, rows: Sequence[int], device="cpu") -> dict:
    """``input_ids``/``attention_mask`` padded to the longest row, plus every field of ``data`` for ``rows``."""
    import torch

    width = max(len(data.ids[i]) for i in rows)
    input_ids = torch.full((len(rows), width), data.pad_id, dtype=torch.long)  # (batch, seq)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (batch, seq)
    for row, i in enumerate(rows):
        n = len(data.ids[i])
        input_ids[row, :n] = torch.tensor(data.ids[i], dtype=torch.long)
        attention_mask[row, :n] = 1
    index = torch.tensor(list(rows), dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    batch.update({name: tensor.index_select(0, index) for name, tensor in data.fields.items()})
    return {name: tensor.to(device) for name, tensor in batch.items()}
