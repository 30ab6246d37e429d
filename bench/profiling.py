"""Where our int8 graph spends its time: onnxruntime's profiler, aggregated by op type.

Runs only when our `int8-dynamic` loses to a peer somewhere; the report then shows, per losing grid point,
each op type's milliseconds per run and share of the kernel time (the profiler's ``*_kernel_time`` events).
"""

from __future__ import annotations

import json
from pathlib import Path


def aggregate_by_op_type(trace: list[dict], skip_runs: int = 1) -> dict:
    """{op_type: {"ms_per_run", "share", "nodes"}} from an onnxruntime profile trace, largest first.

    The first ``skip_runs`` runs (warm-up: allocations, first-shape work) are left out."""
    model_runs = sorted((e for e in trace if e.get("name") == "model_run"), key=lambda e: e["ts"])
    runs = max(len(model_runs) - skip_runs, 1)
    after = model_runs[skip_runs - 1]["ts"] + model_runs[skip_runs - 1]["dur"] if skip_runs and model_runs else 0
    total_us: dict[str, float] = {}
    nodes: dict[str, set] = {}
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        if event.get("ts", 0) < after:
            continue
        op = event.get("args", {}).get("op_name", "?")
        total_us[op] = total_us.get(op, 0.0) + float(event.get("dur", 0))
        nodes.setdefault(op, set()).add(event["name"])
    grand = sum(total_us.values()) or 1.0
    ordered = sorted(total_us.items(), key=lambda kv: -kv[1])
    return {op: {"ms_per_run": us / 1000.0 / runs, "share": us / grand, "nodes": len(nodes[op])} for op, us in ordered}


def profile_by_op_type(model_path: str, tokenizer_dir: str, threads: int, points: list, runs: int, seed: int,
                       out_dir: str) -> dict:
    """Profile the ONNX graph at ``model_path`` at each (batch, seq_len) point, one session per point
    (run in a fresh worker process through `measure.runner.spawn_call`)."""
    import onnxruntime as ort

    from structbert_lite.measure.feeds import synthetic_feed
    from structbert_lite.runtime import load_tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(Path(tokenizer_dir), 512)
    results = {}
    for batch, seq_len in points:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(out_dir / f"ours-int8-{batch}x{seq_len}")
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        feed = {k: v for k, v in synthetic_feed(tokenizer, batch, seq_len, seed).items() if k in names}
        session.run(None, feed)  # warm-up, left out of the aggregate
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
        results[f"{batch}x{seq_len}"] = aggregate_by_op_type(trace, skip_runs=1)
    return results
