"""The validate stage end to end on tiny models: publish, gate failures, interrupted publishes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from structbert_lite.artifact import Artifact, manifest_digest, read_manifest
from structbert_lite.config import PipelineConfig
from structbert_lite.errors import GateError
from structbert_lite.runtime import OnnxClassifier, encode
from structbert_lite.validate import stage
from structbert_lite.validate.eval_data import load_eval_set
from structbert_lite.validate.verify import verify_command

LOADER = "transformers:BertForSequenceClassification.from_pretrained"
META = {"source": {"id": "tiny-test", "revision": None}, "onnx_opset": 17, "versions": {"exporter": "torchscript"}}
PERMISSIVE = {"max_accuracy_drop": 100.0, "min_agreement": 0.0, "max_logit_diff": 1e6, "max_size_mb": 100.0}


def make_cfg(gate: dict | None = None, memory: bool = False) -> PipelineConfig:
    return PipelineConfig(
        name="tiny",
        model={"max_length": 32},
        eval={"flipped_examples": 5},
        validate={
            "threads": 1,
            "latency": {"batch_sizes": [1], "seq_lengths": [8, 16], "warmup": 1, "repeats": 3, "rounds": 1},
            "throughput_rows": 12,
            "throughput_batch_size": 4,
            "memory": memory,
            "speedup_point": (1, 16),
        },
        gate=gate or {},
    )


@pytest.fixture(scope="session")
def int8_master(tiny_variant_master, tmp_path_factory) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = tmp_path_factory.mktemp("int8") / "int8-dynamic"
    shutil.copytree(tiny_variant_master, folder, ignore=shutil.ignore_patterns("model.onnx"))
    quantize_dynamic(tiny_variant_master / "model.onnx", folder / "model.onnx", weight_type=QuantType.QInt8)
    return folder


@pytest.fixture()
def eval_set(tmp_path, eval_texts):
    texts, labels = eval_texts
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": l}, ensure_ascii=False) + "\n" for t, l in zip(texts, labels)),
                    encoding="utf-8")
    from structbert_lite.config import EvalConfig

    return load_eval_set(str(path), EvalConfig())


@pytest.fixture()
def baseline(tiny_checkpoint):
    return Artifact(tiny_checkpoint, "pytorch-fp32", {})


def variant(folder: Path, name: str, tmp_path: Path) -> Artifact:
    return Artifact(Path(shutil.copytree(folder, tmp_path / "work" / name)), name, dict(META))


def run_stage(baseline, variants, eval_set, cfg, out, model):
    return stage.run(baseline, variants, eval_set, cfg, out, quiet=True, baseline_loader=LOADER, baseline_model=model)


def test_run_publishes_passing_variants(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master, int8_master):
    cfg = make_cfg({"fp32": PERMISSIVE, "int8-dynamic": {**PERMISSIVE, "max_peak_rss_mb": 1e5}}, memory=True)
    variants = [variant(tiny_variant_master, "fp32", tmp_path), variant(int8_master, "int8-dynamic", tmp_path)]
    out = tmp_path / "out"
    result = run_stage(baseline, variants, eval_set, cfg, out, None)  # baseline loaded through LOADER

    assert result.passed and result.failed == [] and set(result.published) == {"fp32", "int8-dynamic"}
    assert sorted(p.name for p in out.iterdir()) == ["fp32", "int8-dynamic", "latency.png", "report.json", "report.md"]
    assert verify_command(out, stream=open(os.devnull, "w")) == 0
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert all(v.path.is_dir() for v in variants)  # the stage copies; it does not consume its inputs

    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["passed"] and report["baseline"]["name"] == "pytorch-fp32"
    assert report["baseline"]["metrics"]["peak_rss_mb"] > 0
    for entry in report["variants"]:
        assert entry["published"] and entry["path"] == str(out / entry["name"])
        assert entry["gate"]["passed"] and {c["name"] for c in entry["gate"]["checks"]} >= set(PERMISSIVE)
        m = entry["metrics"]
        for key in ("accuracy", "agreement", "max_abs_logit_diff", "speedup", "size_bytes", "latency_ms", "peak_rss_mb"):
            assert m[key] is not None, key
        assert set(m["latency_ms"]) == {"batch", "seq_len", "p50", "p95", "p99"}
        assert {(r["batch"], r["seq_len"]) for r in m["latency_grid"]} == {(1, 8), (1, 16)}
    fp32 = report["variants"][0]["metrics"]
    assert fp32["agreement"] == 1.0 and fp32["max_abs_logit_diff"] < 1e-4

    manifest = read_manifest(out / "int8-dynamic")
    assert manifest["source"] == META["source"] and manifest["onnx_opset"] == 17
    assert manifest["versions"]["exporter"] == "torchscript" and manifest["versions"]["onnxruntime"]
    assert manifest["metrics"]["size_bytes"] == report["variants"][1]["metrics"]["size_bytes"]
    assert manifest["gate"]["passed"] and manifest["config"]["name"] == "tiny"
    assert {"model.onnx", "config.json", "tokenizer.json", "README.md"} <= set(manifest["files"])

    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "✓ all variants passed" in markdown and "| int8-dynamic | max_size_mb |" in markdown
    assert "![latency vs sequence length](latency.png)" in markdown
    assert "pytorch-fp32" in result.summary and "✓ pass, published" in result.summary


def test_published_folder_loads_with_optimum(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master, eval_texts):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    out = tmp_path / "out"
    run_stage(baseline, [variant(tiny_variant_master, "fp32", tmp_path)], eval_set, make_cfg(), out, tiny_model)
    texts, _ = eval_texts
    plain = OnnxClassifier(out / "fp32", max_length=32, threads=1)
    plain_labels = plain.logits(texts, batch_size=len(texts)).argmax(-1)
    model = ORTModelForSequenceClassification.from_pretrained(out / "fp32")
    optimum_logits = np.concatenate([model(**encode(plain.tokenizer, [t])).logits for t in texts])
    np.testing.assert_array_equal(optimum_logits.argmax(-1), plain_labels)
    assert [model.config.id2label[int(i)] for i in plain_labels[:1]][0] in ("负面", "正面")


def test_failing_gate_publishes_nothing_and_writes_reports(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master):
    cfg = make_cfg({"fp32": {"min_speedup": 1000.0}})
    out = tmp_path / "out"
    with pytest.raises(GateError) as caught:
        run_stage(baseline, [variant(tiny_variant_master, "fp32", tmp_path)], eval_set, cfg, out, tiny_model)
    message = str(caught.value)
    assert "1 variant(s) failed the gate" in message and "✗ FAIL, not published" in message
    assert "✗ fp32: min_speedup" in message
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    (entry,) = report["variants"]
    assert not report["passed"] and not entry["published"] and entry["path"] is None
    assert entry["gate"]["checks"][0] | {"value": None} == {"name": "min_speedup", "metric": "speedup",
                                                            "limit": 1000.0, "passed": False, "value": None}
    assert "| fp32 | min_speedup |" in (out / "report.md").read_text(encoding="utf-8")
    assert caught.value.run_report.failed == ["fp32"]


def publish_good(tmp_path, baseline, eval_set, tiny_model, folder) -> tuple[Path, str]:
    out = tmp_path / "out"
    run_stage(baseline, [variant(folder, "fp32", tmp_path / "first")], eval_set, make_cfg(), out, tiny_model)
    return out, manifest_digest(out / "fp32")


def test_failing_gate_keeps_previous_published_variant(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master):
    out, digest = publish_good(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master)
    with pytest.raises(GateError):
        run_stage(baseline, [variant(tiny_variant_master, "fp32", tmp_path)], eval_set,
                  make_cfg({"fp32": {"min_speedup": 1000.0}}), out, tiny_model)
    assert manifest_digest(out / "fp32") == digest and verify_command(out / "fp32", open(os.devnull, "w")) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["variants"][0]["kept_previous"] is True


def test_publish_failing_midway_keeps_previous(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master, monkeypatch):
    out, digest = publish_good(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master)
    real_rename = os.rename

    def rename(src, dst):  # the old folder has been moved aside; moving the new one in fails
        if ".tmp-" in str(src):
            raise OSError("disk on fire")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk on fire"):
        run_stage(baseline, [variant(tiny_variant_master, "fp32", tmp_path)], eval_set, make_cfg(), out, tiny_model)
    monkeypatch.undo()
    assert manifest_digest(out / "fp32") == digest and verify_command(out / "fp32", open(os.devnull, "w")) == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging or backup left behind


KILL_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, signal, sys
    from structbert_lite.artifact import publish_atomically

    real_rename = os.rename
    def rename(src, dst):
        real_rename(src, dst)
        if ".old-" in str(dst):  # the published folder is moved aside, the new one is not in yet
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename
    publish_atomically(sys.argv[1], sys.argv[2])
    """
)


def test_publish_killed_midway_recovers_previous(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master):
    out, digest = publish_good(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master)
    staged = Path(shutil.copytree(out / "fp32", out / ".fp32.tmp-killed"))
    (staged / "README.md").write_text("# a newer, different variant\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(staged), str(out / "fp32")])
    assert proc.returncode == -9
    assert not (out / "fp32").exists() and any(".fp32.old-" in p.name for p in out.iterdir())

    # The next run restores the previous variant before anything else; its gate fails, so it stays.
    with pytest.raises(GateError):
        run_stage(baseline, [variant(tiny_variant_master, "fp32", tmp_path)], eval_set,
                  make_cfg({"fp32": {"min_speedup": 1000.0}}), out, tiny_model)
    assert manifest_digest(out / "fp32") == digest and verify_command(out / "fp32", open(os.devnull, "w")) == 0
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_variant_staged_in_out_dir_is_renamed_in_place(tmp_path, baseline, eval_set, tiny_model, tiny_variant_master):
    out = tmp_path / "out"
    staged = Path(shutil.copytree(tiny_variant_master, out / ".fp32.tmp-lead"))
    result = run_stage(baseline, [Artifact(staged, "fp32", dict(META))], eval_set, make_cfg(), out, tiny_model)
    assert result.published == {"fp32": out / "fp32"} and not staged.exists()
    assert verify_command(out / "fp32", open(os.devnull, "w")) == 0
