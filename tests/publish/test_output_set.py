"""The output set: all or nothing under kills, one run at a time, nothing left behind by a failed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from structbert_lite.artifact import write_json, write_manifest
from structbert_lite.errors import ArtifactError
from structbert_lite.publish.output_set import RUN_ID as RUN_ID_PATTERN
from structbert_lite.publish.output_set import RUN_MANIFEST, OutputBusyError, OutputSet, runs_root
from structbert_lite.publish.verify import verify_tree

# A fake run in a child process: builds a set of N variant folders slowly enough to be killed mid-way,
# then publishes it. Every variant's payload carries the run's tag, so a mix of two runs is detectable.
FAKE_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from structbert_lite.artifact import content_digest, sha256_file, write_json, write_manifest
    from structbert_lite.publish.output_set import OutputSet, RUN_MANIFEST

    out, tag, pause = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    with OutputSet(out, keep_runs=2) as output:
        print("locked", flush=True)
        variants = {}
        for name in ("fp32", "fp32-optimized", "int8-dynamic"):
            folder = output.work / name
            folder.mkdir()
            (folder / "model.onnx").write_text(tag)
            for required in ("config.json", "tokenizer_config.json", "tokenizer.json", "README.md"):
                (folder / required).write_text("{}")
            time.sleep(pause)
            folder.rename(output.run_dir / name)
            write_manifest(output.run_dir / name, {"variant": name, "tag": tag})
            variants[name] = {"manifest_sha256": sha256_file(output.run_dir / name / "manifest.json")}
            print(name, flush=True)
        write_json(output.run_dir / "report.json", {"tag": tag})
        manifest = {"variants": variants, "not_published": {},
                    "reports": {"report.json": sha256_file(output.run_dir / "report.json")}}
        manifest["manifest_digest"] = content_digest(manifest)
        write_json(output.run_dir / RUN_MANIFEST, manifest)
        print("run-manifest", flush=True)
        time.sleep(pause)
        output.switch()
        print("switched", flush=True)
        time.sleep(pause)
    print("done", flush=True)
    """
)


def fake_run(out: Path, tag: str, pause: float = 0.0, wait: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_RUN, str(out), tag, str(pause)],
                            stdout=subprocess.PIPE, text=True)
    if wait:
        assert proc.wait(timeout=60) == 0
    return proc


def set_tags(out: Path) -> set[str]:
    """The run tags of every variant reachable at ``out`` (one tag = a consistent set)."""
    return {(out / name / "model.onnx").read_text() for name in ("fp32", "fp32-optimized", "int8-dynamic")}


def test_a_published_set_is_a_symlink_to_a_complete_run(tmp_path):
    out = tmp_path / "artifacts" / "demo"
    fake_run(out, "A")
    assert out.is_symlink() and set_tags(out) == {"A"}
    assert all(not problems for problems in verify_tree(out).values())
    fake_run(out, "B")
    assert set_tags(out) == {"B"}
    runs = [p for p in runs_root(out).iterdir() if (p / RUN_MANIFEST).is_file()]
    assert len(runs) == 2  # keep_runs=2: the current run and the one before, for rollback


PHASES = ("locked", "fp32", "fp32-optimized", "int8-dynamic", "run-manifest", "switched")


@pytest.mark.parametrize("phase", PHASES)
def test_a_kill_at_any_moment_leaves_the_old_set_or_the_new_set(tmp_path, phase):
    out = tmp_path / "demo"
    fake_run(out, "old")
    proc = fake_run(out, "new", pause=0.3, wait=False)
    for line in proc.stdout:  # kill while the child sleeps right after announcing `phase`
        if line.strip() == phase:
            break
    time.sleep(0.1)  # inside the child's pause after that phase
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    tags = set_tags(out)
    assert tags == ({"new"} if phase == "switched" else {"old"}), f"killed after {phase}: {tags}"
    assert all(not problems for problems in verify_tree(out).values())
    fake_run(out, "after")  # the next run cleans up what the killed one left
    leftovers = [p.name for p in runs_root(out).iterdir() if p.is_dir() and not (p / RUN_MANIFEST).is_file()]
    assert leftovers == [] and set_tags(out) == {"after"}


def test_a_second_run_on_the_same_folder_says_who_holds_it(tmp_path):
    out = tmp_path / "demo"
    first = fake_run(out, "A", pause=1.0, wait=False)
    assert first.stdout.readline().strip() == "locked"
    with pytest.raises(OutputBusyError, match=rf"in use by another structbert-lite run .*\"pid\": {first.pid}"):
        with OutputSet(out):
            pass
    assert first.wait(timeout=60) == 0 and set_tags(out) == {"A"}


def test_a_failed_first_run_leaves_nothing_behind(tmp_path):
    out = tmp_path / "demo"
    with pytest.raises(RuntimeError):
        with OutputSet(out):
            raise RuntimeError("boom")
    assert not out.exists() and not os.path.lexists(out) and not runs_root(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_keeps_the_published_set(tmp_path):
    out = tmp_path / "demo"
    fake_run(out, "A")
    with pytest.raises(RuntimeError):
        with OutputSet(out) as output:
            (output.work / "fp32").mkdir()
            raise RuntimeError("boom")
    assert set_tags(out) == {"A"}
    runs = sorted(p.name for p in runs_root(out).iterdir() if not p.name.startswith("."))
    assert runs == [os.readlink(out).split("/")[-1]]


def test_switch_refuses_a_set_without_run_manifest(tmp_path):
    with pytest.raises(ArtifactError, match="incomplete set"):
        with OutputSet(tmp_path / "demo") as output:
            output.switch()


def test_an_earlier_real_folder_is_adopted_not_lost(tmp_path):
    out = tmp_path / "demo"
    (out / "fp32").mkdir(parents=True)
    (out / "fp32" / "model.onnx").write_text("legacy")
    write_manifest(out / "fp32", {"variant": "fp32"})
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "config.json").write_text("{}")
    with OutputSet(out) as output:
        assert (runs_root(out) / "legacy" / "fp32" / "model.onnx").read_text() == "legacy"
        assert (output.shared_checkpoint / "config.json").is_file()


def test_a_folder_that_is_not_ours_is_refused_untouched_and_leaves_no_lock_behind(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ArtifactError, match="not a structbert-lite output set"):
        with OutputSet(out):
            pass
    assert (out / "cat.jpg").read_bytes() == b"\xff\xd8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no hidden runs folder, no lock


@pytest.mark.parametrize("edit", ["variant manifest", "run manifest", "report", "extra folder", "missing folder"])
def test_verify_catches_an_edited_or_incomplete_set(tmp_path, edit):
    out = tmp_path / "demo"
    fake_run(out, "A")
    run = out.resolve()
    if edit == "variant manifest":  # a flipped digit in a metric, the JSON still valid
        path = run / "int8-dynamic" / "manifest.json"
        path.write_text(path.read_text().replace('"tag": "A"', '"tag": "B"'))
    elif edit == "run manifest":
        data = json.loads((run / RUN_MANIFEST).read_text())
        data["not_published"] = {"fp32": "x"}
        write_json(run / RUN_MANIFEST, data)
    elif edit == "report":
        (run / "report.json").write_text('{"tag": "edited"}')
    elif edit == "extra folder":
        (run / "rogue").mkdir()
        (run / "rogue" / "model.onnx").write_text("x")
        write_manifest(run / "rogue", {"variant": "rogue"})
    else:
        import shutil

        shutil.rmtree(run / "fp32")
    problems = [p for ps in verify_tree(out).values() for p in ps]
    assert problems, edit


def _set_state(out: Path) -> dict:
    """Every path under the set's parent (links as their targets): a refusal must leave it exactly so."""
    state = {}
    for path in sorted(out.parent.rglob("*")):
        rel = str(path.relative_to(out.parent))
        state[rel] = os.readlink(path) if path.is_symlink() else (path.stat().st_size if path.is_file() else "dir")
    return state


@pytest.mark.parametrize("where", ["run folder", "variant/sub", "set/newset", "variant", "runs root", "checkpoint/x"])
def test_an_out_inside_a_published_set_is_refused_and_changes_nothing(tmp_path, where):
    out = tmp_path / "artifacts" / "demo"
    fake_run(out, "A")
    (runs_root(out) / "checkpoint").mkdir()
    run = out.resolve()
    target = {
        "run folder": run, "variant/sub": out / "int8-dynamic" / "sub", "set/newset": out / "newset",
        "variant": out / "int8-dynamic", "runs root": runs_root(out) / "other",
        "checkpoint/x": out / "checkpoint" / "x",
    }[where]
    before = _set_state(out)
    with pytest.raises(ArtifactError, match=f"would damage it.*|{out}") as caught:
        with OutputSet(target):
            pass
    message = str(caught.value)
    assert "\n" not in message and str(out) in message and "would damage" in message, message
    assert _set_state(out) == before  # no lock file, no hidden runs folder, nothing moved
    assert all(not problems for problems in verify_tree(out).values())


def test_pruning_removes_a_symlinked_run_not_what_it_points_at(tmp_path):
    out = tmp_path / "demo"
    fake_run(out, "A")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / RUN_MANIFEST).write_text("{}")
    (elsewhere / "keep.txt").write_text("mine")
    os.symlink(elsewhere, runs_root(out) / "20000101-000000-1")  # the oldest "run", a symlink
    fake_run(out, "B")
    fake_run(out, "C")
    names = sorted(p.name for p in runs_root(out).iterdir() if RUN_ID_PATTERN.match(p.name))
    assert len(names) == 2 and "20000101-000000-1" not in names  # keep_runs=2 bounds the runs again
    assert (elsewhere / "keep.txt").read_text() == "mine"
