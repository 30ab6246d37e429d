"""`make score-bench`: texts/s of `structbert-lite score` against the serving stub's /predict_batch loop and one
process, on the 2,000-review bench corpus, for the base-shaped int8 (built as `make bench` builds it) and the
demo model when `artifacts/demo` exists. Writes one JSON file.

    one-process       open_variant(threads=T) + runtime.predict_logits over the corpus, model already loaded
    serve-loop        `structbert-lite serve --threads T`, a client POSTing /predict_batch (64 texts) in a loop
    score-local-WxT   `structbert-lite score` end to end (start, checks, workers, output), W workers x T threads
    score-ray-WxT     the same with --engine ray (a local Ray instance started by score)

Every contender runs in a process of its own, one after another, with the same total thread budget (the usable
CPUs). The N-machine figure is an estimate on paper: the driver's own cost per row (reading every input file
twice, writing the output) is measured here and divides into what one machine scores per second.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

logger = logging.getLogger("structbert_lite.score.bench")  # also when run as __main__

ROWS = 2000
SEED = 20240601
SERVE_BATCH = 64  # the stub's default --max-batch
BENCH_VARIANT = "int8-dynamic"


def build_base_int8(work: Path, quick: bool) -> Path:
    """The base-shaped (tiny with ``quick``) int8-dynamic variant, built by `bench.prepare` + a manifest."""
    import shutil

    from structbert_lite.artifact import write_manifest
    from structbert_lite.bench.prepare import prepare_shape
    from structbert_lite.bench.settings import BenchSettings
    from structbert_lite.reviews import sample_texts

    folder = work / ("tiny-int8" if quick else "base-int8")
    if (folder / "manifest.json").is_file():
        return folder
    settings = (BenchSettings.quick_run if quick else BenchSettings.full_run)(shapes=("base",))
    prep = prepare_shape(settings, "base", work / "prepare", sample_texts(64, settings.seed))
    built = prep.ours[BENCH_VARIANT]
    shutil.copytree(built.path, folder)
    (folder / "README.md").write_text("# bench base-shaped int8 (random weights): speed only\n", encoding="utf-8")
    write_manifest(folder, {
        "name": "bench-base", "variant": BENCH_VARIANT, "quantization": built.meta.get("quantization"),
        "config": {"model": {"max_length": settings.max_length}},
    })
    return folder


def write_corpus(work: Path, rows: int) -> Path:
    from structbert_lite.reviews import sample_texts

    path = work / f"reviews-{rows}.jsonl"
    texts = sample_texts(rows, SEED)
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
                    encoding="utf-8")
    return path


def _texts(corpus: Path) -> list[str]:
    return [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]


def one_process_main() -> None:
    """In a fresh process: load, warm up, score the corpus; print JSON (see `time_one_process`)."""
    artifact, corpus, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    start = time.perf_counter()
    from structbert_lite.runtime import open_variant, predict_logits

    classifier = open_variant(artifact, threads=threads)
    texts = _texts(corpus)
    predict_logits(classifier, texts[:8], 32)  # warm-up
    loaded = time.perf_counter()
    predict_logits(classifier, texts, 32)
    done = time.perf_counter()
    print(json.dumps({
        "texts_per_s": len(texts) / (done - loaded), "end_to_end_texts_per_s": len(texts) / (done - start),
        "load_s": loaded - start, "batch_invariant": classifier.batch_invariant,
    }))


def time_one_process(artifact: Path, corpus: Path, threads: int) -> dict:
    code = "from structbert_lite.score.bench import one_process_main; one_process_main()"
    result = subprocess.run([sys.executable, "-c", code, str(artifact), str(corpus), str(threads)],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "threads": threads}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> list:
    request = urllib.request.Request(url, json.dumps(body).encode("utf-8"), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def time_serve_loop(artifact: Path, corpus: Path, threads: int) -> dict:
    """The stub serving ``artifact``; one client sends the corpus as /predict_batch calls of SERVE_BATCH texts."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "structbert_lite.cli", "serve", "--artifact", str(artifact),
                               "--port", str(port), "--threads", str(threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    return {"error": "the serving stub did not start"}
                time.sleep(0.5)
        texts = _texts(corpus)
        start = time.perf_counter()
        answers = []
        for i in range(0, len(texts), SERVE_BATCH):
            answers += _post(base + "/predict_batch", {"texts": texts[i:i + SERVE_BATCH]})
        seconds = time.perf_counter() - start
        return {"texts_per_s": len(answers) / seconds, "seconds": seconds, "threads": threads, "batch": SERVE_BATCH}
    finally:
        server.terminate()
        server.wait(60)


def time_score(artifact: Path, corpus: Path, out: Path, engine: str, workers: int, threads: int) -> dict:
    """`structbert-lite score` end to end, as a user runs it."""
    output = out / f"scored-{engine}-{workers}x{threads}.parquet"
    command = [
        sys.executable, "-m", "structbert_lite.cli", "score", "--quiet", "--artifact", str(artifact),
        "--input", str(corpus), "--output", str(output), "--engine", engine,
        "--workers", str(workers), "--threads", str(threads),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    rows = sum(1 for _ in corpus.open(encoding="utf-8"))
    return {"texts_per_s": rows / seconds, "seconds": seconds, "workers": workers, "threads": threads,
            "output": str(output)}


def compare_outputs(local: dict, ray_run: dict) -> dict:
    """Whether the two engines wrote the same rows: labels, errors, and the largest probability difference."""
    import numpy as np
    import pandas as pd

    if "output" not in local or "output" not in ray_run:
        return {"error": "an engine failed"}
    a, b = pd.read_parquet(local["output"]), pd.read_parquet(ray_run["output"])
    same_rows = len(a) == len(b) and a["id"].tolist() == b["id"].tolist()
    probs = [c for c in a.columns if c.startswith("prob_")]
    diff = np.nanmax(np.abs(a[probs].to_numpy(float) - b[probs].to_numpy(float))) if same_rows else None
    return {
        "rows": len(a), "same_rows_in_order": same_rows,
        "identical_labels": same_rows and a["label"].fillna("").tolist() == b["label"].fillna("").tolist(),
        "max_abs_prob_diff": None if diff is None else float(diff),
    }


def driver_rows_per_s(corpus: Path, out: Path) -> float:
    """What the driver alone handles per second: check the input, read it again, write the output (no model)."""
    import pandas as pd

    from structbert_lite.score import outputs
    from structbert_lite.score.inputs import check_corpus, iter_frames
    from structbert_lite.score.texts import result_columns

    labels = ["Negative", "Positive"]
    start = time.perf_counter()
    corpus_info = check_corpus(str(corpus), "text", result_columns(labels))
    with outputs.OutputWriter(out / "driver-only.parquet", outputs.output_schema(corpus_info.schema, labels)) as writer:
        for frame in (f for file in corpus_info.files for f in iter_frames(file.path, columns=corpus_info.columns)):
            fake = pd.DataFrame({"label": "Positive", "score": 0.9, "prob_negative": 0.1, "prob_positive": 0.9,
                                 "error": None}, index=frame.index)
            writer.append(pd.concat([frame, fake], axis=1))
        writer.commit()
    return corpus_info.rows / (time.perf_counter() - start)


def bench_model(name: str, artifact: Path, corpus: Path, out: Path, cpus: int, with_ray: bool) -> dict:
    logger.info("score-bench: %s (%s)", name, artifact)
    results = {"artifact": str(artifact), "contenders": {}}
    contenders = results["contenders"]
    contenders["one-process"] = time_one_process(artifact, corpus, cpus)
    contenders["serve-loop"] = time_serve_loop(artifact, corpus, cpus)
    for workers, threads in ((1, cpus), (1, 1), (cpus, 1)):
        contenders[f"score-local-{workers}x{threads}"] = time_score(artifact, corpus, out, "local", workers, threads)
    if with_ray:
        contenders[f"score-ray-{cpus}x1"] = time_score(artifact, corpus, out, "ray", cpus, 1)
        local, ray_run = contenders[f"score-local-{cpus}x1"], contenders[f"score-ray-{cpus}x1"]
        results["engines_agree"] = compare_outputs(local, ray_run)
    for key, value in contenders.items():
        logger.info("  %-20s %s", key, f"{value['texts_per_s']:.1f} texts/s" if "texts_per_s" in value else value)
    return results


def estimate_machines(per_machine: Optional[float], driver: float) -> dict:
    """N machines score N x one machine's texts/s until the driver's own per-row work is the limit."""
    if not per_machine:
        return {}
    return {
        "per_machine_texts_per_s": per_machine,
        "driver_rows_per_s": driver,
        "machines_before_the_driver_limits": int(driver // per_machine),
        "notes": "rows are independent (no communication between actors); past that many machines, shard the "
                 "corpus and run one score job per shard group (or add a driver), and keep the input on storage "
                 "every node reads at >= N x the text bytes per second",
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m structbert_lite.score.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out/score"), help="folder for the JSON and work files")
    parser.add_argument("--rows", type=int, default=ROWS, help="reviews scored per contender")
    parser.add_argument("--demo", type=Path, default=Path("artifacts/demo/int8-dynamic"),
                        help="the demo variant (left out if absent)")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray engine")
    parser.add_argument("--quick", action="store_true", help="a tiny model and 200 rows: a smoke run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("structbert_lite").setLevel(logging.INFO)  # ours; not onnxruntime's quantizer chatter
    from structbert_lite.measure.machine import load_average, machine_info, usable_cpus

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = 200 if args.quick else args.rows
    corpus = write_corpus(out, rows)
    cpus = usable_cpus()
    report = {"command": " ".join(sys.argv), "rows": rows, "cpus": cpus, "machine": machine_info(cpus),
              "load_average_before": load_average(), "models": {}}
    models = {"base-int8": build_base_int8(out, args.quick)}
    if args.demo.is_dir():
        models["demo-int8"] = args.demo.resolve()
    else:
        report["demo"] = f"{args.demo} does not exist (make demo); left out"
    for name, artifact in models.items():
        report["models"][name] = bench_model(name, artifact, corpus, out, cpus, not args.no_ray)
    base = report["models"]["base-int8"]["contenders"]
    best = max((v.get("texts_per_s", 0.0) for k, v in base.items() if k.startswith("score-local")), default=None)
    report["n_machines"] = estimate_machines(best, driver_rows_per_s(corpus, out))
    report["load_average_after"] = load_average()
    path = out / "score-bench.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
