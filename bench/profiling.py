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


def profile_by_op_type(spec: dict, threads: int, points: list, runs: int, vocab_size: int, seed: int, out_dir: Path) -> dict:
    """Profile ``spec``'s ONNX graph at each (batch, seq_len) point, one session per point."""
    import onnxruntime as ort

    from structbert_lite.bench.workload import synthetic_feed

    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for batch, seq_len in points:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(out_dir / f"ours-int8-{batch}x{seq_len}")
        session = ort.InferenceSession(spec["model_path"], options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        feed = {k: v for k, v in synthetic_feed(batch, seq_len, vocab_size, seed).items() if k in names}
        session.run(None, feed)  # warm-up, left out of the aggregate
        for _ in range(runs):
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
        results[f"{batch}x{seq_len}"] = aggregate_by_op_type(trace, skip_runs=1)
    return results
