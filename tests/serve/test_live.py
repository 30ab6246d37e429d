"""A real uvicorn process on loopback: bounded load test, one log line per request, clean SIGTERM shutdown."""

from __future__ import annotations

import concurrent.futures
import random
import re
import threading
import time

import httpx

from serve_support import CHARS, LiveServer

CLIENTS = 8
REQUESTS = 1000
RSS_GROWTH_LIMIT_KIB = 20 * 1024  # measured growth: under 1 MiB; a leak of ~1 KiB/request would trip it


def make_texts(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(2, 60))) for _ in range(count)]


def run_load(url: str, texts: list[str], total: int) -> list[str]:
    """``total`` requests from CLIENTS threads (keep-alive each); returns the errors seen."""
    errors: list[str] = []
    counter = iter(range(total))
    lock = threading.Lock()

    def client(worker: int) -> None:
        rng = random.Random(worker)
        with httpx.Client(base_url=url, timeout=30) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    if i % 10 == 0:
                        batch = rng.sample(texts, 5)
                        response = http.post("/predict_batch", json={"texts": batch})
                        ok = response.status_code == 200 and len(response.json()) == 5
                    else:
                        response = http.post("/predict", json={"text": rng.choice(texts)})
                        ok = response.status_code == 200 and response.json()["label"] in ("Positive", "Negative")
                    if not ok:
                        errors.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return errors


def test_load_8_clients_1000_requests_no_errors_bounded_memory(live_server):
    texts = make_texts(600)  # more distinct texts than cache hits alone would answer
    assert run_load(live_server.url, texts, 200) == []  # warm every code path and allocator first
    rss_before = live_server.rss_kib()
    start = time.perf_counter()
    errors = run_load(live_server.url, texts, REQUESTS)
    elapsed = time.perf_counter() - start
    rss_after = live_server.rss_kib()
    assert errors == [], errors[:5]
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, (rss_before, rss_after)
    stats = httpx.get(live_server.url + "/stats").json()
    assert stats["cache"]["hits"] > 0 and stats["cache"]["size"] <= stats["cache"]["capacity"]
    assert stats["batching"]["texts"] > 0
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s ({REQUESTS / elapsed:.0f}/s), RSS {rss_before // 1024} -> "
          f"{rss_after // 1024} MiB, batching {stats['batching']}, cache {stats['cache']}")


def test_one_log_line_per_request(live_server):
    marker = f"/no-such-page-{time.time_ns()}"
    httpx.get(live_server.url + marker)
    deadline = time.monotonic() + 5
    while marker not in live_server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in live_server.log().splitlines() if marker in line]
    assert len(lines) == 1
    assert re.search(rf"structbert_lite\.serve\.access: GET {marker} 404 \d+\.\d ms$", lines[0]), lines[0]


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(tiny_artifact, tmp_path):
    server = LiveServer(tiny_artifact, tmp_path / "server.log")
    try:
        server.wait_ready()
        texts = make_texts(64, seed=1)
        results: list = []

        def batch_request():  # in flight (or nearly) when SIGTERM arrives: it must still be answered
            try:
                results.append(httpx.post(server.url + "/predict_batch", json={"texts": texts}, timeout=30).status_code)
            except httpx.HTTPError as exc:
                results.append(repr(exc))

        worker = threading.Thread(target=batch_request)
        worker.start()
        time.sleep(0.2)
        code = server.stop(timeout=20)
        worker.join(30)
    finally:
        server.stop()
    log = server.log()
    assert code == 0, log
    assert "shut down cleanly" in log, log
    assert "Traceback" not in log, log
    assert results == [200], results


def test_huge_bodies_over_a_real_socket_get_413_and_the_server_lives_on(live_server):
    big = b'{"text": "' + b"a" * (3 << 20) + b'"}'  # 3 MiB, over the default 1 MiB limit

    def chunked():
        for start in range(0, len(big), 64 << 10):
            yield big[start:start + (64 << 10)]

    for content in (big, chunked()):
        response = httpx.post(live_server.url + "/predict", content=content, timeout=30,
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert httpx.post(live_server.url + "/predict", json={"text": "好"}).status_code == 200
    assert "Traceback" not in live_server.log()
