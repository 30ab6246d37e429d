"""Run reports: ``report.json`` (the contract in DESIGN.md), ``report.md``, a latency PNG, a terminal table.

``report.json`` shape (stable keys; more may be added)::

    {name, created_at, passed, eval: {...}, settings: {...}, machine: {...}, versions: {...}, config: {...},
     baseline: {name, path, metrics: {...}},
     variants: [{name, published, path, required, gate: {passed, checks: [{name, value, limit, passed}]},
                 metrics: {accuracy, agreement, max_abs_logit_diff, speedup, size_bytes, latency_ms,
                           peak_rss_mb, ...}, flipped: [{text, gold, baseline, variant}]}]}

``metrics.latency_ms`` is ``{batch, seq_len, p50, p95, p99}`` at the speedup point; the whole grid is in
``metrics.latency_grid``. Sizes and RSS use MB = 2**20 bytes.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any, Optional

from structbert_lite.artifact import utc_now, write_json
from structbert_lite.files import atomic_path, atomic_write
from structbert_lite.markdown import fmt, table

logger = logging.getLogger(__name__)

MB = 1024 * 1024
REPORT_SCHEMA = 1


# ---------------------------------------------------------------- report.json


def build_report(
    name: str,
    baseline: dict[str, Any],
    variants: list[dict[str, Any]],
    eval_info: dict[str, Any],
    settings: dict[str, Any],
    config: Optional[dict[str, Any]],
    machine: dict[str, Any],
    versions: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the report dict; ``passed`` is true when every required variant passed its gate."""
    return {
        "schema": REPORT_SCHEMA,
        "name": name,
        "created_at": utc_now(),
        "passed": not failed_variants(variants),
        "eval": eval_info,
        "settings": settings,
        "baseline": baseline,
        "variants": variants,
        "machine": machine,
        "versions": versions,
        "config": config,
    }


def write_report_json(report: dict[str, Any], path: Path) -> Path:
    """report.json through a temporary file, so a reader never sees half a report."""
    with atomic_path(path) as tmp:
        write_json(tmp, report)
    return Path(path)


# ---------------------------------------------------------------- formatting


def _mb(value: Any) -> Optional[float]:
    return None if value is None else value / MB


def _rows(report: dict[str, Any]) -> list[tuple[str, dict, Optional[dict]]]:
    """(name, metrics, variant entry or None for the baseline), baseline first."""
    base = report["baseline"]
    return [(base["name"], base["metrics"], None)] + [(v["name"], v["metrics"], v) for v in report["variants"]]


def failed_variants(variants: list[dict], required: bool = True) -> list[str]:
    """Names of the variants that failed (their step or their gate): the required ones, or the optional ones."""
    return [v["name"] for v in variants if not v["gate"]["passed"] and v.get("required", True) is required]


def _steps_up(report: dict[str, Any], name: str) -> list[str]:
    """The steps that made ``name``, its own first, then its parent's... (per the run's config)."""
    variants = {v["name"]: v for v in (report.get("config") or {}).get("variants") or []}
    steps: list[str] = []
    while name in variants and len(steps) <= len(variants):
        steps.append(variants[name].get("step"))
        name = variants[name].get("parent")
    return steps


def _is_student(report: dict[str, Any], name: str) -> bool:
    """Whether ``name`` descends from a distill step: a different, smaller model."""
    return "distill" in _steps_up(report, name)


def fastest_published(report: dict[str, Any], markdown: bool = False) -> Optional[str]:
    """One sentence naming the fastest published variant at the speedup point - and, when that is a distilled
    student, also the fastest of the source model's own variants; None when nothing published was timed."""
    timed = [v for v in report["variants"] if v.get("published") and (v["metrics"] or {}).get("speedup")]
    if not timed:
        return None
    bold = "**" if markdown else ""

    def describe(entry: dict) -> str:
        m = entry["metrics"]
        return (f"{bold}{entry['name']}{bold}, {m['speedup']:.2f}x PyTorch FP32 (accuracy drop "
                f"{fmt(m.get('accuracy_drop'), '+.2f')} pts, agreement {fmt(m.get('agreement'), '.4f')})")

    best = max(timed, key=lambda v: v["metrics"]["speedup"])
    batch, tokens = report["settings"]["speedup_point"]
    text = f"Fastest published variant at {batch}×{tokens} on this CPU: {describe(best)}"
    own = [v for v in timed if not _is_student(report, v["name"])]
    if _is_student(report, best["name"]) and own:
        text += f"; of the source model's own variants: {describe(max(own, key=lambda v: v['metrics']['speedup']))}"
    peer = next((v for v in report["variants"] if (v["metrics"] or {}).get("speedup") and v is not best
                 and _steps_up(report, v["name"])[:1] == ["openvino-int8"]
                 and not _is_student(report, v["name"])), None)
    if peer:  # the strongest outside optimizer, OpenVINO int8 by NNCF, as a variant of the same run
        text += (f"; {best['name']} is {best['metrics']['speedup'] / peer['metrics']['speedup']:.2f}x the source "
                 f"model's OpenVINO + NNCF int8 ({peer['name']}) in the same run")
    verified = (report["settings"].get("speed_trust") or {}).get("verified", True)
    return text + ("." if verified else " (speed not verified).")


def _verdict(entry: Optional[dict]) -> str:
    if entry is None:
        return "baseline"
    optional = "" if entry.get("required", True) else " (optional)"
    if any(c["name"] == "step" for c in entry["gate"]["checks"]):
        return f"✗ step failed, not published{optional}"
    mark = "✓ pass" if entry["gate"]["passed"] else "✗ FAIL"
    return f"{mark}, {'published' if entry['published'] else 'not published' + optional}"


SUMMARY_COLUMNS = (
    "model", "gate", "accuracy", "drop pts", "agreement", "max Δlogit", "p50 ms", "speedup", "vs parent", "size MB",
    "RSS MB", "batch-invariant",
)


def _speed(value: Any, entry: Optional[dict]) -> str:
    text = fmt(value, ".2f", "x")
    if entry is not None and entry["gate"].get("speed_verified") is False and value is not None:
        return text + " (not verified)"
    return text


def _invariant(entry: Optional[dict]) -> str:
    record = (entry or {}).get("batch_invariance")
    if not record:
        return "—"
    batching = record.get("batching") or ("padded" if record["invariant"] else "single")
    return {"equal_length": "equal lengths, bit for bit", "padded": "yes"}.get(batching, "no: served one at a time")


def _summary_cells(report: dict[str, Any]) -> list[list[str]]:
    cells = []
    for name, m, entry in _rows(report):
        latency = (m.get("latency_ms") or {}).get("p50")
        cells.append(
            [
                name,
                _verdict(entry),
                fmt(m.get("accuracy"), ".4f"),
                fmt(m.get("accuracy_drop"), "+.2f"),
                fmt(m.get("agreement"), ".4f"),
                fmt(m.get("max_abs_logit_diff"), ".3g"),
                fmt(latency, ".2f"),
                _speed(m.get("speedup"), entry),
                _speed(m.get("speedup_vs_parent"), entry),
                fmt(_mb(m.get("size_bytes")), ".1f"),
                fmt(m.get("peak_rss_mb"), ".0f"),
                _invariant(entry),
            ]
        )
    return cells


def _failed_checks(report: dict[str, Any]) -> list[str]:
    lines = []
    for v in report["variants"]:
        for c in v["gate"]["checks"]:
            if not c["passed"]:
                detail = c.get("detail") or f"value {fmt(c['value'], '.4g')} vs limit {c['limit']}"
                lines.append(f"✗ {v['name']}: {c['name']} — {detail}")
    return lines


def summary_table(report: dict[str, Any]) -> str:
    """Plain fixed-width gate table (fits logs and exception messages), failed checks listed below it."""
    rows = [list(SUMMARY_COLUMNS)] + _summary_cells(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = _failed_checks(report)
    return "\n".join(lines + ([""] + failed if failed else []))


# ---------------------------------------------------------------- report.md


def render_markdown(report: dict[str, Any], plot_name: Optional[str] = "latency.png") -> str:
    """A report a person can read: gate verdicts, accuracy, speed/memory, latency grid, flips, environment."""
    lines = _intro_lines(report)
    lines += ["## Gate", ""] + table(["variant", "check", "value", "limit", "verdict"], _gate_rows(report))
    lines += ["## Summary", ""] + table(list(SUMMARY_COLUMNS), _summary_cells(report))
    lines += _accuracy_lines(report) + _speed_lines(report) + _grid_lines(report, plot_name)
    lines += _training_lines(report.get("training")) + _bucket_lines(report.get("length_buckets"))
    lines += _flip_lines(report) + _environment_lines(report)
    return "\n".join(lines)


def _intro_lines(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    verdict = "✓ all variants passed the gate" if report["passed"] else "✗ at least one variant failed the gate"
    left_out = failed_variants(report["variants"], required=False)
    if left_out:
        verdict += f"; optional, failed and left out: {', '.join(left_out)}"
    lines = [
        f"# Validation report: {report['name']}", "", f"{verdict}. Created {report['created_at']}.", "",
        f"Every model ran on the same thread budget (**{s.get('threads')}** intra-op threads), truncation at "
        f"{s.get('max_length')} tokens; speedup = baseline p50 / variant p50 at batch {s['speedup_point'][0]} × "
        f"{s['speedup_point'][1]} tokens. MB = 2^20 bytes.", "",
        f"How speed was measured: {s.get('speed_method', '—')}", "",
    ]
    fastest = fastest_published(report, markdown=True)
    if fastest:
        lines += [fastest, ""]
    trust = s.get("speed_trust") or {}
    if trust and not trust.get("verified", True):
        lines += [
            "**Speed not verified**: the machine was busy while speed was measured "
            f"({'; '.join(trust.get('reasons') or []) or 'see speed_trust in report.json'}). The speed checks are "
            "reported but did not decide the gate; re-run on an idle machine to verify them.", "",
        ]
    return lines


def _gate_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for v in report["variants"]:
        if not v["gate"]["checks"]:
            rows.append([v["name"], "(no gate configured)", "—", "—", "✓"])
        for c in v["gate"]["checks"]:
            verdict = "✓" if c["passed"] else "✗"
            if c.get("verified") is False:
                verdict += " (speed not verified)"
            rows.append([v["name"], c["name"], fmt(c["value"], ".4g"), fmt(c["limit"], "g"), verdict])
    return rows


def _accuracy_lines(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, m, _ in _rows(report):
        per = m.get("per_class") or {}
        rows.append(
            [name, fmt(m.get("accuracy"), ".4f"), fmt(m.get("macro_f1"), ".4f")]
            + [f"{fmt(c.get('precision'), '.3f')} / {fmt(c.get('recall'), '.3f')} / {fmt(c.get('f1'), '.3f')}"
               for c in per.values()]
            + [fmt(m.get("accuracy_drop"), "+.2f"), fmt(m.get("agreement"), ".4f"),
               fmt(m.get("max_abs_logit_diff"), ".4g"), fmt(m.get("mean_abs_logit_diff"), ".4g"),
               fmt(m.get("flipped_count"), "d")]
        )
    classes = list((report["baseline"]["metrics"].get("per_class") or {}).keys())
    header = ["model", "accuracy", "macro F1"] + [f"{c} P / R / F1" for c in classes]
    header += ["drop (pts)", "agreement", "max abs Δlogit", "mean abs Δlogit", "flipped"]
    return ["## Accuracy", ""] + table(header, rows)


def _speed_lines(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, m, entry in _rows(report):
        lat = m.get("latency_ms") or {}
        rows.append([
            name, fmt(lat.get("p50"), ".2f"), fmt(lat.get("p95"), ".2f"), fmt(lat.get("p99"), ".2f"),
            _speed(m.get("speedup"), entry), fmt(m.get("throughput_texts_per_s"), ".1f"),
            fmt(_mb(m.get("size_bytes")), ".2f"), fmt(m.get("peak_rss_mb"), ".0f"),
            fmt(m.get("cold_start_s"), ".2f"),
        ])
    header = ["model", "p50 ms", "p95 ms", "p99 ms", "speedup", "throughput texts/s", "size MB", "peak RSS MB",
              "cold start s"]
    return ["## Speed and memory", ""] + table(header, rows) + [
        f"Throughput: eval texts in length-sorted batches of {report['settings'].get('throughput_batch_size')} with "
        "dynamic padding (a variant that is not batch-invariant one text at a time, as served), tokenization excluded. "
        "Peak RSS and cold start: a fresh process that loads the model and answers (ONNX variants load with "
        "onnxruntime + tokenizers only).", "",
    ]


def _grid_lines(report: dict[str, Any], plot_name: Optional[str]) -> list[str]:
    seqs = sorted({row["seq_len"] for _, m, _ in _rows(report) for row in m.get("latency_grid") or []})
    rows = []
    for name, m, _ in _rows(report):
        by_batch: dict[int, dict[int, float]] = {}
        for row in m.get("latency_grid") or []:
            by_batch.setdefault(row["batch"], {})[row["seq_len"]] = row["p50"]
        rows += [[name, str(batch)] + [fmt(per_seq.get(sq), ".2f") for sq in seqs]
                 for batch, per_seq in sorted(by_batch.items())]
    lines = ["## Latency grid (p50 ms)", ""] + table(["model", "batch"] + [f"{sq} tok" for sq in seqs], rows)
    return lines + ([f"![latency vs sequence length]({plot_name})", ""] if plot_name else [])


def _training_lines(training: Optional[dict]) -> list[str]:
    """One row per distilled student: its size against the teacher's, data, training and the teacher-label cache."""
    rows = []
    for name, r in (training or {}).items():
        s, t, data, fit, cache = r["student"], r["teacher"], r["data"], r["training"], r["teacher_logits"]
        rows.append([
            name, f"{s['layers']} × {s['hidden_size']} ({s['parameters'] / 1e6:.1f} M)",
            f"{t['layers']} × {t['hidden_size']} ({t['parameters'] / 1e6:.1f} M)", str(r["init"].get("init")),
            f"{data['train_rows']} + {data['validation_rows']} ({data['removed_in_eval_set']} eval texts removed)",
            f"{fit['best_epoch']} of {fit['epochs_run']}", fmt(fit.get("validation_agreement"), ".4f"),
            f"{fit.get('seconds') or 0:.0f} s ({fit['device']})",
            f"{cache['scored_with']}, {cache['cache']} ({cache['seconds']:.0f} s)",
        ])
    if not rows:
        return []
    header = ["student", "size", "teacher", "init", "transfer texts (train + validation)", "best epoch",
              "validation agreement", "training time", "teacher logits (cache)"]
    return ["## Distilled students", ""] + table(header, rows) + [
        "Accuracy, agreement and speed of each student variant against the teacher are in the tables above; a "
        "published student folder holds its checkpoint, `training.json` and `training-curve.png`.", "",
    ]


def _flip_lines(report: dict[str, Any]) -> list[str]:
    flips = [v for v in report["variants"] if v.get("flipped")]
    lines = ["## Label flips vs baseline (first ones)", ""] if flips else []
    for v in flips:
        lines += [f"### {v['name']} ({v['metrics'].get('flipped_count')} flipped)", ""]
        lines += table(["text", "gold", "baseline", "variant"],
                           [[f["text"], f["gold"], f["baseline"], f["variant"]] for f in v["flipped"]])
    return lines


def _environment_lines(report: dict[str, Any]) -> list[str]:
    ev, mach = report["eval"], report["machine"]
    bad = ev.get("bad_rows") or {}
    sampled = ev.get("sampled")
    return [
        "## Eval set", "",
        f"- source: `{ev.get('source')}`",
        f"- rows: {ev.get('used_rows')} used of {ev.get('total_rows')} "
        f"({bad.get('empty_text', 0)} empty text, {bad.get('unknown_label', 0)} unknown label dropped)",
        f"- labels: {ev.get('label_counts')}",
        *([f"- sampled: {sampled['rows']} of {sampled['from_rows']} usable rows (label-stratified, seed "
           f"{sampled['seed']}; eval.limit)"] if sampled else []),
        *([f"- note: {ev['note']}"] if ev.get("note") else []),
        "", "## Machine and versions", "",
        f"- CPU: {mach.get('cpu')} ({mach.get('logical_cpus')} logical CPUs; "
        f"flags: {', '.join(mach.get('cpu_flags') or []) or 'n/a'})",
        f"- threads per model: {mach.get('threads')}",
        "- " + ", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items() if v),
        "",
    ]


def _bucket_lines(buckets: Optional[dict]) -> list[str]:
    """Accuracy and agreement by untruncated token length; the share of texts truncation cut."""
    if not buckets:
        return []
    names = sorted({n for b in buckets["buckets"] for n in (b.get("variants") or {})})
    rows = []
    for b in buckets["buckets"]:
        cells = [b["bucket"], str(b["rows"]), fmt(b.get("baseline_accuracy"), ".4f")]
        for n in names:
            v = (b.get("variants") or {}).get(n) or {}
            cells.append(f"{fmt(v.get('accuracy'), '.4f')} / {fmt(v.get('agreement'), '.4f')}")
        rows.append(cells)
    lines = ["## By token length", "",
             f"{buckets['truncated_rows']} eval texts ({buckets['truncated_share']:.1%}) are longer than "
             f"{buckets['max_length']} tokens and were truncated.", ""]
    lines += table(["tokens", "rows", "baseline accuracy"] + [f"{n} accuracy / agreement" for n in names], rows)
    truncation = buckets.get("truncation")
    if truncation:
        lines += [f"On the {truncation['rows']} truncated texts, the baseline's accuracy keeping the start: "
                  f"{truncation['head']:.4f}; keeping the start and the end (model.truncation: head+tail): "
                  f"{truncation['head+tail']:.4f}.", ""]
    return lines


def write_report_md(report: dict[str, Any], path: Path, plot_name: Optional[str] = "latency.png") -> Path:
    text = render_markdown(report, plot_name)
    return atomic_write(path, text)


# ---------------------------------------------------------------- plot


def plot_latency(report: dict[str, Any], path: Path) -> Path:
    """PNG: p50 latency vs sequence length, one panel per batch size, one line per model (baseline dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(report)
    batches = sorted({r["batch"] for _, m, _ in rows for r in m.get("latency_grid") or []}) or [1]
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        for name, m, entry in rows:
            points = sorted((r["seq_len"], r["p50"]) for r in m.get("latency_grid") or [] if r["batch"] == batch)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o", linestyle="--" if entry is None else "-", label=name)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("p50 latency (ms)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{report['name']}: p50 latency (threads per model: {report['settings'].get('threads')})")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())
