"""Helpers of the serve tests: a tiny variant folder (random 2-layer BERT, ~100-character vocabulary) and a
live server in a subprocess. A module of its own, not conftest.py: several rooms have a conftest.py, and
`import conftest` would find whichever pytest loaded last.

Built with the toolkit's own exporter (tests may import torch/transformers; the serve package may not);
its layout is the one DESIGN.md gives for a published variant folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.builders import free_port

CHARS = (
    "这部电影太好看了烂完全浪费时间非常喜欢不错差劲推荐服务态度很一般质量还可以东西收到满意失望"
    "的是我们他你们有没也就都和人在上下大小多少好坏快慢贵便宜买卖酒店房间干净价格"
)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LABELS = {0: "负面", 1: "正面"}


def _vocab() -> list[str]:
    seen = []
    for ch in CHARS + "abcdefghijklmnopqrstuvwxyz0123456789.,!?，。！？":
        if ch not in seen:
            seen.append(ch)
    return SPECIAL + seen


def build_tiny_variant(folder: Path) -> Path:
    """A random tiny BERT exported by the toolkit's own exporter, with a README and a manifest."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from structbert_lite.artifact import write_manifest
    from tests.builders import export_variant

    vocab = _vocab()
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        pad_token_id=0, initializer_range=0.5,  # wide init: outputs that differ from text to text
    )
    torch.manual_seed(0)
    export_variant(BertForSequenceClassification(config).eval(), folder, vocab, max_length=512)
    (folder / "README.md").write_text("# tiny\n\nA random 2-layer BERT for the serve tests.\n", encoding="utf-8")
    write_manifest(folder, {"name": "tiny", "variant": "fp32"})
    return folder


# The published int8-dynamic recipe (configs: per-channel symmetric int8 weights, 7-bit range for AVX2/AVX-512).
INT8_SETTINGS = {"op_types": ["MatMul", "Attention", "EmbedLayerNormalization"], "per_channel": True,
                 "reduce_range": True, "weight_type": "int8", "symmetric_weights": True}
DYNAMIC_INT8_TOOL = "onnxruntime.quantization.quantize_dynamic"


def build_int8_variant(folder: Path, work: Path, manifest_extra: dict | None = None) -> Path:
    """The variant `make serve` serves by default, in miniature: a random tiny BERT exported with the toolkit's
    exporter, fused by onnxruntime's BERT optimizer, quantized by the toolkit's `dynamic_int8.quantize_graph`."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import BertConfig, BertForSequenceClassification

    from structbert_lite.artifact import write_manifest
    from structbert_lite.quantize.dynamic_int8 import quantize_graph
    from tests.builders import export_variant

    vocab = _vocab()
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=512, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        pad_token_id=0, initializer_range=0.2,
    )
    torch.manual_seed(1)
    fp32 = export_variant(BertForSequenceClassification(config).eval(), Path(work) / "fp32", vocab, max_length=512)
    fused = optimize_model(str(fp32 / "model.onnx"), model_type="bert", num_heads=2, hidden_size=64, opt_level=1)
    fused.save_model_to_file(str(Path(work) / "fused.onnx"))
    folder = Path(folder)
    folder.mkdir(parents=True)
    quantize_graph(Path(work) / "fused.onnx", folder / "model.onnx", INT8_SETTINGS)
    for companion in fp32.iterdir():
        if companion.name != "model.onnx":
            (folder / companion.name).write_bytes(companion.read_bytes())
    (folder / "README.md").write_text("# tiny int8\n\nA random 2-layer BERT, dynamic int8.\n", encoding="utf-8")
    write_manifest(folder, {"name": "tiny", "variant": "int8-dynamic",
                            "quantization": {**INT8_SETTINGS, "tool": DYNAMIC_INT8_TOOL}, **(manifest_extra or {})})
    return folder


@contextlib.contextmanager
def started_client(folder: Path, **settings):
    """A FastAPI TestClient over ``create_app(folder, ServeSettings(**settings))`` whose model answered its warm-up."""
    from fastapi.testclient import TestClient

    from structbert_lite.serve.app import create_app
    from structbert_lite.serve.settings import ServeSettings

    with TestClient(create_app(folder, ServeSettings(**settings))) as client:
        wait_ready(client)
        yield client


def wait_ready(client, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/health")
        if response.status_code == 200:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"server not ready after {timeout} s: {response.status_code} {response.text}")
        time.sleep(0.05)


class LiveServer:
    """``python -m structbert_lite.serve`` in a subprocess on a loopback port; logs go to a file."""

    def __init__(self, artifact: Path, log_path: Path, *extra: str,
                 entry: tuple[str, ...] = ("-m", "structbert_lite.serve"), port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, *entry, "--artifact", str(artifact), "--host", "127.0.0.1",
             "--port", str(self.port), "--threads", "1", *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )

    def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.TransportError):
                response = httpx.get(self.url + "/health", timeout=2)
                if response.status_code == 200:
                    return response.json()
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.log()}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def mapped_libraries(self) -> set[str]:
        """File names of the shared libraries the server process has loaded."""
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text().splitlines()
        return {Path(line.split()[-1]).name for line in maps if ".so" in line}

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
