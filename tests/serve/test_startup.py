"""Start-up: the folder must match its manifest, settings are validated, CPU flags are checked."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import free_port

from structbert_lite.artifact import read_manifest, write_manifest
from structbert_lite.errors import ArtifactError, ConfigError
from structbert_lite.runtime import open_variant
from structbert_lite.serve.app import create_app
from structbert_lite.serve.cpu_flags import check_cpu_flags, read_cpu_flags
from structbert_lite.serve.server import add_serve_arguments, is_loopback, settings_from_args
from structbert_lite.serve.settings import ServeSettings


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERINGS = [
    # (id, how to damage the copy, fragment of the error)
    ("flipped-byte-in-model", lambda d: flip_byte(d / "model.onnx"), "hash mismatch: model.onnx"),
    ("edited-config", lambda d: (d / "config.json").write_text("{}"), "hash mismatch: config.json"),
    ("missing-tokenizer", lambda d: (d / "tokenizer.json").unlink(), "missing file: tokenizer.json"),
    ("missing-model", lambda d: (d / "model.onnx").unlink(), "missing file: model.onnx"),
    ("extra-file", lambda d: (d / "extra.bin").write_bytes(b"x"), "unexpected file not in manifest: extra.bin"),
    ("no-manifest", lambda d: (d / "manifest.json").unlink(), "has no manifest.json"),
    ("corrupt-manifest", lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
]


@pytest.mark.parametrize(("damage", "fragment"), [t[1:] for t in TAMPERINGS], ids=[t[0] for t in TAMPERINGS])
def test_tampered_or_incomplete_folder_is_refused(artifact_copy, damage, fragment):
    damage(artifact_copy)
    with pytest.raises(ArtifactError, match="refusing to serve") as info:
        create_app(artifact_copy)
    assert fragment in str(info.value)


def test_a_published_set_serves_its_fastest_variant_and_says_so(tiny_artifact, tmp_path, caplog):
    """`--artifact artifacts/demo` (the set): the variant its report.json measured fastest is served, with one
    log line naming it and why; the Python API's variant-only entry points name it in their error."""
    root = tmp_path / "demo"
    for name in ("fp32", "int8-dynamic"):
        shutil.copytree(tiny_artifact, root / name)
    report = {"settings": {"speedup_point": [1, 32]}, "variants": [
        {"name": "fp32", "published": True, "metrics": {"speedup": 2.0}},
        {"name": "int8-dynamic", "published": True, "metrics": {"speedup": 1.5}},
        {"name": "not-published", "metrics": {"speedup": 9.0}}]}
    (root / "report.json").write_text(json.dumps(report), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="structbert_lite.variant_choice"):
        create_app(root)
    [line] = [r.getMessage() for r in caplog.records if r.name == "structbert_lite.variant_choice"]
    assert line.startswith(f"{root} is a published set: using fp32, the fastest in its report.json at 1×32 "
                           "(2.00x PyTorch FP32)"), line
    with pytest.raises(ArtifactError) as info:
        open_variant(root)  # a variant-only entry point: the same choice, as a hint
    assert f"e.g. {root / 'fp32'}, the fastest in its report.json at 1×32 (2.00x PyTorch FP32)" in str(info.value)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="is not a directory"):
        create_app(tmp_path / "nope")


def test_command_line_refuses_a_tampered_folder_before_listening(artifact_copy):
    flip_byte(artifact_copy / "model.onnx")
    result = subprocess.run(
        [sys.executable, "-m", "structbert_lite.serve", "--artifact", str(artifact_copy), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve" in result.stderr and "hash mismatch: model.onnx" in result.stderr


def test_max_length_over_the_models_positions_is_refused(tiny_artifact):
    with pytest.raises(ConfigError, match="max_position_embeddings"):
        create_app(tiny_artifact, ServeSettings(max_length=1000))


def test_max_length_defaults_to_the_manifests(artifact_copy):
    manifest = read_manifest(artifact_copy)
    write_manifest(artifact_copy,
                   {"name": manifest["name"], "variant": "fp32", "config": {"model": {"max_length": 64}}})
    assert create_app(artifact_copy).state.serve.engine.max_length == 64


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"max_batch": 0}, "max_batch must be >= 1"),
    ({"cache_size": -1}, "cache_size must be >= 0"),
    ({"overlong": "drop"}, "overlong must be one of truncate, reject"),
    ({"max_body_bytes": "1MB"}, "max_body_bytes must be an integer"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"port": 70000}, "port must be <= 65535"),
    ({"max_length": 2}, "max_length must be >= 3"),
    ({"batch_wait_ms": -1}, "batch_wait_ms must be between 0 and 1000"),
    ({"truncation": "tail"}, "truncation must be one of head, head\\+tail; got 'tail'"),
    ({"read_timeout_s": 0}, "read_timeout_s must be > 0"),
    ({"read_timeout_s": True}, "read_timeout_s must be > 0"),
])
def test_bad_settings_are_config_errors(settings, fragment):
    with pytest.raises(ConfigError, match=fragment):
        ServeSettings(**settings)


def test_serve_arguments_map_to_settings():
    parser = add_serve_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--artifact", "x"])
    assert (args.host, args.port) == ("127.0.0.1", 5000)
    assert settings_from_args(args) == ServeSettings()
    args = parser.parse_args([
        "--artifact", "x", "--host", "::1", "--port", "8080", "--threads", "2", "--max-length", "64",
        "--overlong", "reject", "--max-batch", "8", "--cache-size", "0", "--max-body-bytes", "4096",
        "--batch-wait-ms", "5", "--truncation", "head+tail", "--read-timeout-s", "2.5",
    ])
    assert settings_from_args(args) == ServeSettings(
        host="::1", port=8080, threads=2, max_length=64, overlong="reject", max_batch=8, cache_size=0,
        max_body_bytes=4096, batch_wait_ms=5.0, truncation="head+tail", read_timeout_s=2.5,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--artifact", "x", "--truncation", "middle"])
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --artifact is required


def test_truncation_comes_from_the_manifest_unless_given(artifact_copy, make_client):
    manifest = read_manifest(artifact_copy)
    write_manifest(artifact_copy, {"name": manifest["name"], "variant": "fp32",
                                   "config": {"model": {"max_length": 16, "truncation": "head+tail"}}})
    assert create_app(artifact_copy).state.serve.engine.classifier.truncation == "head+tail"
    head_app = create_app(artifact_copy, ServeSettings(truncation="head"))
    assert head_app.state.serve.engine.classifier.truncation == "head"
    client = make_client(artifact_copy, cache_size=0)
    assert client.get("/health").json()["model"]["truncation"] == "head+tail"
    # 16 tokens: [CLS] + 4 head + 10 tail + [SEP] of a 38-character text (one token per character).
    text = "非常喜欢这部电影" + "服务态度很一般" * 4 + "失望"
    assert len(text) == 38
    cut = text[:4] + text[-10:]
    assert client.post("/predict", json={"text": text}).json() == client.post("/predict", json={"text": cut}).json()
    head_only = make_client(artifact_copy, cache_size=0, truncation="head")
    assert (head_only.post("/predict", json={"text": text}).json()
            == head_only.post("/predict", json={"text": text[:14]}).json())


def test_an_unknown_truncation_in_the_manifest_is_refused(artifact_copy):
    manifest = read_manifest(artifact_copy)
    write_manifest(artifact_copy,
                   {"name": manifest["name"], "variant": "fp32", "config": {"model": {"truncation": "x"}}})
    with pytest.raises(ArtifactError, match="config.model.truncation is 'x'"):
        create_app(artifact_copy)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 AVX2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "sse4_2", "avx2", "fma"}
    assert read_cpu_flags(tmp_path / "absent") is None


def test_missing_cpu_flags_are_warned_about(tmp_path, caplog):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: fpu avx avx2\n")
    manifest = {"quantization": {"preset": "avx512_vnni", "isa": "avx512_vnni",
                                 "required_cpu_flags": ["avx2", "avx512f", "avx512_vnni"]}}
    with caplog.at_level(logging.WARNING):
        result = check_cpu_flags(manifest, cpuinfo)
    assert result == {"isa": "avx512_vnni", "required_flags": ["avx2", "avx512f", "avx512_vnni"],
                      "missing_flags": ["avx512f", "avx512_vnni"], "checked": True}
    assert "lacks avx512f, avx512_vnni" in caplog.text


@pytest.mark.parametrize(("manifest", "checked"), [
    ({}, False),  # fp32: no quantization block
    ({"quantization": {"preset": "avx2"}}, True),  # no required flags: nothing missing
    ({"quantization": {"required_cpu_flags": "avx2"}}, False),  # malformed: skipped with a warning
    ({"quantization": None}, False),
])
def test_cpu_check_tolerates_absent_or_odd_manifest_fields(tmp_path, manifest, checked):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx2\n")
    result = check_cpu_flags(manifest, cpuinfo)
    assert result["missing_flags"] == [] and result["checked"] is checked


def test_cpu_check_without_proc_cpuinfo(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        result = check_cpu_flags({"quantization": {"required_cpu_flags": ["avx2"]}}, tmp_path / "absent")
    assert result["checked"] is False and "cannot read CPU flags" in caplog.text


def test_start_up_warns_and_health_reports_missing_flags(artifact_copy, caplog, make_client):
    write_manifest(artifact_copy, {
        "name": "tiny", "variant": "int8-dynamic",
        "quantization": {"preset": "avx512_vnni", "isa": "avx512_vnni", "required_cpu_flags": ["no_such_cpu_flag"]},
    })
    with caplog.at_level(logging.WARNING):
        client = make_client(artifact_copy)
    assert "lacks no_such_cpu_flag" in caplog.text
    health = client.get("/health").json()
    assert health["artifact"]["variant"] == "int8-dynamic"
    assert health["cpu"]["missing_flags"] == ["no_such_cpu_flag"]
