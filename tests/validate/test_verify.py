"""`verify`: a flipped byte, a missing file and an extra file are caught; SHA256SUMS round-trips."""

from __future__ import annotations

import io
import shutil
import subprocess

from pathlib import Path

import pytest

from structbert_lite.artifact import write_manifest
from structbert_lite.validate.verify import main, verify_command, write_sha256sums


@pytest.fixture()
def published(tiny_variant, tmp_path):
    """out/fp32 and out/int8-dynamic with manifests and READMEs, plus a report beside them."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("fp32", "int8-dynamic"):
        folder = Path(shutil.copytree(tiny_variant, out / name))
        (folder / "README.md").write_text(f"# {name}\n", encoding="utf-8")
        write_manifest(folder, {"variant": name})
    (out / "report.json").write_text("{}", encoding="utf-8")
    return out


def run_verify(folder):
    stream = io.StringIO()
    code = verify_command(folder, stream)
    return code, stream.getvalue()


def test_clean_folders_verify(published):
    assert run_verify(published / "fp32")[0] == 0
    code, text = run_verify(published)
    assert code == 0 and "2 ok, 0 with problems" in text


def test_flipped_byte_is_caught(published):
    model = published / "int8-dynamic" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    code, text = run_verify(published)
    assert code == 1 and "hash mismatch: model.onnx" in text and "✓ " + str(published / "fp32") in text


def test_missing_and_extra_files_are_caught(published):
    (published / "fp32" / "tokenizer_config.json").unlink()
    (published / "fp32" / "notes.txt").write_text("x", encoding="utf-8")
    code, text = run_verify(published / "fp32")
    assert code == 1
    assert "missing file: tokenizer_config.json" in text and "unexpected file not in manifest: notes.txt" in text


@pytest.mark.parametrize("setup, message", [("empty", "holds no manifest.json"), ("absent", "is not a directory")])
def test_not_a_variant_folder(tmp_path, setup, message):
    target = tmp_path / "x"
    if setup == "empty":
        target.mkdir()
    code, text = run_verify(target)
    assert code == 1 and message in text


def test_sha256sums_matches_sha256sum_and_catches_changes(published):
    path = write_sha256sums(published)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert any(line.endswith("  fp32/model.onnx") for line in lines) and any("report.json" in l for l in lines)
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=published).returncode == 0
    assert run_verify(published)[0] == 0
    (published / "report.json").write_text('{"x": 1}', encoding="utf-8")
    code, text = run_verify(published)
    assert code == 1 and "SHA256SUMS: hash mismatch: report.json" in text


def test_module_entry_point(published, capsys):
    assert main([str(published), "--write-sha256sums"]) == 0
    assert (published / "SHA256SUMS").is_file() and "3 ok" in capsys.readouterr().out
