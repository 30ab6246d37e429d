"""`score` memory does not grow with the corpus: peak RSS at 10x the rows stays within 1.3x.

    .venv/bin/python -m tests.score.test_score_memory [--rows 30000 300000] [--formats jsonl:parquet csv:csv ...]

Each measurement is one real `structbert-lite score` process (the CLI's `main` in a fresh interpreter, one
worker), whose own high-water mark (``VmHWM``, `structbert_lite.measure.machine.peak_rss_mb`) is its peak RSS.
The input is read, scored and written one shard at a time (`score.inputs.iter_frames`, `score.outputs`), so
the peak is the fixed cost (interpreter, runtime, model) plus a few shards and one Parquet row group of the
output, whatever the number of rows. The suite's version keeps the model work small: 1,000 vs 10,000 rows
that carry a wide column beside a short text (what grew before was the rows held in memory, not the model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from tests.score.score_support import build_variant, make_texts, write_jsonl

GROWTH_LIMIT = 1.3  # peak RSS at 10x the rows / peak RSS at 1x
SUITE_ROWS = (1_000, 10_000)
SUITE_PAYLOAD = 8_000  # characters of the wide column of each row in the suite's corpus
# The CLI's main in a fresh interpreter; its own VmHWM (not the forking parent's) on the last line of stderr.
PEAK_RUNNER = """
import sys
from structbert_lite.cli import main
from structbert_lite.measure.machine import peak_rss_mb
code = main(sys.argv[1:])
print(f"PEAK_RSS_MB {peak_rss_mb():.1f}", file=sys.stderr)
sys.exit(code)
"""


def write_corpus(path: Path, rows: int, payload: int = 0, seed: int = 0) -> Path:
    """``rows`` rows (id, a short text and, with ``payload`` > 0, a wide column of distinct strings) as
    JSONL, CSV or Parquet by ``path``'s extension."""
    texts = make_texts(rows, seed=seed, shortest=1, longest=20)
    filler = "abcdefghij" * (payload // 10 + 1)
    frame = pd.DataFrame({"id": range(rows), "text": texts})
    if payload:
        frame["notes"] = [f"{i:09d}{filler}"[:payload] for i in range(rows)]
    if path.suffix == ".jsonl":
        write_jsonl(path, frame.to_dict(orient="records"))
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def peak_mb(variant: Path, source: Path, output: Path) -> float:
    """Peak RSS (MiB) of one `structbert-lite score --workers 1` over ``source``."""
    command = [sys.executable, "-c", PEAK_RUNNER, "score", "--quiet", "--artifact", str(variant),
               "--input", str(source), "--output", str(output), "--workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return float(done.stderr.strip().splitlines()[-1].split()[-1])


def measure(variant: Path, work: Path, rows: tuple[int, ...], formats: str, payload: int) -> dict:
    """Peak RSS of `score` over corpora of ``rows`` rows, in the formats ``formats`` ("jsonl:parquet")."""
    source_suffix, output_suffix = formats.split(":")
    figures = {"formats": formats, "payload_chars": payload, "peak_mb": {}}
    for count in rows:
        source = write_corpus(work / f"in-{count}.{source_suffix}", count, payload)
        output = work / f"scored-{count}.{output_suffix}"
        figures["peak_mb"][count] = peak_mb(variant, source, output)
        assert len(pd.read_parquet(output) if output_suffix == "parquet" else pd.read_json(output, lines=True)
                   if output_suffix == "jsonl" else pd.read_csv(output)) == count
        source.unlink()
        output.unlink()
    peaks = list(figures["peak_mb"].values())
    figures["ratio"] = round(peaks[-1] / peaks[0], 3)
    return figures


@pytest.mark.parametrize("formats", ["jsonl:parquet", "csv:csv"])
def test_peak_rss_at_ten_times_the_rows_stays_within_1_3x(fp32_variant, tmp_path, formats):
    figures = measure(fp32_variant, tmp_path, SUITE_ROWS, formats, SUITE_PAYLOAD)
    assert figures["ratio"] <= GROWTH_LIMIT, figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.score.test_score_memory")
    parser.add_argument("--rows", type=int, nargs="+", default=[30_000, 300_000])
    parser.add_argument("--formats", nargs="+", default=["jsonl:parquet"],
                        help="input:output suffix pairs, e.g. jsonl:parquet csv:csv parquet:jsonl")
    parser.add_argument("--payload", type=int, default=0, help="characters of an extra wide column per row")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        variant = build_variant(Path(work) / "fp32")
        for formats in args.formats:
            figures = measure(variant, Path(work), tuple(args.rows), formats, args.payload)
            print(json.dumps({**figures, "within_limit": figures["ratio"] <= GROWTH_LIMIT}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
