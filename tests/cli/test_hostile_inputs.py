"""A fast subset of tests/cli/hostile_inputs.py in the suite: bad checkpoints, configs, eval files and sources end
in one `error:` line, exit 2, in seconds, and leave no output folder (the full ~40-case loop is the script)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.hostile_inputs import all_cases, build, run_case

FAST = (
    "empty weights", "pickled code", "config.json is a list", "hidden_size is a string", "vocab longer than vocab_size",
    "id2label and label2id disagree", "duplicate key", "threads: true", "pre-steps layout", "eval missing column",
    "eval bad jsonl", "mistyped local path",
)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    return work, all_cases(work, *build(work))


@pytest.mark.parametrize("name", FAST)
def test_hostile_input_is_one_line_and_exit_2(cases, name):
    work, table = cases
    args, env = table[name]
    code, lines, seconds = run_case(args, work, env)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    out = Path(args[args.index("--out") + 1])
    assert not os.path.lexists(out) and not (out.parent / f".{out.name}.runs").exists()
