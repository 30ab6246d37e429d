"""The local engine: shards scored by N worker processes, each with its own session of T onnxruntime threads.

With one worker the shards are scored in the command's own process. So is an OpenVINO variant, whatever the
number of workers: N workers become N OpenVINO streams of T threads in this process, fed through an
``AsyncInferQueue`` (OpenVINO's throughput setting; measured against N worker processes on the same thread
budget: docs/scoring.md), one model in memory instead of N; the answers are the same bit for bit.

Otherwise the parent reads the texts (`inputs.TextReader`: the text column, in file order, a chunk at a time),
hands each worker one shard at a time (up to 2 per worker queued) and writes every result it gets back as a
verified part (`shards.PartStore`): what it holds is the shards in flight, whatever the size of the corpus.
Workers are spawned (no fork of a process holding pyarrow/onnxruntime thread pools) and ignore Ctrl-C; the
parent decides.

A worker that dies (killed, out of memory, a crash in native code) breaks the pool: the shards that were
in flight go back to the queue and a fresh pool takes over; finished parts are never redone, so no row is
lost or written twice. A shard that was in flight during ``MAX_ATTEMPTS`` deaths stops the run with an
error (its finished neighbours stay in the parts folder for a resume).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Optional, Sequence

from structbert_lite.errors import StructbertLiteError
from structbert_lite.score import ScoreError
from structbert_lite.score.inputs import Corpus, TextReader
from structbert_lite.score.shards import PartStore, Shard

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # deaths a shard may see in flight before the run gives up
QUEUED_PER_WORKER = 2  # shards submitted per worker: one running, one waiting

_classifier = None
_init_error: Optional[BaseException] = None


def _init_worker(artifact: str, threads: int) -> None:
    """Worker start-up: one session with ``threads`` intra-op threads (and as many tokenizer threads)."""
    global _classifier, _init_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # `tokenizers` would otherwise use every core per worker
    from structbert_lite.runtime import open_variant

    try:
        _classifier = open_variant(Path(artifact), threads=threads)
    except StructbertLiteError as exc:  # re-raised by the first task: a clear error, not a broken pool
        _init_error = exc


def _score_shard(values: list, batch_size: int):
    from structbert_lite.score.texts import score_values

    if _init_error is not None:
        raise _init_error
    return score_values(_classifier, values, batch_size)


def run_local(corpus: Corpus, store: PartStore, shards: Sequence[Shard], artifact: Path, workers: int,
              threads: int, batch_size: int, progress=None) -> None:
    """Score ``shards`` into ``store``; returns when every one has a verified part."""
    texts = TextReader(corpus)
    try:
        streams = openvino_streams(artifact, workers)
        if workers == 1 or streams > 1:
            _run_inline(shards, texts, store, artifact, threads, batch_size, progress, streams)
        else:
            _run_workers(corpus, store, shards, texts, str(artifact), workers, threads, batch_size, progress)
    finally:
        texts.close()


def _run_workers(corpus, store, shards, texts, artifact: str, workers, threads, batch_size, progress) -> None:
    """Shards through pools of worker processes; the shards in flight when a worker dies go to a fresh pool."""
    todo = collections.deque(shards)
    attempts: collections.Counter = collections.Counter()
    context = multiprocessing.get_context("spawn")
    while todo:
        lost = _run_pool(context, todo, texts, store, artifact, workers, threads, batch_size, progress)
        if not lost:
            continue
        attempts.update(lost)
        worst = max(lost, key=lambda s: attempts[s])
        if attempts[worst] >= MAX_ATTEMPTS:
            file = corpus.files[worst.file_index]
            raise ScoreError(
                f"worker processes died {attempts[worst]} times while scoring rows {worst.start}-{worst.stop - 1} of "
                f"{file.path} (out of memory? try fewer --workers); run the same command again to resume"
            )
        logger.warning("a worker process died: %d shard(s) in flight go to a fresh pool", len(lost))
        todo.extendleft(sorted(lost, key=lambda s: (s.file_index, s.start), reverse=True))


def openvino_streams(artifact: Path, workers: int) -> int:
    """Streams for an OpenVINO variant scored by ``workers`` (one process, an AsyncInferQueue); 1 otherwise."""
    from structbert_lite.runtime import variant_engine

    if workers <= 1 or variant_engine(Path(artifact)) != "openvino":
        return 1
    logger.info("%s runs on OpenVINO: %d streams in this process (AsyncInferQueue) instead of %d worker processes",
                Path(artifact).name, workers, workers)
    return workers


def _run_inline(shards, texts, store, artifact, threads, batch_size, progress, streams: int = 1) -> None:
    """One worker (or OpenVINO streams): score in this process (no pool to start; a kill of this process is what
    resume is for)."""
    from structbert_lite.runtime import open_variant
    from structbert_lite.score.texts import score_values

    classifier = open_variant(Path(artifact), threads=threads, streams=streams)
    for shard in shards:
        store.write(shard, score_values(classifier, texts.values(shard.file_index, shard.start, shard.stop),
                                        batch_size))
        if progress is not None:
            progress.update(shard.rows)


def _run_pool(context, todo, texts, store, artifact, workers, threads, batch_size, progress) -> list[Shard]:
    """Run shards from ``todo`` in one pool until it is empty (returns []) or the pool breaks (returns the
    shards that were in flight and not stored)."""
    running: dict = {}
    with ProcessPoolExecutor(workers, context, _init_worker, (artifact, threads)) as pool:
        try:
            while todo or running:
                broken = not _submit_more(pool, todo, running, texts, batch_size, QUEUED_PER_WORKER * workers)
                done = set() if broken else wait(running, return_when=FIRST_COMPLETED)[0]
                broken = broken or any(isinstance(f.exception(), BrokenProcessPool) for f in done)
                if broken:
                    wait(running)  # a broken pool settles every future; finished ones keep their result
                    done = set(running)
                lost = []
                for future in sorted(done, key=lambda f: (running[f].file_index, running[f].start)):
                    shard, error = running.pop(future), future.exception()
                    if error is None:
                        store.write(shard, future.result())
                        if progress is not None:
                            progress.update(shard.rows)
                    elif isinstance(error, BrokenProcessPool):
                        lost.append(shard)
                    else:
                        raise error
                if broken:
                    return lost
        except BaseException:
            _stop_workers(pool)
            raise
    return []


def _submit_more(pool, todo, running: dict, texts, batch_size: int, limit: int) -> bool:
    """Hand shards from ``todo`` to ``pool`` until ``limit`` are in flight; False when the pool broke meanwhile (a
    worker died between two submissions: the shard that was refused goes back to the front of ``todo``)."""
    while todo and len(running) < limit:
        shard = todo.popleft()
        values = texts.values(shard.file_index, shard.start, shard.stop)
        try:
            running[pool.submit(_score_shard, values, batch_size)] = shard
        except BrokenProcessPool:
            todo.appendleft(shard)
            return False
    return True


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """On an error or Ctrl-C, stop the workers now instead of waiting for their current shards."""
    pool.shutdown(wait=False, cancel_futures=True)
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API before 3.14
        process.terminate()
