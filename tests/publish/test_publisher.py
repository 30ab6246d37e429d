"""publish/publisher.py without a pipeline run: a passing variant is moved in with its card and a manifest that
verifies, a failing one stays out and is named with its reason, and the run manifest pins the set."""

from __future__ import annotations

import copy
import json
import shutil

from structbert_lite.artifact import Artifact, content_digest, sha256_file, verify_folder
from structbert_lite.config import parse_config
from structbert_lite.publish.output_set import RUN_MANIFEST, OutputSet
from structbert_lite.publish.publisher import REPORT_JSON, REPORT_MD, publish_run
from structbert_lite.validate.stage import Validation
from tests.validate.test_report import sample_report

CONFIG = {"name": "demo", "model": {"max_length": 64},
          "variants": [{"name": "fp32", "step": "export"},
                       {"name": "int8-dynamic", "step": "ort-dynamic-int8", "parent": "fp32"}]}


def validation_with_one_passing_variant() -> Validation:
    report = sample_report()
    failing = report["variants"][0]
    failing["batch_invariance"] = {"invariant": False, "max_abs_score_diff": 1e-3}
    passing = copy.deepcopy(failing) | {"name": "fp32", "batch_invariance": {"invariant": True}}
    check = {"name": "min_agreement", "value": 1.0, "limit": 0.99, "passed": True}
    passing["gate"] = {"passed": True, "checks": [check]}
    report["variants"] = [passing, failing]
    report["passed"] = False
    return Validation(report, report["variants"], report["baseline"]["metrics"], speed_verified=True)


def test_publish_run_moves_in_what_passed_and_names_what_did_not(variant_folder, tmp_path):
    cfg = parse_config(CONFIG)
    validation = validation_with_one_passing_variant()
    int8 = shutil.copytree(variant_folder, tmp_path / "work" / "int8-dynamic")
    built = {"fp32": Artifact(variant_folder, "fp32", {"engine": "onnxruntime"}),
             "int8-dynamic": Artifact(int8, "int8-dynamic", {"engine": "onnxruntime"})}
    out = tmp_path / "out"
    with OutputSet(out, keep_runs=2) as output:
        published = publish_run(output, validation, built, cfg, "apache-2.0")
    assert published == {"fp32": out / "fp32"} and not (out / "int8-dynamic").exists() and int8.is_dir()
    assert verify_folder(out / "fp32") == []
    manifest = json.loads((out / "fp32" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["variant"] == "fp32" and manifest["license"] == "apache-2.0"
    assert manifest["config"] == cfg.resolved() and manifest["cpu_isa"] == ["avx2"]
    assert (out / "fp32" / "README.md").read_text(encoding="utf-8").startswith("---\n")
    run = json.loads((out / RUN_MANIFEST).read_text(encoding="utf-8"))
    assert run["variants"] == {"fp32": {"manifest_sha256": sha256_file(out / "fp32" / "manifest.json")}}
    assert "min_speedup 1.2 vs 1.5" in run["not_published"]["int8-dynamic"]
    assert run["reports"][REPORT_JSON] == sha256_file(out / REPORT_JSON) and (out / REPORT_MD).is_file()
    assert run["manifest_digest"] == content_digest(run) and not run["passed"]
    report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    assert [(v["name"], v["published"]) for v in report["variants"]] == [("fp32", True), ("int8-dynamic", False)]
