"""A published set of a given model shape with random weights, built by the project's own `structbert-lite run`:
what the image's memory figures in docs/deploy.md were measured on when no trained model of that shape was at hand.

    .venv/bin/python -m tests.image.shaped_set --shape base OUT     # 12 x 768 (StructBERT-base), 21,128 tokens
    .venv/bin/python -m tests.image.shaped_set --shape demo OUT     # 2 x 128 (`make demo`'s model)

OUT gets checkpoint/, eval.csv, config.yaml and the set itself in OUT/set/ (fp32, fp32-optimized, int8-dynamic).
Memory and start-up depend on the shape, not on the weights' values; with random weights the int8 step's accuracy
fallback is off (bench/prepare.py does the same) and the eval labels are the model's own answers, so the gates
that speak are the export's parity and the int8 file size. Speed is not what this set is for (--speed-unverified-ok).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from structbert_lite.bench.settings import VOCAB_SIZE

SHAPES = {  # BertConfig fields; base as bench/settings.py, demo as structbert_lite/config.py's demo defaults
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "demo": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}
EVAL_ROWS = 64


def vocabulary(shape: str) -> list[str]:
    """base: BERT-Chinese's size; demo: the demo's own rule (every review character seen often enough)."""
    from structbert_lite.bench.workload import build_vocab
    from structbert_lite.reviews import load_reviews
    from structbert_lite.train.demo_model import build_vocab as review_vocab

    if shape == "base":
        return build_vocab(VOCAB_SIZE)
    return review_vocab([text for text, _ in load_reviews()])


def config(name: str, eval_csv: Path, max_size_mb: float) -> dict:
    parity = {"max_accuracy_drop": 0.1, "min_agreement": 0.999, "max_logit_diff": 0.01}
    return {
        "name": name,
        "model": {"max_length": 128},
        "eval": {"source": str(eval_csv), "min_accuracy": 0.5},
        "variants": [
            {"name": "fp32", "step": "export", "gate": {**parity, "max_logit_diff": 0.001}},
            {"name": "fp32-optimized", "step": "fuse", "parent": "fp32", "gate": parity},
            {"name": "int8-dynamic", "step": "ort-dynamic-int8", "parent": "fp32-optimized",
             "options": {"fallback": {"enabled": False}}, "gate": {"max_size_mb": max_size_mb}},
        ],
        "validate": {"threads": 1, "max_attempts": 1, "speedup_point": [1, 32], "batch_invariance_rows": 8,
                     "latency": {"batch_sizes": [1], "seq_lengths": [32], "warmup": 1, "repeats": 3, "rounds": 1},
                     "throughput_rows": 32},
    }


def build(shape: str, out: Path) -> Path:
    from structbert_lite.bench.prepare import build_random_model
    from structbert_lite.convert.checkpoint import save_checkpoint
    from structbert_lite.reviews import balanced_sample
    from tests.builders import self_labels, write_config, write_eval_csv

    out.mkdir(parents=True, exist_ok=False)
    vocab = vocabulary(shape)
    model = build_random_model(SHAPES[shape], seed=0, vocab_size=len(vocab))
    checkpoint = save_checkpoint(model, vocab, out / "checkpoint", layout="modelscope")
    texts = [text for text, _ in balanced_sample(EVAL_ROWS, seed=0)]
    eval_csv = write_eval_csv(out / "eval.csv", texts, self_labels(checkpoint, texts))
    cfg = write_config(out / "config.yaml", config(f"{shape}-shaped", eval_csv, 130 if shape == "base" else 10))
    command = [str(Path(sys.executable).parent / "structbert-lite"), "run", "--config", cfg, "--model", str(checkpoint),
               "--out", str(out / "set"), "--speed-unverified-ok", "--quiet"]
    subprocess.run(command, check=True)
    return out / "set"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image.shaped_set", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("out", type=Path, help="a folder that does not exist yet")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: name a new folder")
    print(build(args.shape, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
