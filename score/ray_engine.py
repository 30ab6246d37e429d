"""The Ray engine: Ray Data reads the text column, an actor pool scores it, the driver writes the output.

    ray.data.read_datasource(TextColumnDatasource(paths))   the text column, with the local engine's reader
      -> map_batches(ScoreActor, ActorPoolStrategy(size=workers), num_cpus=threads)   one session per actor,
                                                          intra-op threads = the CPUs Ray gave the actor
      -> iter_batches() on the driver, in input order (preserve_order), checked row by row (`texts.row_key`)
      -> assembled with the input columns into one output file (temp + rename), like the local engine

Why not ``read_csv``/``read_json``/``read_parquet``: Ray's CSV/JSON readers (pyarrow) type columns and split
lines differently from the local engine's (pandas ``dtype=str``; a JSONL text that is a number is a bad row, not
a failed read), and ``read_parquet`` plans a ListFiles task that needs a CPU, which never comes when the actor
pool holds every CPU of the cluster (seen here: the job hung). One `FileBasedDatasource` that calls the local
reader, at ``num_cpus=0``, reads every format the same way on both engines. Ray's
`write_*` would write one file per block in no row order; one ordered file is written by the driver instead,
which costs nothing next to the model (a few MB/s of results). Paths, of the inputs and of --artifact, must be
the same on every node (a shared filesystem). A dead actor is restarted and its batch retried by Ray Data
(``max_restarts=-1`` on actor pools); the row check proves nothing was lost or duplicated.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd
import ray
import ray.data
from ray.data.datasource import FileBasedDatasource

from structbert_lite.runtime import read_label_names
from structbert_lite.score import ScoreError
from structbert_lite.score.inputs import Corpus, iter_frames
from structbert_lite.score.texts import result_columns, row_key, score_values

logger = logging.getLogger(__name__)

RAY_BATCH_ROWS = 512  # rows per actor call (as SHARD_ROWS locally): enough to length-sort into good batches
ROW_KEY = "__row_key__"
CONNECT_TIMEOUT_S = 5.0


class TextColumnDatasource(FileBasedDatasource):
    """The text column of each input file, read with `inputs.iter_frames` (the local reader), a block of
    ``RAY_BATCH_ROWS`` at a time."""

    def __init__(self, paths: list[str], text_column: str):
        super().__init__(paths)
        self.text_column = text_column

    def _read_stream(self, f, path: str) -> Iterator[pd.DataFrame]:
        yield from iter_frames(Path(path), RAY_BATCH_ROWS, columns=[self.text_column])


class ScoreActor:
    """One inference session per actor, with as many intra-op threads as the CPUs Ray assigned it."""

    def __init__(self, artifact: str, text_column: str, threads: int, batch_size: int):
        from structbert_lite.runtime import open_variant

        assigned = ray.get_runtime_context().get_assigned_resources().get("CPU")
        self.threads = max(1, int(assigned)) if assigned else threads
        os.environ["RAYON_NUM_THREADS"] = str(self.threads)  # tokenizers: no more threads than our CPUs
        self.classifier = open_variant(Path(artifact), threads=self.threads)
        self.text_column = text_column
        self.batch_size = batch_size

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        values = batch[self.text_column].tolist()
        results = score_values(self.classifier, values, self.batch_size)
        results[ROW_KEY] = np.asarray([row_key(v) for v in values], dtype=np.int64)
        return results


class ResultStream:
    """Result rows from the cluster, taken file by file in input order and checked against the input."""

    def __init__(self, batches: Iterator[pd.DataFrame], columns: list[str], progress=None):
        self._batches = iter(batches)
        self._columns = columns
        self._buffer: list[pd.DataFrame] = []
        self._buffered = 0
        self._progress = progress

    def _pull(self) -> bool:
        batch = next(self._batches, None)
        if batch is None:
            return False
        self._buffer.append(batch)
        self._buffered += len(batch)
        if self._progress is not None:
            self._progress.update(len(batch))
        return True

    def take(self, values: list) -> pd.DataFrame:
        """Results for the next ``len(values)`` rows, whose texts are ``values``."""
        if not values:  # an input file with no rows
            return pd.DataFrame({name: [] for name in self._columns})
        while self._buffered < len(values):
            if not self._pull():
                raise ScoreError(f"the Ray job returned {self._buffered} rows where {len(values)} were expected")
        frame = pd.concat(self._buffer, ignore_index=True) if len(self._buffer) > 1 else self._buffer[0]
        head, rest = frame.iloc[: len(values)], frame.iloc[len(values):]
        self._buffer, self._buffered = ([rest] if len(rest) else []), len(rest)
        expected = np.asarray([row_key(v) for v in values], dtype=np.int64)
        if not np.array_equal(head[ROW_KEY].to_numpy(dtype=np.int64), expected):
            raise ScoreError("the Ray job returned rows out of input order; nothing was written")
        return head.drop(columns=[ROW_KEY]).reset_index(drop=True)

    def finish(self) -> None:
        if self._buffered or self._pull():
            raise ScoreError("the Ray job returned more rows than the input has; nothing was written")


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes (ray.init retries a dead address for over two minutes)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms: let ray.init decide
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ScoreError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head --port 6379` or leave --ray-address out to start a local one"
        ) from None


class RayScorer:
    """A connection to a Ray cluster (joined, or started locally) for one scoring job."""

    def __init__(self, options, corpus: Corpus):
        self.options = options
        self.corpus = corpus
        self.threads = options.threads or 1
        self.workers = 0

    def __enter__(self) -> "RayScorer":
        self.address = self._connect()
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.workers = self.options.workers or max(1, cpus // self.threads)
        if self.workers * self.threads > cpus:
            ray.shutdown()
            raise ScoreError(
                f"the Ray cluster has {cpus} CPU(s); {self.workers} actor(s) x {self.threads} thread(s) do not fit: "
                "lower --workers/--threads or add nodes"
            )
        logger.info("Ray cluster %s: %d CPU(s), %d actor(s) x %d thread(s)",
                    self.address, cpus, self.workers, self.threads)
        return self

    def __exit__(self, *exc) -> None:
        ray.shutdown()

    def _connect(self) -> str:
        address: Optional[str] = self.options.ray_address or os.environ.get("RAY_ADDRESS") or None
        settings = dict(logging_level=logging.WARNING, configure_logging=True)
        if address is None:
            from structbert_lite.measure.machine import usable_cpus

            # "local", not None: None would join any cluster `ray start` left on this machine.
            ray.init(address="local", num_cpus=usable_cpus(), include_dashboard=False, **settings)
            return "local"
        _check_reachable(address)
        try:
            ray.init(address=address, **settings)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise ScoreError(
                f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}. A cluster with token "
                "authentication needs RAY_AUTH_MODE=token here too (and RAY_AUTH_TOKEN_PATH if its token is not in "
                "~/.ray/auth_token); the Ray versions must match"
            ) from None
        return address

    def _read(self):
        paths = [str(f.path) for f in self.corpus.files]
        # num_cpus=0: reads never wait for CPUs the actor pool holds (with every CPU in the pool, they would).
        return ray.data.read_datasource(TextColumnDatasource(paths, self.corpus.text_column), num_cpus=0)

    def stream(self, progress=None) -> ResultStream:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False  # the job's own bar counts texts
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled..."
        dataset = self._read().map_batches(
            ScoreActor,
            fn_constructor_args=(str(Path(self.options.artifact).resolve()), self.corpus.text_column, self.threads,
                                 self.options.batch_size),
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.threads,
            batch_size=RAY_BATCH_ROWS,
            batch_format="pandas",
            udf_modifying_row_count=False,
        )
        columns = result_columns(read_label_names(Path(self.options.artifact)))
        return ResultStream(dataset.iter_batches(batch_format="pandas", batch_size=None), columns, progress)
