"""One rule for thread counts in every command (constants.MAX_THREADS), refused in one line."""

from __future__ import annotations

import pytest

from structbert_lite.constants import MAX_THREADS, thread_count_problem
from structbert_lite.errors import ConfigError, StructbertLiteError


@pytest.mark.parametrize("value", [0, -1, MAX_THREADS + 1, 10000, True, 2.0, "4"])
def test_thread_counts_outside_the_rule_are_refused_everywhere(value):
    from structbert_lite.score.job import ScoreOptions
    from structbert_lite.serve.settings import ServeSettings

    assert thread_count_problem("--threads", value)
    with pytest.raises(ConfigError, match="threads"):
        ServeSettings(threads=value)
    for field in ("threads", "workers"):
        with pytest.raises(StructbertLiteError, match=f"--{field} must be a whole number"):
            ScoreOptions(artifact="a", input="b", output="c.csv", **{field: value})


def test_the_rule_is_the_one_run_uses():
    from structbert_lite.config import ValidateConfig

    assert ValidateConfig(threads=MAX_THREADS).threads == MAX_THREADS
    with pytest.raises(ValueError):
        ValidateConfig(threads=MAX_THREADS + 1)
    assert thread_count_problem("--threads", MAX_THREADS) is None
