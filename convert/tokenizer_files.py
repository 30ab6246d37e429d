"""Tokenizer files for a variant folder, built from a checkpoint's ``vocab.txt``.

We ship ``tokenizer.json`` (the fast `tokenizers` pipeline: BERT normalizer with Chinese-character
splitting, WordPiece) so serving needs neither transformers nor a Python tokenizer, plus ``vocab.txt``
and ``tokenizer_config.json`` so transformers/optimum load the folder too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from structbert_lite.constants import SPECIAL_TOKENS
from structbert_lite.errors import CheckpointError


def read_vocab(vocab_path: Path) -> list[str]:
    """The tokens of a BERT ``vocab.txt``, one per line; the line number is the token id.

    Lines are split on ``\n`` only (a trailing ``\r`` is dropped), as `tokenizers` and transformers read
    them: ``str.splitlines`` would also split on U+2028, U+0085 and other characters a vocabulary may hold.
    """
    vocab_path = Path(vocab_path)
    if not vocab_path.is_file():
        raise CheckpointError(f"{vocab_path.parent} has no vocab.txt: the tokenizer cannot be built")
    try:
        text = vocab_path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{vocab_path} is not UTF-8 text (byte {exc.start}): is it a BERT vocabulary?") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens = [line[:-1] if line.endswith("\r") else line for line in lines]
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise CheckpointError(f"{vocab_path} lacks the special tokens {missing}: is it a BERT vocabulary?")
    return tokens


def check_vocab(vocab_path: Path, vocab_size: int, embedding_rows: int | None = None) -> list[str]:
    """The vocabulary, if its length equals the model's ``vocab_size``; otherwise a `CheckpointError` saying which is
    longer. Token id *i* is line *i*: a vocabulary of another length belongs to another model, and a shorter one
    leaves ids without a token while a longer one produces ids the embedding table does not have."""
    tokens = read_vocab(vocab_path)
    rows = f" (and the embedding table has {embedding_rows} rows)" if embedding_rows is not None else ""
    if len(tokens) > vocab_size:
        raise CheckpointError(
            f"{vocab_path} has {len(tokens)} lines but config.json says vocab_size {vocab_size}{rows}: "
            f"the vocabulary is longer than the model's, so tokens {vocab_size}..{len(tokens) - 1} have no embedding; "
            "it belongs to another model"
        )
    if len(tokens) < vocab_size:
        raise CheckpointError(
            f"{vocab_path} has {len(tokens)} lines but config.json says vocab_size {vocab_size}{rows}: "
            "the vocabulary is shorter than the model's (a truncated or different vocab.txt); "
            "use the one the checkpoint was trained with"
        )
    return tokens


def write_tokenizer_files(vocab_path: Path, out_dir: Path, max_length: int) -> list[str]:
    """Write tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json into ``out_dir``."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.models import WordPiece

    vocab_path = Path(vocab_path)
    read_vocab(vocab_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if vocab_path.resolve() != (out_dir / "vocab.txt").resolve():
        shutil.copyfile(vocab_path, out_dir / "vocab.txt")
    tokenizer = BertWordPieceTokenizer(
        WordPiece.read_file(str(out_dir / "vocab.txt")), lowercase=True, handle_chinese_chars=True
    )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    special = {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"
    }
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "tokenize_chinese_chars": True,
        "model_max_length": max_length,
        **special,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
