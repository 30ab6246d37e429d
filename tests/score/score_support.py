"""Helpers of the score tests: tiny variant folders (fp32 and dynamic int8), corpora, and the CLI in a process.

A module of its own, not conftest.py (several rooms have one). The variants are made by the toolkit's own
exporter (tests/builders.py) and carry a manifest, as a published folder does: `score` refuses folders
that do not verify.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.builders import TINY_VOCAB, export_variant, tiny_model

CHARS = [t for t in TINY_VOCAB if len(t) == 1]


def build_variant(folder: Path, int8: bool = False, seed: int = 3) -> Path:
    """A tiny 2-layer BERT variant folder with README and manifest; ``int8``: dynamic int8 (not batch-invariant)."""
    from structbert_lite.artifact import write_manifest

    folder = Path(folder)
    fp32 = folder.with_name(folder.name + "-fp32-src") if int8 else folder
    export_variant(tiny_model(seed=seed), fp32, TINY_VOCAB)
    fields = {"name": "tiny", "variant": "fp32"}
    if int8:
        from onnxruntime.quantization import quantize_dynamic

        folder.mkdir(parents=True)
        for item in fp32.iterdir():
            if item.name != "model.onnx":
                shutil.copyfile(item, folder / item.name)
        quantize_dynamic(str(fp32 / "model.onnx"), str(folder / "model.onnx"))
        shutil.rmtree(fp32)
        fields = {"name": "tiny", "variant": "int8-dynamic",
                  "quantization": {"tool": "onnxruntime.quantization.quantize_dynamic"}}
    (folder / "README.md").write_text("# tiny\n\nA random 2-layer BERT for the score tests.\n", encoding="utf-8")
    write_manifest(folder, fields)
    return folder


def make_texts(count: int, seed: int = 0, shortest: int = 1, longest: int = 40) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(shortest, longest))) for _ in range(count)]


BAD_VALUES = {  # value in the text column -> the error `score` must write
    "": "empty text",
    "   ": "text has no visible characters",
    "\u200b\ufeff\u2060": "text has no visible characters",
    None: "missing text",
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")  # ASCII escapes: a lone surrogate stays a \\ud800 escape
    return path


def write_jsonl_shards(folder: Path, texts: list, shards: int, start_id: int = 0) -> list[Path]:
    """``texts`` (any JSON values) split over ``shards`` JSONL files named in order; rows carry an ``id``."""
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(texts) // shards)
    paths = []
    for n in range(shards):
        rows = [{"id": start_id + i, "text": t} for i, t in enumerate(texts[n * per:(n + 1) * per], start=n * per)]
        paths.append(write_jsonl(folder / f"shard-{n:03d}.jsonl", rows))
    return paths


def score_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "structbert_lite.cli", "score", "--quiet", *args]


def run_score(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run(score_command(*args), capture_output=True, text=True, timeout=timeout)


def read_output(path: Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)


def assert_same_results(actual: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-6) -> None:
    """Same rows in the same order, same labels and errors, probabilities within float noise."""
    assert len(actual) == len(expected)
    assert list(actual.columns) == list(expected.columns)
    assert [str(i) for i in actual["id"]] == [str(i) for i in expected["id"]]
    assert actual["label"].fillna("").tolist() == expected["label"].fillna("").tolist()
    assert actual["error"].fillna("").tolist() == expected["error"].fillna("").tolist()
    for column in [c for c in actual.columns if c.startswith("prob_")] + ["score"]:
        a = pd.to_numeric(actual[column].replace("", None)).to_numpy(dtype=float)  # CSV: "" is a missing value
        e = pd.to_numeric(expected[column].replace("", None)).to_numpy(dtype=float)
        assert ((abs(a - e) <= atol) | (pd.isna(a) & pd.isna(e))).all(), column
