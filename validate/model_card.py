"""The README.md model card written into every published variant folder.

It carries the variant's metrics and gate verdict and a short example that loads the folder with
onnxruntime + tokenizers alone (no torch, no transformers); the tests execute that example.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

MB = 1024 * 1024
EXAMPLE_TEXTS = ["这家餐厅的菜很好吃，服务也很热情", "质量太差了，再也不会买"]

_TOKENIZER_JSON = """tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")"""
_TOKENIZER_VOCAB = """tokenizer = BertWordPieceTokenizer(f"{folder}/vocab.txt", lowercase=True)"""

EXAMPLE_TEMPLATE = '''import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

folder = "{display_path}"  # this folder
{tokenizer_line}
tokenizer.enable_truncation(max_length={max_length})
tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")
session = ort.InferenceSession(f"{{folder}}/model.onnx", providers=["CPUExecutionProvider"])
id2label = json.load(open(f"{{folder}}/config.json", encoding="utf-8"))["id2label"]  # 0: 负面, 1: 正面

texts = {texts}
encodings = tokenizer.encode_batch(texts)  # dynamic padding to the longest text
feed = {{
    "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),  # (batch, seq)
    "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
}}
wanted = {{i.name for i in session.get_inputs()}}
logits = session.run(["logits"], {{k: v for k, v in feed.items() if k in wanted}})[0]  # (batch, 2)
probs = np.exp(logits - logits.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
for text, p in zip(texts, probs):
    print(text, id2label[str(int(p.argmax()))], round(float(p.max()), 3))
'''


def example_code(folder: Path, display_path: str, max_length: int) -> str:
    """The loading example for ``folder`` (tokenizer.json if present, else vocab.txt)."""
    uses_json = (Path(folder) / "tokenizer.json").is_file()
    return EXAMPLE_TEMPLATE.format(
        display_path=display_path,
        tokenizer_line=(_TOKENIZER_JSON if uses_json else _TOKENIZER_VOCAB),
        max_length=max_length,
        texts=json.dumps(EXAMPLE_TEXTS, ensure_ascii=False),
    )


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _mb(size_bytes: Optional[int]) -> Optional[float]:
    return None if size_bytes is None else size_bytes / MB


def _source_line(source: Any) -> str:
    if isinstance(source, dict):
        parts = [str(source.get(k)) for k in ("id", "revision") if source.get(k)]
        return " @ ".join(parts) or json.dumps(source, ensure_ascii=False)
    return str(source)


def render_model_card(
    folder: Path,
    name: str,
    variant: str,
    metrics: dict[str, Any],
    gate: dict[str, Any],
    source: Any,
    max_length: int,
    display_path: Optional[str] = None,
    baseline_metrics: Optional[dict[str, Any]] = None,
) -> str:
    folder = Path(folder)
    display_path = display_path or folder.name
    latency = metrics.get("latency_ms") or {}
    point = f"batch {latency.get('batch', '?')} × {latency.get('seq_len', '?')} tokens"
    base = baseline_metrics or {}
    rows = [
        ("accuracy", _fmt(metrics.get("accuracy"), ".4f"), _fmt(base.get("accuracy"), ".4f")),
        ("accuracy drop vs PyTorch FP32 (points)", _fmt(metrics.get("accuracy_drop"), "+.2f"), "—"),
        ("label agreement with PyTorch FP32", _fmt(metrics.get("agreement"), ".4f"), "—"),
        ("max abs logit difference", _fmt(metrics.get("max_abs_logit_diff"), ".4g"), "—"),
        (
            f"p50 latency, {point} (ms)",
            _fmt(latency.get("p50"), ".2f"),
            _fmt((base.get("latency_ms") or {}).get("p50"), ".2f"),
        ),
        ("speedup vs PyTorch FP32", _fmt(metrics.get("speedup"), ".2f"), "1.00"),
        ("model size (MB)", _fmt(_mb(metrics.get("size_bytes")), ".1f"), _fmt(_mb(base.get("size_bytes")), ".1f")),
        ("peak RSS of a fresh process (MB)", _fmt(metrics.get("peak_rss_mb"), ".0f"), _fmt(base.get("peak_rss_mb"), ".0f")),
    ]
    checks = gate.get("checks") or []
    gate_lines = [
        f"- {'✓' if c['passed'] else '✗'} `{c['name']}`: {_fmt(c['value'], '.4g')} (limit {c['limit']})" for c in checks
    ] or ["- (no gate configured for this variant)"]
    lines = [
        f"# {name} — {variant}",
        "",
        "Chinese sentiment classifier (StructBERT architecture, labels 0 = 负面 Negative, 1 = 正面 Positive) "
        f"as an ONNX model for CPU, variant **{variant}**, made by structbert-lite.",
        "",
        f"- source: `{_source_line(source)}`",
        f"- truncation length: {max_length} tokens",
        "- `manifest.json` lists the sha256 of every file, the source, the resolved config and the versions; "
        "check the folder with `structbert-lite verify <folder>`.",
        "",
        "## Metrics (measured against the PyTorch FP32 baseline in the same run)",
        "",
        f"| metric | {variant} | PyTorch FP32 |",
        "| --- | --- | --- |",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"Gate: {'passed' if gate.get('passed') else 'FAILED'}",
        "",
        *gate_lines,
        "",
        "## Use it with onnxruntime + tokenizers only",
        "",
        "```python",
        example_code(folder, display_path, max_length).rstrip(),
        "```",
        "",
        "It also loads with `optimum.onnxruntime.ORTModelForSequenceClassification.from_pretrained(folder)`.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    folder: Path,
    name: str,
    variant: str,
    metrics: dict[str, Any],
    gate: dict[str, Any],
    source: Any,
    max_length: int,
    display_path: Optional[str] = None,
    baseline_metrics: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``folder/README.md``; ``display_path`` is the path the example uses (default: the folder name)."""
    path = Path(folder) / "README.md"
    text = render_model_card(folder, name, variant, metrics, gate, source, max_length, display_path, baseline_metrics)
    path.write_text(text, encoding="utf-8")
    return path
