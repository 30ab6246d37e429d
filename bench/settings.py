"""What one benchmark run measures: the grid, repeats, rounds and budgets, as data.

Two named presets: `BenchSettings.full_run()` (the StructBERT-base-shaped run of `make bench`, sized to stay
under 20 minutes on 2 cores) and `BenchSettings.quick_run()` (a tiny model and few repeats, for development and
the test). Every figure in `results.json` is traceable to these fields, which are written there verbatim.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

# (batch, seq_len) latency points of the issue: batch 1 over lengths, then two batched points.
LATENCY_GRID = ((1, 16), (1, 32), (1, 64), (1, 128), (1, 256), (8, 64), (32, 128))
# StructBERT-base (ModelScope nlp_structbert_sentiment-classification_chinese-base) shape.
BASE_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
VOCAB_SIZE = 21128
# "Ours" are built exactly as `make convert` publishes them: with this config's export/optimize/quantize keys.
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "structbert-base.yaml"


@dataclasses.dataclass
class BenchSettings:
    """One benchmark run. Times are wall-clock seconds, sizes are tokens."""

    threads: int = 2  # intra-op threads of every contender (inter-op: 1)
    model_dir: Optional[str] = None  # a ModelScope-layout checkpoint; None: random weights of `shape`
    config_path: Optional[str] = str(DEFAULT_CONFIG)  # pipeline config whose export/optimize/quantize build "ours"
    shape: dict = dataclasses.field(default_factory=lambda: dict(BASE_SHAPE))  # BertConfig fields (random weights)
    seed: int = 20240601  # random weights, synthetic ids, review sample
    max_length: int = 128  # truncation of the throughput reviews
    latency_grid: tuple = LATENCY_GRID  # (batch, seq_len) points
    rounds: int = 3  # each contender runs once per round in a fresh process, order rotated per round; medians
    settle_s: float = 5.0  # pause after preparation (after flushing its writes) before the first timed block
    warmup_runs: int = 1  # untimed runs per latency point before timing it
    min_repeats: int = 2  # timed runs per latency point per round, at least ...
    max_repeats: int = 30  # ... and at most
    point_budget_s: float = 1.5  # ... and otherwise as many as fit into this per point and round
    throughput_rows: int = 2000  # real reviews scored for throughput
    throughput_batch_sizes: tuple = (1, 8, 32)  # candidates; each contender keeps its best (tuned on a sample)
    throughput_tune_texts: int = 16  # texts of median length scored per candidate batch size while tuning
    throughput_cap_s: float = 60.0  # stop a throughput block after this long (reported as partial)
    ceiling_shape: tuple = (512, 768, 3072)  # (M, K, N) of the GEMM ceiling micro-graphs
    ceiling_repeats: int = 10
    profile_runs: int = 20  # runs per point when profiling our int8 graph by op type
    quick: bool = False

    @classmethod
    def full_run(cls, **overrides) -> "BenchSettings":
        return cls(**overrides)

    @classmethod
    def quick_run(cls, **overrides) -> "BenchSettings":
        """Tiny model (hidden 32, 2 layers), one round, small throughput sample: seconds, not minutes."""
        values = dict(
            shape=dict(TINY_SHAPE),
            rounds=1,
            settle_s=0.0,
            min_repeats=2,
            max_repeats=5,
            point_budget_s=0.1,
            throughput_rows=64,
            throughput_batch_sizes=(8, 32),
            throughput_tune_texts=8,
            throughput_cap_s=10.0,
            ceiling_shape=(128, 256, 512),
            ceiling_repeats=3,
            profile_runs=3,
            quick=True,
        )
        values.update(overrides)
        return cls(**values)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
