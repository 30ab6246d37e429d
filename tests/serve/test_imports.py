"""The serving process never imports torch, transformers or the converter (DESIGN.md: serve/ must not)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from serve_support import LiveServer

from tests.builders import imported_modules

SERVE_DIR = Path(__file__).resolve().parents[2] / "serve"
FORBIDDEN = ("torch", "transformers", "optimum", "modelscope", "structbert_lite.convert", "structbert_lite.quantize")

PROBE = """
import json, sys
from fastapi.testclient import TestClient
from structbert_lite.serve import server
from structbert_lite.serve.app import create_app
with TestClient(create_app(sys.argv[1])) as client:
    answer = client.post("/predict", json={"text": "非常喜欢"}).json()
print(json.dumps({"answer": answer, "modules": sorted(sys.modules)}))
"""


def test_serving_loads_no_torch_transformers_or_converter(tiny_artifact):
    result = subprocess.run([sys.executable, "-c", PROBE, str(tiny_artifact)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["answer"]["label"] in ("Positive", "Negative")
    loaded = [m for m in report["modules"] if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == [], f"the serving process imported {loaded}"


def test_serve_sources_import_only_allowed_packages():
    allowed = {"fastapi", "starlette", "uvicorn", "h11", "pydantic", "numpy", "onnxruntime", "tokenizers",
               "structbert_lite"}
    for path in SERVE_DIR.glob("*.py"):
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                continue
            assert top in allowed, f"{path.name} imports {name}"
            assert not name.startswith(("structbert_lite.convert", "structbert_lite.quantize")), (
                f"{path.name} imports {name}")


def test_structbert_lite_serve_command_runs_without_torch(tiny_artifact, tmp_path):
    """The real entry point, `structbert-lite serve`, as a process: no libtorch mapped, answers, logs, exits 0."""
    server = LiveServer(tiny_artifact, tmp_path / "server.log", entry=("-m", "structbert_lite.cli", "serve"))
    try:
        server.wait_ready()
        libraries = server.mapped_libraries()
        assert any("onnxruntime" in name for name in libraries), libraries
        assert not [name for name in libraries if "torch" in name], libraries
        assert httpx.post(server.url + "/predict", json={"text": "非常喜欢"}).status_code == 200
    finally:
        code = server.stop()
    log = server.log()
    assert code == 0, log
    assert "POST /predict 200" in log and "shut down cleanly" in log, log
