"""The one CPU-info reader, library versions, feeds, and the contention meter."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from structbert_lite.cpu import read_cpu_flags, read_cpuinfo
from structbert_lite.measure import feeds, machine

CPUINFO = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 9R14
flags		: fpu sse4_2 avx2 FMA avx512f avx512bw avx512_vnni avx512_bf16

processor	: 1
model name	: AMD EPYC 9R14
flags		: fpu sse4_2 avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""


def test_cpuinfo_is_parsed_once_for_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO, encoding="utf-8")
    info = read_cpuinfo(path)
    assert info.model == "AMD EPYC 9R14" and "fma" in info.flags and "avx512_bf16" in info.flags
    assert read_cpu_flags(path) == set(info.flags)  # quantize/ and serve/ keep their function
    described = machine.machine_info(threads=2, cpuinfo=path)
    assert described["cpu"] == "AMD EPYC 9R14" and described["threads"] == 2
    assert described["cpu_flags"] == ["sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]
    assert read_cpuinfo(tmp_path / "absent") is None and read_cpu_flags(tmp_path / "absent") is None


def test_this_machine_and_its_libraries_are_described():
    info = machine.machine_info(threads=2)
    assert info["cpu"] and info["usable_cpus"] >= 1 and isinstance(info["cpu_flags"], list)
    assert info["load_average"] is None or len(info["load_average"]) == 3
    versions = machine.library_versions()
    assert versions["python"] and versions["onnxruntime"] and versions["numpy"]
    assert machine.peak_rss_mb() > 10


@pytest.mark.skipif(not Path("/proc/self/schedstat").is_file(), reason="the kernel keeps no schedstat")
def test_contention_meter_counts_cpu_and_waits_of_our_threads():
    meter = machine.ContentionMeter()
    go, done = threading.Event(), threading.Event()
    stop = [0.0]

    def spin():
        while time.perf_counter() < stop[0]:
            pass

    def worker_spin():
        go.wait()
        spin()
        done.wait()  # alive until the meter has read it: the meter leaves out threads that ended meanwhile

    worker = threading.Thread(target=worker_spin)
    worker.start()
    with meter:
        started = time.perf_counter()
        stop[0] = started + 0.3
        go.set()
        spin()
        wall = time.perf_counter() - started
    done.set()
    worker.join()
    result = meter.result()
    # At every instant of the block one of the two threads holds the GIL: it is running or waiting for a core.
    assert meter.ran > 0 and meter.ran + meter.waited > 0.6 * wall * 1e9, (meter.ran, meter.waited, wall)
    share = result["run_queue_wait_share"]
    assert share is not None and 0.0 <= share < 1.0


class _Tokenizer:
    """The two methods `synthetic_feed` needs, over a 20-token vocabulary whose first 5 are special."""

    specials = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}

    def get_vocab_size(self):
        return 20

    def token_to_id(self, token):
        return self.specials.get(token)


def test_synthetic_feeds_are_exact_reproducible_and_free_of_special_tokens():
    feed = feeds.synthetic_feed(_Tokenizer(), 3, 16, seed=7)
    ids = feed["input_ids"]
    assert ids.shape == (3, 16) and feed["attention_mask"].all() and not feed["token_type_ids"].any()
    assert (ids[:, 0] == 2).all() and (ids[:, -1] == 3).all() and ids[:, 1:-1].min() >= 5
    np.testing.assert_array_equal(feeds.synthetic_feed(_Tokenizer(), 3, 16, seed=7)["input_ids"], ids)
    assert not np.array_equal(feeds.synthetic_feed(_Tokenizer(), 3, 16, seed=8)["input_ids"], ids)


def test_bucket_feeds_sort_by_tokens_and_pad_dynamically(tiny_pair):
    from structbert_lite.runtime import load_tokenizer

    tokenizer = load_tokenizer(tiny_pair[0], 32)
    texts = ["很好很好很好很好", "好", "不喜欢", "满意的了", "很"]
    batches = feeds.bucket_feeds(tokenizer, texts, 2)
    assert [len(b["input_ids"]) for b in batches] == [2, 2, 1]
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths) and widths[-1] == 10  # [CLS] + 8 + [SEP]
    assert [f["input_ids"].shape for f in feeds.calibration_feeds(tokenizer, texts, 2)] == [(1, 10), (1, 3)]
