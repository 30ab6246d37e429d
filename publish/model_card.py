"""The README.md model card of every published variant: Hugging Face Hub metadata, metrics, a working example.

The YAML front matter (``library_name``, ``pipeline_tag``, ``language``, ``license``, ``base_model``, ``tags``,
``model-index`` with the gate's metrics) parses with ``huggingface_hub.ModelCard.load``. The example takes the
folder as its argument and says which file is missing instead of a bare "No such file or directory"; the tests
run it from another working directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import EvalResult, ModelCardData

from structbert_lite import markdown as md
from structbert_lite.constants import MB, MODELSCOPE_LABELS, NEGATIVE, POSITIVE

EXAMPLE_TEXTS = ["这家餐厅的菜很好吃，服务也很热情", "质量太差了，再也不会买"]
HUB_SOURCES = ("modelscope", "huggingface")

ONNX_EXAMPLE = '''import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")  # this folder: python example.py path/to/{variant}
for name in ("model.onnx", "tokenizer.json", "config.json"):
    if not (folder / name).is_file():
        sys.exit(f"{{folder / name}} not found: pass this model's folder as the first argument")
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
tokenizer.enable_truncation(max_length={max_length})
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
id2label = json.loads((folder / "config.json").read_text(encoding="utf-8"))["id2label"]

texts = {texts}
{batching}
'''

OPENVINO_EXAMPLE = '''import json
import sys
from pathlib import Path

import numpy as np
import openvino as ov
from tokenizers import Tokenizer

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")  # this folder: python example.py path/to/{variant}
for name in ("openvino_model.xml", "openvino_model.bin", "tokenizer.json", "config.json"):
    if not (folder / name).is_file():
        sys.exit(f"{{folder / name}} not found: pass this model's folder as the first argument")
tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
tokenizer.enable_truncation(max_length={max_length})
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
compiled = ov.Core().compile_model(str(folder / "openvino_model.xml"), "CPU")
id2label = json.loads((folder / "config.json").read_text(encoding="utf-8"))["id2label"]

texts = {texts}
{batching}
'''

CHECKPOINT_EXAMPLE = '''import sys
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, BertTokenizerFast

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")  # this folder: python example.py path/to/{variant}
for name in ("config.json", "vocab.txt"):
    if not (folder / name).is_file():
        sys.exit(f"{{folder / name}} not found: pass this model's folder as the first argument")
tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
model = BertForSequenceClassification.from_pretrained(folder).eval()

texts = {texts}
with torch.inference_mode():
    batch = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="pt")
    probs = model(**batch).logits.softmax(-1)
for text, p in zip(texts, probs):
    print(text, model.config.id2label[int(p.argmax())], round(float(p.max()), 3))
'''

ONE_BATCH = '''def logits_of(batch):
    encodings = tokenizer.encode_batch(batch)  # dynamic padding to the longest text of the batch
    feed = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),  # (batch, seq)
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }
    return RUN(feed)  # (batch, 2)


logits = LOGITS
probs = np.exp(logits - logits.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
for text, p in zip(texts, probs):
    print(text, id2label[str(int(p.argmax()))], round(float(p.max()), 3))'''

USE_WITH = {"checkpoint": "transformers"}
ALSO_LOADS_WITH = {
    "onnxruntime": "optimum.onnxruntime.ORTModelForSequenceClassification",
    "openvino": "optimum.intel.OVModelForSequenceClassification",
}
RUNNERS = {
    "onnxruntime": "session.run([\"logits\"], {i.name: feed[i.name] for i in session.get_inputs()})[0]",
    "openvino": "compiled(feed)[0]",
}


def example_code(engine: str, variant: str, max_length: int, batch_invariant: bool, fmt: str = "onnx") -> str:
    """The loading example: plain onnxruntime (or openvino) + tokenizers, no torch, no transformers; a checkpoint:
    transformers."""
    texts = json.dumps(EXAMPLE_TEXTS, ensure_ascii=False)
    if fmt == "checkpoint":
        return CHECKPOINT_EXAMPLE.format(variant=variant, max_length=max_length, texts=texts)
    # A variant whose answers move with their batch neighbours (dynamic int8) is run one text at a time.
    logits = "np.concatenate([logits_of([t]) for t in texts])" if not batch_invariant else "logits_of(texts)"
    batching = ONE_BATCH.replace("RUN(feed)", RUNNERS[engine]).replace("LOGITS", logits)
    template = OPENVINO_EXAMPLE if engine == "openvino" else ONNX_EXAMPLE
    return template.format(
        variant=variant, max_length=max_length, texts=json.dumps(EXAMPLE_TEXTS, ensure_ascii=False), batching=batching
    )


def _mb(size_bytes: Optional[int]) -> Optional[float]:
    return None if size_bytes is None else size_bytes / MB


def _source_line(source: Any) -> str:
    if isinstance(source, dict):
        parts = [str(source.get(k)) for k in ("id", "revision") if source.get(k)]
        return " @ ".join(parts) or json.dumps(source, ensure_ascii=False)
    return str(source)


def runs_on(meta: dict[str, Any], fmt: str = "onnx") -> str:
    """Which runtimes load the variant, from what it is made of."""
    if fmt == "checkpoint":
        return (
            "PyTorch + transformers (`BertForSequenceClassification`), in ModelScope layout: fine-tune it again with "
            "`structbert-lite finetune --model <folder>`, convert it with `structbert-lite run --model <folder>`"
        )
    if meta.get("engine") == "openvino":
        return "OpenVINO (CPU); `openvino_model.xml/.bin` is OpenVINO IR, not ONNX"
    if "quantize_dynamic" in str((meta.get("quantization") or {}).get("tool", "")):
        return (
            "onnxruntime only: the graph uses onnxruntime's com.microsoft int8 ops (QAttention, "
            "QEmbedLayerNormalization, DynamicQuantizeMatMul), which OpenVINO and other ONNX runtimes reject"
        )
    if meta.get("fuse"):
        return "onnxruntime; OpenVINO 2026.4 also reads its fused ops (Attention, EmbedLayerNormalization)"
    return "any ONNX runtime (standard ONNX ops, opset {})".format(meta.get("onnx_opset", "?"))


# The front matter's keys in the order the cards have always had (ModelCardData's own order differs).
FRONT_MATTER_ORDER = ["library_name", "pipeline_tag", "language", "license", "tags", "base_model"]


def _eval_results(metrics: dict, eval_info: dict) -> Optional[list[EvalResult]]:
    """The gate's accuracy and label agreement as the Hub's ``model-index`` entries (none if not measured)."""
    if metrics.get("accuracy") is None or metrics.get("agreement") is None:
        return None
    task = {"task_type": "text-classification", "task_name": "Sentiment classification",
            "dataset_type": "text-classification", "dataset_name": str(eval_info.get("source") or "eval set")}
    return [
        EvalResult(**task, metric_type="accuracy", metric_name="Accuracy",
                   metric_value=round(float(metrics["accuracy"]), 4)),
        EvalResult(**task, metric_type="agreement", metric_name="Label agreement with PyTorch FP32",
                   metric_value=round(float(metrics["agreement"]), 4)),
    ]


def hub_metadata(
    name: str, variant: str, metrics: dict, source: Any, meta: dict, license_id: str, eval_info: dict, fmt: str = "onnx"
) -> ModelCardData:
    """The card's YAML front matter (Hugging Face Hub model card metadata)."""
    engine = meta.get("engine") or "onnxruntime"
    tags = ["structbert", "bert", "sentiment-analysis", "chinese", "structbert-lite", variant]
    tags += {"checkpoint": ["pytorch"], "openvino": ["openvino"]}.get(fmt, ["onnx"])
    if fmt != "checkpoint" and (meta.get("quantization") or meta.get("openvino")):
        tags.append("int8")
    hub_source = isinstance(source, dict) and source.get("kind") in HUB_SOURCES and source.get("id")
    results = _eval_results(metrics, eval_info)
    return ModelCardData(
        library_name="transformers" if fmt == "checkpoint" else ("openvino" if engine == "openvino" else "onnxruntime"),
        pipeline_tag="text-classification",
        language=["zh"],
        license=license_id,
        tags=tags,
        base_model=str(source["id"]).removeprefix("hf:") if hub_source else None,
        model_name=f"{name}-{variant}" if results else None,
        eval_results=results,
    )


def _metric_rows(metrics: dict, base: dict, speed_verified: bool) -> list[tuple[str, str, str]]:
    latency = metrics.get("latency_ms") or {}
    point = f"batch {latency.get('batch', '?')} × {latency.get('seq_len', '?')} tokens"
    speedup = md.fmt(metrics.get("speedup"), ".2f") if speed_verified else "not verified (machine busy while measured)"
    base_p50 = (base.get("latency_ms") or {}).get("p50")
    return [
        ("accuracy", md.fmt(metrics.get("accuracy"), ".4f"), md.fmt(base.get("accuracy"), ".4f")),
        ("accuracy drop vs PyTorch FP32 (points)", md.fmt(metrics.get("accuracy_drop"), "+.2f"), "—"),
        ("label agreement with PyTorch FP32", md.fmt(metrics.get("agreement"), ".4f"), "—"),
        ("max abs logit difference", md.fmt(metrics.get("max_abs_logit_diff"), ".4g"), "—"),
        (f"p50 latency, {point} (ms)", md.fmt(latency.get("p50"), ".2f"), md.fmt(base_p50, ".2f")),
        ("speedup vs PyTorch FP32", speedup, "1.00"),
        ("model size (MB)", md.fmt(_mb(metrics.get("size_bytes")), ".1f"), md.fmt(_mb(base.get("size_bytes")), ".1f")),
        ("peak RSS of a fresh process (MB)", md.fmt(metrics.get("peak_rss_mb"), ".0f"),
         md.fmt(base.get("peak_rss_mb"), ".0f")),
    ]


def render_model_card(card: dict[str, Any]) -> str:
    """The card text. ``card`` keys: name, variant, metrics, gate, source, max_length, meta, baseline_metrics,
    eval, license, speed_verified, batch_invariance."""
    name, variant, metrics, gate, meta = card["name"], card["variant"], card["metrics"], card["gate"], card["meta"]
    invariance = card.get("batch_invariance") or {}
    batch_invariant = bool(invariance.get("invariant", True))
    engine = meta.get("engine") or "onnxruntime"
    fmt = card.get("format") or "onnx"
    front = hub_metadata(name, variant, metrics, card.get("source"), meta, card["license"], card.get("eval") or {}, fmt)
    gate_lines = [
        f"- {'✓' if c['passed'] else ('?' if c.get('verified') is False else '✗')} `{c['name']}`: "
        f"{md.fmt(c['value'], '.4g')} (limit {c['limit']})"
        f"{' — not verified' if c.get('verified') is False else ''}"
        for c in gate.get("checks") or []
    ] or ["- (no gate configured for this variant)"]
    neg, pos = MODELSCOPE_LABELS[NEGATIVE], MODELSCOPE_LABELS[POSITIVE]
    score_diff = md.fmt(invariance.get("max_abs_score_diff"), ".1e")
    runtime = USE_WITH.get(fmt, "openvino" if engine == "openvino" else "onnxruntime")
    lines = [
        "---", front.to_yaml(original_order=FRONT_MATTER_ORDER), "---", "",
        f"# {name} — {variant}", "",
        f"Chinese sentiment classifier (StructBERT architecture) for CPU, variant **{variant}**, made and gated by "
        "structbert-lite against the PyTorch FP32 baseline in the same run.", "",
        f"- source: `{_source_line(card.get('source'))}`",
        f"- labels: `config.json`, optimum and transformers name them {neg} / {pos}; the REST stub answers "
        "Negative / Positive (the same classes).",
        f"- runs on: {runs_on(meta, fmt)}",
        f"- truncation: {card['max_length']} tokens",
        "- batching: " + ("a text's answer does not depend on the texts it is batched with "
                          f"(max |Δscore| {score_diff} measured)" if batch_invariant else
                          "answers move slightly with batch neighbours and padding (dynamic int8: one activation scale "
                          f"per batch, max |Δscore| {score_diff} measured), so "
                          "structbert-lite runs it one text at a time; do the same"),
        "- `manifest.json` lists the sha256 of every file, the source, the resolved config and the versions; "
        "check the folder with `structbert-lite verify <folder>`.", "",
        f"## Metrics (eval set: {(card.get('eval') or {}).get('source', '?')})", "",
        *md.table(["metric", variant, "PyTorch FP32"],
                        _metric_rows(metrics, card.get("baseline_metrics") or {}, card.get("speed_verified", True))),
        f"Gate: {'passed' if gate.get('passed') else 'FAILED'}", "", *gate_lines, "",
        f"## Use it with {runtime} + tokenizers only", "",
        "Save as `example.py` and run `python example.py path/to/this/folder`:", "",
        "```python", example_code(engine, variant, card["max_length"], batch_invariant, fmt).rstrip(), "```", "",
    ]
    also = ALSO_LOADS_WITH.get("checkpoint" if fmt == "checkpoint" else engine)
    return "\n".join(lines + ([f"It also loads with `{also}.from_pretrained(folder)`.", ""] if also else []))


def write_model_card(folder: Path, card: dict[str, Any]) -> Path:
    """Write ``folder/README.md`` from ``card`` (see `render_model_card`)."""
    path = Path(folder) / "README.md"
    path.write_text(render_model_card(card), encoding="utf-8")
    return path
