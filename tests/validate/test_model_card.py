"""The model card's example code runs against a real (tiny) variant folder, with onnxruntime + tokenizers only."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from structbert_lite.validate.model_card import write_model_card

METRICS = {"accuracy": 0.91, "accuracy_drop": 0.2, "agreement": 0.995, "max_abs_logit_diff": 0.01, "speedup": 2.1,
           "size_bytes": 12 * 1024 * 1024, "latency_ms": {"batch": 1, "seq_len": 32, "p50": 3.2, "p95": 4.0, "p99": 5.0},
           "peak_rss_mb": 150.0}
GATE = {"passed": True, "checks": [{"name": "min_agreement", "value": 0.995, "limit": 0.99, "passed": True}]}


def extract_python(readme: str) -> str:
    (code,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    return code


@pytest.mark.parametrize("tokenizer_file", ["tokenizer.json", "vocab.txt"])
def test_model_card_example_runs(tiny_variant, tokenizer_file):
    if tokenizer_file == "vocab.txt":
        (tiny_variant / "tokenizer.json").unlink()  # older checkpoints ship only vocab.txt
    path = write_model_card(tiny_variant, "tiny", "fp32", METRICS, GATE, {"id": "demo", "revision": "abc"}, 32,
                            display_path="artifacts/tiny/fp32")
    readme = path.read_text(encoding="utf-8")
    assert "# tiny — fp32" in readme and "| label agreement with PyTorch FP32 | 0.9950 |" in readme
    assert "✓ `min_agreement`" in readme and "demo @ abc" in readme
    code = extract_python(readme)
    assert 15 <= len(code.strip().splitlines()) <= 30
    assert 'folder = "artifacts/tiny/fp32"' in code
    code = code.replace('folder = "artifacts/tiny/fp32"', f'folder = "{tiny_variant}"')
    # A fresh interpreter, with torch and transformers made unimportable: the example needs neither.
    guard = "import sys\nsys.modules['torch'] = None\nsys.modules['transformers'] = None\n"
    out = subprocess.run([sys.executable, "-c", guard + code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[1] in ("负面", "正面") for line in lines)
