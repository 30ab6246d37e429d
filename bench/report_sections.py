"""report.md sections on where the time goes: the GEMM ceilings, TOPS per contender, corpus throughput by
batching, static vs dynamic shapes, and the student against the teacher (rendered from results.json only)."""

from __future__ import annotations

from structbert_lite.bench.compare import NNCF_PEER, THROUGHPUT
from structbert_lite.markdown import fmt, table


def _label(point: str) -> str:
    return "corpus" if point == THROUGHPUT else point.replace("x", " × ")


def ceilings_table(results: dict) -> list[str]:
    ceilings = results.get("ceilings") or {}
    if not ceilings:
        return []
    rows = [[kind, v["op"], " × ".join(str(x) for x in v["shape_mkn"]), fmt(v["gflops_best"] / 1000, ".3f"),
             fmt(v["gflops_median"] / 1000, ".3f")] for kind, v in ceilings.items()]
    return ["## The machine's GEMM ceilings (measured in this run, best over rounds)", ""] + table(
        ["kernel", "op", "M × K × N", "TOPS best", "TOPS median"], rows)


def tops_table(shape: dict) -> list[str]:
    """Achieved TOPS per contender and point, against the fastest GEMM of its precision."""
    contenders = shape["contenders"]
    names = [n for n, e in contenders.items() if e.get("ceiling_share")]
    if not names:
        return []
    points = list(shape["flops"]) + [THROUGHPUT]
    rows = []
    for name in names:
        share = contenders[name]["ceiling_share"]
        ceiling = share.get("ceiling") or {}
        cells = [f"{s['gflops'] / 1000:.3f} ({s['share_of_ceiling']:.0%})" if (s := share.get(p)) else "—"
                 for p in points]
        rows.append([name, f"{ceiling.get('precision', '—')}: {ceiling.get('kernel', '—')} "
                     f"{fmt((ceiling.get('gflops_best') or 0) / 1000, '.3f')}"] + cells)
    return ["### Where the time goes: achieved TOPS (share of the ceiling of its precision)", ""] + table(
        ["contender", "ceiling (TOPS)"] + [_label(p) for p in points], rows)


def corpus_table(shape: dict) -> list[str]:
    """Corpus texts/s of every contender at its batching; exact-length ones also one text per call."""
    rows = []
    for name, entry in shape["contenders"].items():
        tp, alone = entry.get("throughput"), entry.get("throughput_one_text")
        if not tp:
            continue
        gain = tp["texts_per_s"] / alone["texts_per_s"] if alone and alone.get("texts_per_s") else None
        rows.append([name, tp.get("batching", "padded"), str(tp["batch_size"]), fmt(tp["texts_per_s"], ".1f"),
                     f"{tp['texts']}/{tp['of_texts']}" + ("" if tp["complete"] else " (capped)"),
                     fmt(alone["texts_per_s"] if alone else None, ".1f"), fmt(gain, ".2f", "x")])
    if not rows:
        return []
    return ["### Corpus throughput by batching (answers never change with exact-length batches)", ""] + table(
        ["contender", "batching", "max batch", "texts/s", "texts", "one text per call texts/s", "gain"], rows)


def static_shapes_lines(shape: dict) -> list[str]:
    static = shape.get("static_shapes")
    if not static:
        return []
    if static.get("error"):
        return ["### Static vs dynamic shapes (ours-openvino-int8)", "", f"Failed: {static['error']}", ""]
    rows = [[name, str(v["text_tokens"]), str(v["compiled_tokens"]), fmt(v["dynamic_ms"], ".2f"),
             fmt(v["static_ms"], ".2f"), fmt(v["speedup"], ".3f", "x"), fmt(v["beyond_noise"]),
             fmt(v["compile_s"], ".2f"), fmt(v["rss_added_mb"], ".0f"),
             fmt(v["max_abs_logit_diff_vs_dynamic"], ".1e")] for name, v in static["per_shape"].items()]
    est, cost, reviews = static["corpus_one_text_per_call"], static["exact_length_cost"], static["reviews"]
    return ["### Static vs dynamic shapes (ours-openvino-int8, one text per call)", "",
            f"{reviews['texts']} reviews, {reviews['distinct_lengths']} distinct token lengths, mean "
            f"{reviews['mean_tokens']:.1f}. Dynamic IR: compile {static['dynamic']['compile_s']:.2f} s, "
            f"+{static['dynamic']['rss_added_mb']:.0f} MB.", ""] + table(
        ["shape", "text tokens", "compiled tokens", "dynamic ms", "static ms", "speedup", "beyond noise", "compile s",
         "+RSS MB", "max |Δlogit| vs dynamic"], rows) + [
        f"- Corpus estimate, texts/s: dynamic {est['dynamic']:.1f}, static per exact length {est['static_exact']:.1f} "
        f"({est['ratio_exact_vs_dynamic']:.3f}x), static buckets {est['static_buckets']:.1f} "
        f"({est['ratio_buckets_vs_dynamic']:.3f}x, {est['bucket_padding_share']:.0%} padding tokens).",
        f"- Exact lengths for this corpus: {cost['compile_s_all_lengths']:.0f} s of compilation and "
        f"{cost['rss_mb_all_lengths']:.0f} MB ({cost['compile_s_per_length']:.2f} s, "
        f"{cost['rss_mb_per_length']:.0f} MB per length).",
        f"- Exact-length static faster beyond noise at every timed length: "
        f"{fmt(static['exact_wins_beyond_noise_at_every_timed_length'])}; buckets change answers: "
        f"{fmt(static['buckets_change_answers'])} (so they are never used where invariance is claimed).", ""]


def student_lines(results: dict) -> list[str]:
    cross = results.get("cross_shape")
    if not cross:
        return []
    points = list(dict.fromkeys(p for rows in cross.values() for p in rows))
    rows = [[name] + [f"{fmt(r.get('vs_teacher_int8'), '.2f')} / {fmt(r.get('vs_teacher_nncf'), '.2f')}"
                      if (r := per.get(p)) else "—" for p in points] for name, per in cross.items()]
    return ["## The student against the teacher's fastest int8 / the teacher's " + NNCF_PEER, "",
            "Speedup (x) of each student-shape contender over the base shape's fastest int8 of ours at that point, "
            f"and over {NNCF_PEER} of the teacher:", ""] + table(
        ["student contender"] + [_label(p) for p in points], rows)


def shape_sections(results: dict, shape: dict) -> list[str]:
    return tops_table(shape) + corpus_table(shape) + static_shapes_lines(shape)
