"""A real uvicorn process on loopback: bounded load test, one log line per request, clean SIGTERM shutdown,
slow-loris bodies cut off with a 408, a port in use refused with its own exit status."""

from __future__ import annotations

import concurrent.futures
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serve_support import CHARS, LiveServer

from structbert_lite.serve.protocol import LINGER_IDLE_S, LINGER_S
from structbert_lite.serve.server import EXIT_PORT_IN_USE

READ_TIMEOUT_S = 1.0

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
    """Every time: before the lingering close (serve/protocol.py), 37% of these 413s were lost to a RST."""
    big = b'{"text": "' + b"a" * (3 << 20) + b'"}'  # 3 MiB, over the default 1 MiB limit

    def chunked():
        for start in range(0, len(big), 64 << 10):
            yield big[start:start + (64 << 10)]

    for _ in range(15):
        for content in (big, chunked()):
            response = httpx.post(live_server.url + "/predict", content=content, timeout=30,
                                  headers={"Content-Type": "application/json"})
            assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    assert httpx.post(live_server.url + "/predict", json={"text": "好"}).status_code == 200
    assert "Traceback" not in live_server.log()


def test_a_client_that_stops_sending_after_a_413_is_closed_soon(live_server):
    """The lingering close waits for the rest of the body only while it keeps coming."""
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 << 20) + b"a" * 1000)
        data, elapsed = read_until_closed(sock, limit_s=LINGER_S + 5)
    assert data.startswith(b"HTTP/1.1 413 "), data[:300]
    assert elapsed < LINGER_IDLE_S + 2, elapsed


@pytest.fixture(scope="module")
def impatient_server(tiny_artifact, tmp_path_factory):
    """A live server that waits at most READ_TIMEOUT_S for a request body."""
    server = LiveServer(tiny_artifact, tmp_path_factory.mktemp("impatient") / "server.log",
                        "--read-timeout-s", str(READ_TIMEOUT_S))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection; (data, seconds it took)."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while True:
        chunk = sock.recv(65536)  # socket.timeout here: the server held the connection open
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


@pytest.mark.parametrize("sent", [b"", b'{"text": "', b'{"text": "\xe5\xa5'])
def test_a_half_sent_body_gets_408_and_the_connection_is_closed(impatient_server, sent):
    """Slow-loris: headers promise 100 bytes, the client sends fewer and then nothing."""
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + sent)
        data, elapsed = read_until_closed(sock, limit_s=READ_TIMEOUT_S + 10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data[:300]
    assert b"connection: close" in head.lower()
    answer = json.loads(body)
    assert answer["error"] == "read_timeout" and "--read-timeout-s" in answer["detail"], answer
    assert READ_TIMEOUT_S * 0.9 <= elapsed < READ_TIMEOUT_S + 5, elapsed
    assert httpx.post(impatient_server.url + "/predict", json={"text": "好"}).status_code == 200


def test_a_trickled_body_is_cut_off_at_the_deadline(impatient_server):
    """A body sent a byte at a time, each in time, still has to be complete within the limit."""
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        try:
            while time.monotonic() - start < READ_TIMEOUT_S + 3:
                sock.sendall(b" ")
                time.sleep(0.1)
        except OSError:  # the server closed the connection: what we want
            pass
        data, _ = read_until_closed(sock, limit_s=5)
    assert data.startswith(b"HTTP/1.1 408 "), data[:300]
    assert time.monotonic() - start < READ_TIMEOUT_S + 5


def test_a_prompt_client_is_not_affected_by_the_body_timeout(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        body = json.dumps({"text": "非常喜欢"}).encode()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(READ_TIMEOUT_S / 3)
        sock.sendall(body[:5])
        time.sleep(READ_TIMEOUT_S / 3)
        sock.sendall(body[5:])
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("sent", [b"POST /predict HTTP/1.1\r\nHo", b"GET /health HTTP/1.1\r\n", b"P"])
def test_half_sent_headers_get_408_and_the_connection_is_closed(impatient_server, sent):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        sock.sendall(sent)
        data, elapsed = read_until_closed(sock, limit_s=READ_TIMEOUT_S + 10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head, data[:300]
    assert json.loads(body)["error"] == "read_timeout"
    assert READ_TIMEOUT_S * 0.9 <= elapsed < READ_TIMEOUT_S + 5, elapsed


def test_a_connection_that_sends_nothing_is_closed_silently(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        data, elapsed = read_until_closed(sock, limit_s=READ_TIMEOUT_S + 10)
    assert data == b"" and elapsed < READ_TIMEOUT_S + 5


def test_headers_of_a_second_request_on_a_kept_alive_connection_are_timed_too(impatient_server):
    with socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # ...and nothing more
        data, elapsed = read_until_closed(sock, limit_s=READ_TIMEOUT_S + 10)
    assert data.startswith(b"HTTP/1.1 408 ") and elapsed < READ_TIMEOUT_S + 5, data[:200]


def test_an_idle_kept_alive_client_gets_no_unsolicited_408(impatient_server):
    """Between requests uvicorn's keep-alive timeout (5 s) applies, not the read timeout: a pooled connection
    idle for longer than the read timeout is still answered normally."""
    with httpx.Client(base_url=impatient_server.url, timeout=10) as http:
        for _ in range(2):
            assert http.post("/predict", json={"text": "好"}).status_code == 200
            time.sleep(READ_TIMEOUT_S * 1.5)


@pytest.mark.parametrize("entry", [("-m", "structbert_lite.serve"), ("-m", "structbert_lite.cli", "serve")])
def test_a_port_in_use_exits_with_its_own_status_and_one_line(impatient_server, tiny_artifact, entry):
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, *entry, "--artifact", str(tiny_artifact), "--port", str(impatient_server.port)],
        capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == EXIT_PORT_IN_USE == 5, result
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: port {impatient_server.port} on 127.0.0.1 is already in use (another server is running "
                     "there?): stop it, or pick another port with --port"], result.stderr
    assert elapsed < 10, elapsed
    assert httpx.get(impatient_server.url + "/health").status_code == 200  # the running server is untouched


def test_the_log_has_no_carriage_returns_or_progress_bars(impatient_server):
    httpx.post(impatient_server.url + "/predict", json={"text": "好"})
    log = impatient_server.log()
    assert "\r" not in log and "it/s" not in log, log[-500:]
