"""`verify` on single folders: a flipped byte, a missing or extra file, an edited manifest are caught; SHA256SUMS
round-trips. (Whole sets: tests/publish/test_output_set.py.)"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from structbert_lite.artifact import write_manifest
from structbert_lite.publish.verify import main, verify_command, write_sha256sums


@pytest.fixture()
def published(variant_folder, tmp_path):
    """out/fp32 and out/int8-dynamic with manifests and READMEs, plus a report beside them."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("fp32", "int8-dynamic"):
        folder = Path(shutil.copytree(variant_folder, out / name))
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
    code, text = run_verify(published / "int8-dynamic")
    assert code == 0 and "1 ok, 0 with problems" in text


def test_folders_without_a_run_manifest_are_not_a_set(published):
    code, text = run_verify(published)
    assert code == 1 and "not a complete published set" in text


def test_an_edited_manifest_is_caught(published):
    path = published / "fp32" / "manifest.json"
    edited = path.read_text(encoding="utf-8").replace('"variant": "fp32"', '"variant": "fp33"')
    path.write_text(edited, encoding="utf-8")
    code, text = run_verify(published / "fp32")
    assert code == 1 and "manifest.json was edited after publishing" in text


def test_flipped_byte_is_caught(published):
    model = published / "int8-dynamic" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    assert run_verify(published / "fp32")[0] == 0
    code, text = run_verify(published / "int8-dynamic")
    assert code == 1 and "hash mismatch: model.onnx" in text


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
    assert any(line.endswith("  fp32/model.onnx") for line in lines) and any("report.json" in line for line in lines)
    assert subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=published).returncode == 0
    from structbert_lite.publish.verify import check_sha256sums

    assert check_sha256sums(published) == []
    (published / "report.json").write_text('{"x": 1}', encoding="utf-8")
    assert check_sha256sums(published) == ["SHA256SUMS: hash mismatch: report.json"]


def test_module_entry_point(published, capsys):
    assert main([str(published / "fp32"), "--write-sha256sums"]) == 1  # SHA256SUMS is not in its manifest
    assert (published / "fp32" / "SHA256SUMS").is_file() and "with problems" in capsys.readouterr().out


def _resign(folder: Path, **files) -> None:
    """Rewrite the manifest with ``files`` entries added (a digest that matches its content: only the entries lie)."""
    import json

    from structbert_lite.artifact import content_digest

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"].update(files)
    manifest["manifest_digest"] = content_digest(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("entry", ["../secret.txt", "ABSOLUTE", "sub/../../secret.txt", "./model.onnx"])
@pytest.mark.parametrize("right_hash", [True, False])
def test_manifest_entries_outside_the_folder_are_refused_and_never_hashed_aloud(published, tmp_path, entry, right_hash):
    from structbert_lite.artifact import sha256_file

    secret = published / "secret.txt"
    secret.write_text("not yours", encoding="utf-8")
    real = sha256_file(secret)
    entry = str(secret) if entry == "ABSOLUTE" else entry
    _resign(published / "fp32", **{entry: real if right_hash else "0" * 64})
    code, text = run_verify(published / "fp32")
    assert code == 1 and "refused" in text and real[:12] not in text, text


def test_a_listed_file_replaced_by_a_symlink_is_refused_by_verify_and_serve(published, tmp_path):
    from structbert_lite.errors import ArtifactError
    from structbert_lite.serve.engine import load_engine
    from structbert_lite.serve.settings import ServeSettings

    folder = published / "fp32"
    copy = tmp_path / "elsewhere.json"
    shutil.copyfile(folder / "tokenizer.json", copy)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(copy)  # identical bytes: only the link is wrong
    code, text = run_verify(folder)
    assert code == 1 and "symlink" in text and "tokenizer.json" in text
    with pytest.raises(ArtifactError, match="symlink"):
        load_engine(folder, ServeSettings())


def test_a_symlink_to_a_directory_inside_the_folder_is_reported(published, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.bin").write_bytes(b"x")
    (published / "fp32" / "extra").symlink_to(tmp_path / "outside", target_is_directory=True)
    code, text = run_verify(published / "fp32")
    assert code == 1 and "symlink" in text and "extra" in text


def test_load_verifies_the_folder_unless_told_not_to(published):
    import structbert_lite
    from structbert_lite.errors import ArtifactError

    folder = published / "fp32"
    before = structbert_lite.load(folder).predict("很好")
    path = folder / "tokenizer.json"
    path.write_text(path.read_text(encoding="utf-8") + " ", encoding="utf-8")  # still valid JSON, other bytes
    with pytest.raises(ArtifactError, match="refusing to load .*hash mismatch: tokenizer.json"):
        structbert_lite.load(folder)
    assert structbert_lite.load(folder, verify=False).predict("很好")["label"] in ("Positive", "Negative")
    assert before["label"] in ("Positive", "Negative")


def test_load_refuses_a_listed_file_replaced_by_a_symlink(published, tmp_path):
    import structbert_lite
    from structbert_lite.errors import ArtifactError

    folder = published / "fp32"
    copy = tmp_path / "elsewhere.json"
    shutil.copyfile(folder / "tokenizer.json", copy)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(copy)
    with pytest.raises(ArtifactError, match="symlink"):
        structbert_lite.load(folder)
