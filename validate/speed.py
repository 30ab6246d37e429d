"""Latency, throughput, memory and size of the contenders, on one thread budget.

Why blocks and rounds: several onnxruntime sessions in one process interfere — a session's intra-op
threads keep spinning after a run and slow whichever session runs next (DESIGN.md measured 42 ms vs
62 ms for the same graph). So each contender is timed in its own block (warm-up first, then the whole
grid), the blocks are alternated over ``rounds`` with a rotated order, and we report percentiles of the
pooled samples. Peak RSS and cold start come from a fresh process per contender (`probe.py`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from structbert_lite.config import LatencyConfig
from structbert_lite.errors import StructbertLiteError
from structbert_lite.runtime import encode

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MB = 1024 * 1024  # sizes and RSS are reported in MiB ("MB" in configs and reports)
PROBE_MODULE = "structbert_lite.validate.probe"


class MeasurementError(StructbertLiteError):
    """A measurement could not be taken (e.g. the probe process failed)."""


def point_key(batch: int, seq_len: int) -> str:
    return f"{batch}x{seq_len}"


def synthetic_feed(tokenizer, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of exactly ``seq_len`` tokens: [CLS] + random ordinary token ids + [SEP], no padding."""
    vocab_size = tokenizer.get_vocab_size()
    special = {tokenizer.token_to_id(t) for t in SPECIAL_TOKENS} - {None}
    ordinary = np.setdiff1d(np.arange(vocab_size), np.fromiter(special, dtype=np.int64))
    rng = np.random.default_rng(seed)
    ids = rng.choice(ordinary, size=(batch, seq_len)).astype(np.int64)  # (batch, seq)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if cls_id is not None and seq_len >= 2:
        ids[:, 0], ids[:, -1] = cls_id, sep_id
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),  # (batch, seq)
        "token_type_ids": np.zeros_like(ids),  # (batch, seq)
    }


def latency_grid(cfg: LatencyConfig, extra_points: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """(batch, seq_len) points of the config grid plus ``extra_points`` (e.g. the speedup point), sorted."""
    points = {(b, s) for b in cfg.batch_sizes for s in cfg.seq_lengths} | {tuple(p) for p in extra_points}
    return sorted(points)


def _percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples_s, dtype=np.float64) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "samples": int(ms.size),
    }


def _rotations(names: list[str], rounds: int) -> list[list[str]]:
    """Contender order per round, rotated so nobody always runs right after the same neighbour."""
    return [names[r % len(names) :] + names[: r % len(names)] for r in range(rounds)]


def measure_latency(
    contenders: Mapping[str, Any],
    tokenizer,
    cfg: LatencyConfig,
    extra_points: Sequence[tuple[int, int]] = (),
    progress: Callable[..., Any] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{contender: {"BxS": {p50, p95, p99, mean, samples}}}`` in milliseconds.

    ``contenders`` map a name to an object with ``logits_for_encoding(feed)``; all get the same inputs.
    ``progress`` is a tqdm-like factory (``progress(total=..., desc=...)``) or None.
    """
    points = latency_grid(cfg, extra_points)
    feeds = {p: synthetic_feed(tokenizer, *p, seed=i) for i, p in enumerate(points)}
    samples: dict[str, dict[tuple[int, int], list[float]]] = {n: {p: [] for p in points} for n in contenders}
    total = cfg.rounds * len(contenders) * len(points)
    bar = progress(total=total, desc="latency", unit="point") if progress else None
    for order in _rotations(list(contenders), cfg.rounds):
        for name in order:
            run = contenders[name].logits_for_encoding
            for point in points:
                feed = feeds[point]
                for _ in range(cfg.warmup):
                    run(feed)
                for _ in range(cfg.repeats):
                    start = time.perf_counter()
                    run(feed)
                    samples[name][point].append(time.perf_counter() - start)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return {name: {point_key(*p): _percentiles(s) for p, s in per.items()} for name, per in samples.items()}


def bucket_feeds(tokenizer, texts: Sequence[str], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Length-sorted batches of ``texts`` with dynamic padding (what a batching server sends)."""
    ordered = sorted(texts, key=len)
    return [encode(tokenizer, ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size)]


def measure_throughput(
    contenders: Mapping[str, Any],
    feeds: Sequence[dict[str, np.ndarray]],
    rounds: int = 2,
    progress: Callable[..., Any] | None = None,
) -> dict[str, float]:
    """Texts per second over pre-tokenized ``feeds`` (tokenization excluded), median over rounds.

    Each contender gets one untimed warm-up batch per block; blocks are alternated like the latency grid.
    """
    n_texts = sum(len(f["input_ids"]) for f in feeds)
    per_round: dict[str, list[float]] = {name: [] for name in contenders}
    bar = progress(total=rounds * len(contenders), desc="throughput", unit="pass") if progress else None
    for order in _rotations(list(contenders), rounds):
        for name in order:
            run = contenders[name].logits_for_encoding
            if feeds:
                run(feeds[len(feeds) // 2])
            start = time.perf_counter()
            for feed in feeds:
                run(feed)
            elapsed = time.perf_counter() - start
            per_round[name].append(n_texts / elapsed if elapsed > 0 else float("inf"))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {name: float(np.median(values)) for name, values in per_round.items()}


def speedup(latency: Mapping[str, Mapping[str, dict]], baseline: str, contender: str, point: tuple[int, int]) -> float:
    """Baseline p50 / contender p50 at ``point`` (2.0 = twice as fast as the baseline)."""
    key = point_key(*point)
    return latency[baseline][key]["p50"] / latency[contender][key]["p50"]


def onnx_size_bytes(folder: Path) -> int:
    """Bytes of ``model.onnx`` plus any external-data files saved beside it (``model.onnx.data`` etc.)."""
    folder = Path(folder)
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.startswith("model.onnx"))


def torch_size_bytes(model) -> int:
    """Bytes of the baseline's parameters and buffers (what its FP32 checkpoint weighs)."""
    return int(sum(t.numel() * t.element_size() for t in model.state_dict().values()))


def measure_process(
    kind: str,
    path: Path,
    texts: Sequence[str],
    max_length: int = 128,
    threads: int | None = None,
    loader: str | None = None,
    tokenizer_folder: Path | None = None,
    timeout_s: float = 600.0,
    python: str = sys.executable,
) -> dict[str, float]:
    """Peak RSS and cold start of a fresh Python process that loads a contender and answers one batch.

    ``kind`` is ``"onnx"`` (a variant folder; the probe imports only onnxruntime + tokenizers) or
    ``"torch"`` (a checkpoint folder loaded with ``loader``, ``"module:function"``; the default is
    `torch_baseline.DEFAULT_BASELINE_LOADER`). Cold start runs from just before the process is spawned to
    the first answer, so it includes interpreter start, imports and model load.
    Returns ``{peak_rss_mb, cold_start_s, import_s, load_s, first_answer_s, torch_imported}``.
    """
    if kind not in ("onnx", "torch"):
        raise ValueError(f"kind must be 'onnx' or 'torch', got {kind!r}")
    request = {
        "kind": kind,
        "path": str(path),
        "texts": list(texts),
        "max_length": max_length,
        "threads": threads,
        "loader": loader,
        "tokenizer_folder": str(tokenizer_folder) if tokenizer_folder else None,
    }
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    spawned = time.time()
    try:
        proc = subprocess.run(
            [python, "-m", PROBE_MODULE],
            input=json.dumps(request, ensure_ascii=False),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise MeasurementError(f"memory probe for {path} did not finish in {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise MeasurementError(f"memory probe for {path} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise MeasurementError(f"memory probe for {path} printed no result: {proc.stdout[-500:]!r}") from None
    result["cold_start_s"] = result.pop("answered_at") - spawned
    return result
