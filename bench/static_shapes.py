"""Static shapes against dynamic shapes for an OpenVINO variant, on the real review-length distribution.

Runs in one fresh worker process (``runner.spawn_call``), so every contender below shares the machine's state:

    dynamic         the IR as published ([-1, -1]): compiled once, each new length prepared on first use
    exact-<L>       the IR reshaped to [1, L] and compiled for that one length (answers stay a function of the
                    text alone: a text of length L always meets the same compiled model)
    bucket-<B>      the IR reshaped to [1, B]; a text of length L <= B is padded to B (padding changes OpenVINO
                    int8 answers — DESIGN.md — so buckets are measured, never allowed where invariance is claimed)

One text per call (how a non-batching server calls it). For a sample of lengths (quantiles of the reviews'
token lengths) and every bucket, blocks of dynamic and static runs alternate over ``rounds``; per length the
median ms of each. Compile time and the resident memory each static compiled model adds are measured as
they are built. Corpus figures are estimates: each review's time is the one measured at its (interpolated)
length, summed over the distribution; exact-length totals (compile time, memory) scale the per-model cost
by the number of distinct lengths a corpus needs.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
BUCKETS = (32, 64, 96, 128)


def rss_mb() -> float:
    """This process's resident set now (VmRSS), in MB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def review_feeds(tokenizer, texts: Sequence[str]) -> dict[int, dict]:
    """{token length: one unpadded feed of a real review of that length} (the first review of each length)."""
    from structbert_lite.runtime import encode

    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))]
    feeds = {}
    for text, n in zip(texts, lengths, strict=True):
        if n not in feeds:
            feeds[n] = encode(tokenizer, [text])
    return feeds


def padded(feed: dict, width: int) -> dict:
    """``feed`` (one row) padded to ``width`` tokens with id 0 and attention 0."""
    pad = width - feed["input_ids"].shape[1]
    return {k: np.pad(v, ((0, 0), (0, pad))) for k, v in feed.items()}


def compile_static(read_model, width: int, threads: int) -> tuple[object, float, float]:
    """(infer request of the IR reshaped to [1, width], compile s, MB of resident memory it added)."""
    from structbert_lite.openvino_runtime import compile_ov_model

    before, t0 = rss_mb(), time.perf_counter()
    model = read_model()
    model.reshape({port.get_any_name(): [1, width] for port in model.inputs})
    compiled = compile_ov_model(model, threads)
    request = compiled.create_infer_request()
    return request, time.perf_counter() - t0, rss_mb() - before


def timed_ms(request, feed: dict, repeats: int) -> list[float]:
    request.infer(feed)  # warm-up (for dynamic: prepares this shape's kernels)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        request.infer(feed)
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def interpolate(points: dict[int, float], lengths: Sequence[int]) -> np.ndarray:
    xs = sorted(points)
    return np.interp(np.asarray(lengths, dtype=float), xs, [points[x] for x in xs])


def corpus_estimates(lengths: list[int], dynamic: dict, exact: dict, buckets: dict) -> dict:
    """Texts/s of one-text-per-call scoring over ``lengths``, from per-length medians (ms)."""
    dyn = interpolate(dynamic, lengths)
    ex = interpolate(exact, lengths)
    widths = [min((b for b in buckets if b >= n), default=max(buckets)) for n in lengths]
    bk = np.asarray([buckets[w] for w in widths])
    out = {"dynamic": len(lengths) / (dyn.sum() / 1000), "static_exact": len(lengths) / (ex.sum() / 1000),
           "static_buckets": len(lengths) / (bk.sum() / 1000)}
    out["ratio_exact_vs_dynamic"] = out["static_exact"] / out["dynamic"]
    out["ratio_buckets_vs_dynamic"] = out["static_buckets"] / out["dynamic"]
    out["bucket_padding_share"] = float(np.sum(widths) / np.sum(lengths) - 1.0)  # extra tokens computed
    return out


def first_logit_diff(dynamic_request, static_request, feed: dict, static_feed: dict) -> float:
    a = np.asarray(dynamic_request.infer(feed)[0], dtype=np.float64)
    b = np.asarray(static_request.infer(static_feed)[0], dtype=np.float64)
    return float(np.max(np.abs(a - b)))


def sample_lengths(lengths: list[int], available: Sequence[int]) -> list[int]:
    """The reviews' length quantiles (``QUANTILES``), each moved to the nearest length a review has."""
    avail = np.asarray(sorted(available))
    wanted = np.quantile(np.asarray(lengths), QUANTILES)
    return sorted({int(avail[np.argmin(np.abs(avail - w))]) for w in wanted})


def alternate(dynamic_request, statics: dict, feeds: dict, rounds: int, repeats: int) -> tuple[dict, dict]:
    """({name: [round medians]} of dynamic-<L> and the statics, {name: max |Δlogit| vs dynamic}), blocks
    alternating dynamic / static per name and round."""
    medians: dict[str, list[float]] = {}
    diffs: dict[str, float] = {}
    for _ in range(rounds):
        for name, (request, length, width) in statics.items():
            feed = feeds[length]
            static_feed = feed if width == length else padded(feed, width)
            dynamic_ms = float(np.median(timed_ms(dynamic_request, feed, repeats)))
            medians.setdefault(f"dynamic-{length}", []).append(dynamic_ms)
            medians.setdefault(name, []).append(float(np.median(timed_ms(request, static_feed, repeats))))
            diffs[name] = first_logit_diff(dynamic_request, request, feed, static_feed)
    return medians, diffs


def beyond_noise(dynamic_rounds: list[float], static_rounds: list[float]) -> bool:
    """Static is faster in every round, and its slowest round beats dynamic's fastest."""
    # a length timed beside an exact and a bucket shape has two dynamic timings per round: compare the first of each
    every_round = all(s < d for s, d in zip(static_rounds, dynamic_rounds, strict=False))
    return every_round and max(static_rounds) < min(dynamic_rounds)


def measure_static_shapes(model_dir: str, texts: list[str], threads: int, max_length: int, rounds: int = 3,
                          repeats: int = 10, buckets: Sequence[int] = BUCKETS) -> dict:
    """Dynamic vs static-exact vs static-bucket shapes of the OpenVINO IR in ``model_dir`` (see the module doc)."""
    import openvino as ov

    from structbert_lite.openvino_runtime import compile_ov_model, read_ov_model
    from structbert_lite.runtime import load_tokenizer

    core = ov.Core()
    tokenizer = load_tokenizer(model_dir, max_length)
    feeds = review_feeds(tokenizer, texts)
    lengths = [sum(e.attention_mask) for e in tokenizer.encode_batch(list(texts))]
    before, t0 = rss_mb(), time.perf_counter()
    dynamic = compile_ov_model(read_ov_model(core, model_dir), threads, core=core).create_infer_request()
    dynamic_cost = {"compile_s": time.perf_counter() - t0, "rss_added_mb": rss_mb() - before}
    timed = sample_lengths(lengths, list(feeds))
    buckets = [b for b in buckets if b <= max_length]
    statics, costs = {}, {}
    for name, length, width in [(f"exact-{n}", n, n) for n in timed] + [
            (f"bucket-{b}", max(n for n in feeds if n <= b), b) for b in buckets]:
        request, compile_s, added = compile_static(lambda: read_ov_model(core, model_dir), width, threads)
        statics[name], costs[name] = (request, length, width), {"compile_s": compile_s, "rss_added_mb": added,
                                                                  "text_tokens": length, "compiled_tokens": width}
    medians, diffs = alternate(dynamic, statics, feeds, rounds, repeats)
    per_length = {}
    for name, (_, length, _width) in statics.items():
        dyn, sta = medians[f"dynamic-{length}"], medians[name]
        per_length[name] = {**costs[name], "dynamic_ms": float(np.median(dyn)), "static_ms": float(np.median(sta)),
                            "dynamic_rounds_ms": dyn, "static_rounds_ms": sta,
                            "speedup": float(np.median(dyn) / np.median(sta)), "beyond_noise": beyond_noise(dyn, sta),
                            "max_abs_logit_diff_vs_dynamic": diffs[name]}
    return summarize(lengths, timed, buckets, per_length, dynamic_cost)


def summarize(lengths, timed, buckets, per_length, dynamic_cost) -> dict:
    """The section of results.json: distribution, per-length figures, corpus estimates, costs, verdict."""
    exact = {n: per_length[f"exact-{n}"] for n in timed}
    dyn_ms = {n: v["dynamic_ms"] for n, v in exact.items()}
    estimate = corpus_estimates(lengths, dyn_ms, {n: v["static_ms"] for n, v in exact.items()},
                                {b: per_length[f"bucket-{b}"]["static_ms"] for b in buckets})
    distinct = len(set(lengths))
    mean = lambda key: float(np.mean([v[key] for v in exact.values()]))  # noqa: E731
    wins = all(v["beyond_noise"] for v in exact.values())
    return {
        "reviews": {"texts": len(lengths), "distinct_lengths": distinct, "mean_tokens": float(np.mean(lengths)),
                    "quantiles": {str(q): float(np.quantile(lengths, q)) for q in QUANTILES}},
        "dynamic": dynamic_cost, "timed_lengths": timed, "buckets": list(buckets), "per_shape": per_length,
        "corpus_one_text_per_call": estimate,
        "exact_length_cost": {"compile_s_per_length": mean("compile_s"), "rss_mb_per_length": mean("rss_added_mb"),
                              "compile_s_all_lengths": mean("compile_s") * distinct,
                              "rss_mb_all_lengths": mean("rss_added_mb") * distinct},
        "exact_wins_beyond_noise_at_every_timed_length": wins,
        "buckets_change_answers": any(per_length[f"bucket-{b}"]["max_abs_logit_diff_vs_dynamic"] > 0 for b in buckets),
    }
