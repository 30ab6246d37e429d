"""What a person sees of a run (structbert_lite.console) and how `make demo` ends: one line per stage, bars only
on a terminal, the full log in OUT/run.log, and `--speed-unverified-ok` turning exit 4 (and only 4) into 0."""

from __future__ import annotations

import io
import json
import logging

import pytest

from structbert_lite import console
from structbert_lite.cli import EXIT_GATE, main
from tests.builders import self_labels, write_eval_csv, write_tiny_checkpoint
from tests.cli.test_run_cli import TEXTS, run_cli


def test_a_stage_prints_one_line_with_its_status_and_time(capsys):
    console.enable_stage_lines(True)
    try:
        with console.stage("fp32 (export ← source)"):
            pass
        with pytest.raises(ValueError), console.stage("fp32-optimized (fuse ← fp32)"):
            raise ValueError("parity failed\nsecond line")
    finally:
        console.enable_stage_lines(False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("✓ fp32 (export ← source)") and lines[0].endswith(" s")
    assert lines[1].startswith("✗ fp32-optimized") and "failed: parity failed" in lines[1] and "second" not in lines[1]


def test_stage_lines_are_off_unless_the_cli_turns_them_on(capsys):
    with console.stage("quiet stage"):
        pass
    assert capsys.readouterr().err == ""


def test_progress_draws_nothing_off_a_terminal_and_passes_items_through(monkeypatch):
    stream = io.StringIO()  # not a terminal, like a CI log
    monkeypatch.setattr("sys.stderr", stream)
    bar = console.progress(range(3), desc="train", unit="batch")
    assert list(bar) == [0, 1, 2]
    with console.progress(total=10, desc="eval", unit="text") as counted:
        counted.update(4)
        counted.set_postfix(loss="0.1")
    assert stream.getvalue() == ""
    assert list(console.progress([1, 2], quiet=True)) == [1, 2]


def test_the_run_log_gets_info_whatever_the_terminal_shows(tmp_path):
    log = tmp_path / "run.log"
    with console.run_log(log):
        logging.getLogger("structbert_lite.example").info("round 2/2: student-fp32-optimized")
    assert "round 2/2: student-fp32-optimized" in log.read_text(encoding="utf-8")


def test_the_unverified_line_gives_the_reason_from_the_trust_verdict():
    trust = {"verified": False, "reasons": ["threads waited for a core 84% of the time"]}
    report = {"settings": {"speed_trust": trust}}
    accepted = console.speed_unverified_line(report, True, 4)
    assert accepted.startswith("Speed figures NOT verified (threads waited for a core 84% of the time)")
    assert "\n" not in accepted and "published" in accepted
    assert "(exit 4)" in console.speed_unverified_line(report, False, 4)
    assert "busy" in console.speed_unverified_line({"settings": {}}, True, 4)


@pytest.fixture(scope="module")
def checkpoint_and_eval(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "demo-like", layout="modelscope",
                                       center_on=TEXTS)
    path = tmp_path_factory.mktemp("eval") / "eval.csv"
    return checkpoint, str(write_eval_csv(path, TEXTS, self_labels(checkpoint, TEXTS, max_length=64)))


def test_speed_unverified_ok_makes_a_published_run_exit_0_and_says_why(tmp_path, checkpoint_and_eval, capsys):
    checkpoint, eval_csv = checkpoint_and_eval
    code = run_cli(tmp_path, checkpoint, eval_csv, {"max_size_mb": 5}, tmp_path / "out", "--speed-unverified-ok")
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp_path / "out" / "run.log").is_file()  # the full log, inside the published set
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    if not report["settings"]["speed_trust"]["verified"]:  # a busy machine: the one line says so, with the reason
        (line,) = [x for x in err.splitlines() if x.startswith("Speed figures NOT verified (")]
        assert report["settings"]["speed_trust"]["reasons"][0] in line


def test_speed_unverified_ok_does_not_hide_a_failed_gate_or_a_user_error(tmp_path, checkpoint_and_eval, capsys):
    checkpoint, eval_csv = checkpoint_and_eval
    code = run_cli(tmp_path, checkpoint, eval_csv, {"max_size_mb": 0.0001}, tmp_path / "out", "--speed-unverified-ok")
    assert code == EXIT_GATE
    assert main(["run", "--config", str(tmp_path / "missing.yaml"), "--speed-unverified-ok"]) == 2
    capsys.readouterr()


def test_make_demo_accepts_unverified_speed_and_make_convert_does_not():
    from tests.ci.test_makefile import structbert_lite_args

    assert "--speed-unverified-ok" in structbert_lite_args("demo")
    assert "--speed-unverified-ok" not in structbert_lite_args("convert")
