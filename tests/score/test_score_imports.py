"""`score` is torch-free: its modules import no torch/transformers/converter, and neither do its processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.builders import imported_modules

SCORE_DIR = Path(__file__).resolve().parents[2] / "score"
FORBIDDEN = ("torch", "transformers", "optimum", "modelscope", "structbert_lite.convert", "structbert_lite.quantize")
ALLOWED = {"numpy", "pandas", "pyarrow", "tqdm", "ray", "onnx", "google", "tritonclient", "psutil", "structbert_lite"}

PROBE = """
import json, sys
from pathlib import Path
from structbert_lite.score.job import ScoreOptions, score_corpus
from structbert_lite.score import local
summary = score_corpus(ScoreOptions(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), workers=1, quiet=True))
local._init_worker(sys.argv[1], 1)  # what a pool worker runs
local._score_shard(["好"], 8)
print(json.dumps({"rows": summary.rows, "modules": sorted(sys.modules)}))
"""


def test_score_sources_import_no_torch():
    for path in SCORE_DIR.glob("*.py"):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in ALLOWED, f"{path.name} imports {name}"
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), f"{path.name} imports {name}"


def test_a_scoring_process_loads_no_torch(fp32_variant, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\n好\n差\n", encoding="utf-8")
    command = [sys.executable, "-c", PROBE, str(fp32_variant), str(source), str(tmp_path / "out.parquet")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == 2
    loaded = [m for m in report["modules"] if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert loaded == [], f"scoring imported {loaded}"
