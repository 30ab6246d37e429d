"""Tokenizer files for a variant folder, built from a checkpoint's ``vocab.txt``.

We ship ``tokenizer.json`` (the fast `tokenizers` pipeline: BERT normalizer with Chinese-character
splitting, WordPiece) so serving needs neither transformers nor a Python tokenizer, plus ``vocab.txt``
and ``tokenizer_config.json`` so transformers/optimum load the folder too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from structbert_lite.errors import CheckpointError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_tokenizer_files(vocab_path: Path, out_dir: Path, max_length: int) -> list[str]:
    """Write tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json into ``out_dir``."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.models import WordPiece

    vocab_path = Path(vocab_path)
    if not vocab_path.is_file():
        raise CheckpointError(f"{vocab_path.parent} has no vocab.txt: the tokenizer cannot be built")
    tokens = vocab_path.read_text(encoding="utf-8").splitlines()
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise CheckpointError(f"{vocab_path} lacks the special tokens {missing}: is it a BERT vocabulary?")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if vocab_path.resolve() != (out_dir / "vocab.txt").resolve():
        shutil.copyfile(vocab_path, out_dir / "vocab.txt")
    tokenizer = BertWordPieceTokenizer(
        WordPiece.read_file(str(out_dir / "vocab.txt")), lowercase=True, handle_chinese_chars=True
    )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
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
