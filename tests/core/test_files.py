"""structbert_lite.files: atomic writes leave the old file or the new one; the lock is exclusive."""

from __future__ import annotations

import pytest

from structbert_lite.files import atomic_path, atomic_write, try_lock


def test_atomic_write_text_and_bytes(tmp_path):
    target = tmp_path / "out.txt"
    assert atomic_write(target, "héllo") == target
    assert target.read_text(encoding="utf-8") == "héllo"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("killed mid-write")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_try_lock_is_exclusive_until_released(tmp_path):
    path = tmp_path / ".lock"
    first = try_lock(path)
    assert first is not None and first.is_locked
    assert try_lock(path) is None  # a second holder, even in this process, is refused
    first.release()
    again = try_lock(path)
    assert again is not None
    again.release()
