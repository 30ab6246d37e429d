"""`score_corpus`: check everything, run an engine, assemble the output. The one entry point of both engines.

    check artifact (manifest hashes) -> check --output -> read every input file once (columns, rows)
    -> local: shards -> worker pool -> verified parts -> assemble      (resumable; parts deleted at the end)
    -> ray:   Ray Data read -> map_batches(actor pool) -> ordered rows -> assemble
    -> output written as temp + rename

Assembling reads each input file again and puts its columns beside the results, one shard of rows at a time,
so the output has the input's rows in the input's order, one output row per input row, and no step holds more
than a few shards of the corpus (docs/scoring.md, "Memory").
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from structbert_lite.artifact import manifest_digest, refuse_a_set, verify_folder
from structbert_lite.constants import thread_count_problem
from structbert_lite.errors import ArtifactError
from structbert_lite.runtime import read_label_names
from structbert_lite.score import ScoreError, outputs
from structbert_lite.score.inputs import Corpus, check_corpus, iter_frames
from structbert_lite.score.shards import SHARD_ROWS, PartStore, Shard, plan_shards
from structbert_lite.score.texts import result_columns

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
MAX_BAD_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class ScoreOptions:
    """One `structbert-lite score` job."""

    artifact: Path  # a published variant folder (verified against its manifest before use)
    input: str  # one file or a glob of shards: CSV/TSV/JSONL/JSON/Parquet
    output: Path  # .parquet/.csv/.tsv/.jsonl: input columns + label, score, prob_*, error
    text_column: str = "text"  # the column holding the texts
    engine: str = "local"  # "local" (worker processes) or "ray" (Ray Data on a cluster)
    ray_address: Optional[str] = None  # ray: a running cluster to join (else $RAY_ADDRESS, else start a local one)
    workers: Optional[int] = None  # processes (local) or actors (ray); default: available CPUs // threads
    threads: Optional[int] = None  # onnxruntime intra-op threads per worker/actor; default 1
    batch_size: int = 32  # texts per model call (length-sorted, dynamic padding); 1 for non-batch-invariant variants
    quiet: bool = False  # no progress bar
    shard_rows: int = SHARD_ROWS  # local: rows per shard (unit of work and of resume)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ScoreError(f"--engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        for name in ("workers", "threads", "batch_size", "shard_rows"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ScoreError(f"--{name.replace('_', '-')} must be a whole number >= 1; got {value!r}")
        for name in ("workers", "threads"):  # the one rule of every command (constants.MAX_THREADS)
            problem = None if getattr(self, name) is None else thread_count_problem(f"--{name}", getattr(self, name))
            if problem:
                raise ScoreError(problem)
        if self.ray_address and self.engine != "ray":
            raise ScoreError("--ray-address needs --engine ray")
        if not self.text_column:
            raise ScoreError("--text-column must not be empty")


@dataclasses.dataclass
class ScoreSummary:
    """What a job did, for the CLI and the bench."""

    output: Path
    engine: str
    workers: int
    threads: int
    rows: int
    scored_rows: int  # rows scored by this run (a resumed run skips finished shards)
    seconds: float  # wall time of the whole job, checks and assembly included
    label_counts: dict
    bad_rows: dict  # error -> count
    bad_examples: list

    @property
    def texts_per_s(self) -> float:
        return self.scored_rows / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        bad = sum(self.bad_rows.values())
        lines = [
            f"Scored {self.rows} rows into {self.output} with the {self.engine} engine "
            f"({self.workers} worker(s) x {self.threads} thread(s)): {self.scored_rows} scored in this run, "
            f"{self.seconds:.1f} s, {self.texts_per_s:.1f} texts/s.",
            "Labels: " + (", ".join(f"{k} {v}" for k, v in sorted(self.label_counts.items())) or "none") + ".",
        ]
        if bad:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.bad_rows.items()))
            lines.append(f"{bad} bad row(s) kept with an error and no label ({reasons}); see the error column.")
        return "\n".join(lines)


class _Tally:
    """Label counts and bad rows over the assembled output."""

    def __init__(self):
        self.labels: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.examples: list = []

    def add(self, path: Path, first_row: int, results: pd.DataFrame) -> None:
        self.labels.update(label for label in results["label"] if not pd.isna(label))
        for row, error in enumerate(results["error"], start=first_row):
            if not pd.isna(error):
                self.errors[error] += 1
                if len(self.examples) < MAX_BAD_EXAMPLES:
                    self.examples.append(f"{path.name} row {row}: {error}")


def check_artifact(folder: Path) -> tuple[list[str], str]:
    """(label names, manifest digest) of a variant folder that verifies against its manifest."""
    folder = Path(folder)
    refuse_a_set(folder)
    problems = verify_folder(folder)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ArtifactError(
            f"refusing to score with {folder}: {'; '.join(problems[:3])}{more}. Point --artifact at a published "
            "variant folder (e.g. artifacts/demo/int8-dynamic), re-published or copied whole"
        )
    return read_label_names(folder), manifest_digest(folder)


def _combine(frame: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    out = frame.reset_index(drop=True)
    for name in results.columns:
        out[name] = results[name].to_numpy()
    return out


def _assemble(corpus: Corpus, writer: outputs.OutputWriter, results_for: Callable, tally: _Tally, rows: int) -> None:
    """Write every input file's rows with their results, ``rows`` at a time, in input order.

    ``results_for(file index, first row, frame)`` gives the result columns of those rows of that file.
    """
    for index, file in enumerate(corpus.files):
        file.ensure_unchanged()
        start = 0
        for frame in iter_frames(file.path, rows, columns=corpus.columns, scan_lines=False):
            if not len(frame):  # a file with no rows
                continue
            if start + len(frame) > file.rows:
                raise ScoreError(f"--input {file.path} changed while it was being scored; run the command again")
            results = results_for(index, start, frame)
            if len(results) != len(frame):
                raise ScoreError(f"internal error: {len(results)} results for rows {start}-{start + len(frame) - 1} "
                                 f"of {file.path}")
            tally.add(file.path, start, results)
            writer.append(_combine(frame, results))
            start += len(frame)
        if start != file.rows:
            raise ScoreError(f"--input {file.path} changed while it was being scored ({start} rows, was {file.rows}); "
                             "run the command again")
        file.ensure_unchanged()


def progress_bar(total: int, initial: int, quiet: bool):
    """A bar in texts with ETA (structbert_lite.console.progress); silent with --quiet or off a terminal."""
    from structbert_lite.console import progress

    return progress(total=total, initial=initial, unit="text", desc="score", quiet=quiet)


def _made_parents(path: Path) -> list[Path]:
    """Create ``path``'s missing parent folders; returns them (deepest first) to remove after a failure."""
    missing = [p for p in Path(path).parents if not p.exists()]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return missing


def score_corpus(options: ScoreOptions) -> ScoreSummary:
    """Score every row of ``options.input`` into ``options.output`` (see the module docstring)."""
    start = time.perf_counter()
    from structbert_lite.variant_choice import resolve_variant

    # a published set: its fastest variant on a CPU like this one (logged); a variant folder: itself
    options = dataclasses.replace(options, artifact=resolve_variant(options.artifact))
    labels, digest = check_artifact(options.artifact)
    output = Path(options.output).expanduser().resolve()
    outputs.output_format(output)
    corpus = check_corpus(options.input, options.text_column, result_columns(labels), output, options.shard_rows)
    schema = outputs.output_schema(corpus.schema, labels)
    if output.exists():
        logger.info("%s exists: it is replaced when the new output is complete", output)
    made = _made_parents(output)
    try:
        if options.engine == "ray":
            summary = _score_ray(options, corpus, output, schema, labels)
        else:
            summary = _score_local(options, corpus, output, schema, labels, digest)
    except BaseException:
        for folder in made:  # deepest first; only folders this run created and left empty
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    summary.seconds = time.perf_counter() - start
    if summary.bad_rows:
        logger.warning("%d bad row(s) kept with an error column and no label: %s; first: %s",
                       sum(summary.bad_rows.values()), dict(summary.bad_rows), "; ".join(summary.bad_examples))
    return summary


def local_parallelism(options: ScoreOptions) -> tuple[int, int]:
    """(workers, threads) of the local engine: default 1 thread per worker and one worker per usable CPU."""
    from structbert_lite.measure.machine import usable_cpus

    threads = options.threads or 1
    workers = options.workers or max(1, usable_cpus() // threads)
    if workers * threads > usable_cpus():
        logger.warning("%d workers x %d threads is more than the %d usable CPUs: expect contention",
                       workers, threads, usable_cpus())
    return workers, threads


def _score_local(options, corpus, output, schema, labels, digest) -> ScoreSummary:
    from structbert_lite.score.local import run_local

    workers, threads = local_parallelism(options)
    plan = {
        "version": 1, "artifact_manifest_sha256": digest, "text_column": corpus.text_column,
        "shard_rows": options.shard_rows, "inputs": [f.fingerprint() for f in corpus.files], "labels": labels,
    }
    shards = plan_shards([f.rows for f in corpus.files], options.shard_rows)
    result_schema = outputs.result_schema(labels)
    tally = _Tally()
    with PartStore(outputs.parts_folder(output), plan, result_schema) as store:
        todo = store.pending(shards)
        done_rows = corpus.rows - sum(s.rows for s in todo)
        if done_rows:
            logger.info("resuming: %d of %d rows are already scored", done_rows, corpus.rows)
        if todo:
            workers = min(workers, len(todo))
            with progress_bar(corpus.rows, done_rows, options.quiet) as bar:
                run_local(corpus, store, todo, options.artifact, workers, threads, options.batch_size, bar)
        with outputs.OutputWriter(output, schema) as writer:
            # the input is read again in shards of the same size: rows start:start+len(frame) are one shard's part
            _assemble(corpus, writer, lambda index, start, frame: store.read(Shard(index, start, start + len(frame))),
                      tally, options.shard_rows)
            writer.commit()
        store.remove()
    return ScoreSummary(output, "local", workers, threads, corpus.rows, corpus.rows - done_rows, 0.0,
                        dict(tally.labels), dict(tally.errors), tally.examples)


def _score_ray(options, corpus, output, schema, labels) -> ScoreSummary:
    try:
        from structbert_lite.score import ray_engine
    except ImportError as exc:
        raise ScoreError(
            f"--engine ray needs Ray Data ({exc.name} is not installed): pip install 'structbert-lite[cluster]'"
        ) from None

    tally = _Tally()
    with ray_engine.RayScorer(options, corpus) as scorer:
        with progress_bar(corpus.rows, 0, options.quiet) as bar, outputs.OutputWriter(output, schema) as writer:
            stream = scorer.stream(bar)
            _assemble(corpus, writer, lambda index, start, frame: stream.take(frame[corpus.text_column].tolist()),
                      tally, options.shard_rows)
            stream.finish()
            writer.commit()
        workers, threads = scorer.workers, scorer.threads
    return ScoreSummary(output, "ray", workers, threads, corpus.rows, corpus.rows, 0.0,
                        dict(tally.labels), dict(tally.errors), tally.examples)
