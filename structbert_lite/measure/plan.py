"""What one measurement takes: grid, repeats, throughput batching, rounds, budgets — as data.

Both validate (`validate.speed.plan_from_config`) and bench (`bench.settings`) build a `MeasurePlan`; the
worker receives it verbatim in its job file, and results carry it, so every figure traces back to it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class MeasurePlan:
    threads: int = 2  # intra-op threads of every contender (inter-op 1; OMP/MKL/RAYON likewise)
    max_length: int = 128  # truncation of real texts (throughput, first answer)
    latency_grid: tuple = ((1, 32),)  # (batch, seq_len) points timed on synthetic ids
    warmup_runs: int = 1  # untimed runs per latency point before timing it
    min_repeats: int = 2  # timed runs per latency point per round, at least ...
    max_repeats: int = 30  # ... and at most ...
    point_budget_s: float = 1.5  # ... and otherwise as many as fit into this (min == max: a fixed count)
    throughput_batch_sizes: tuple = (32,)  # one: that batch size; several: each contender keeps its fastest
    throughput_tune_texts: int = 16  # median-length texts scored per candidate batch size while tuning
    throughput_cap_s: float = 60.0  # stop a throughput block after this long (reported as partial)
    throughput_rounds: Literal["all", "last", "none"] = "all"  # rounds that measure throughput
    first_answer_texts: int = 1  # texts in the first answer (cold start, RSS at first answer)
    rounds: int = 2  # each contender once per round in a fresh process, order rotated per round; medians
    seed: int = 20240601  # synthetic ids and the order of throughput buckets
    timeout_s: float = 900.0  # one worker process, then it counts as failed

    def __post_init__(self):
        self.latency_grid = tuple(tuple(int(x) for x in point) for point in self.latency_grid)
        self.throughput_batch_sizes = tuple(int(b) for b in self.throughput_batch_sizes)
        if self.threads < 1 or self.rounds < 1 or not self.latency_grid or not self.throughput_batch_sizes:
            raise ValueError(f"invalid measurement plan: {self}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def measures_throughput(self, round_index: int) -> bool:
        if self.throughput_rounds == "all":
            return True
        return self.throughput_rounds == "last" and round_index == self.rounds - 1
