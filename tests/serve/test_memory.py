"""Serve memory under concurrent maximum-size bodies: peak RSS stays within a stated budget.

    .venv/bin/python -m tests.serve.test_memory [--bodies 16]     # prints the figures

Each body is as large as --max-body-bytes allows (1 MiB by default) and holds one text of ~half a million
tokens. The model only ever sees ``max_length`` tokens of it, so the server cuts texts to
`structbert_lite.api.MAX_CHARS_PER_TOKEN` x max_length characters (head, or head and tail) before tokenizing, and
holds at most ``--max-inflight-body-bytes`` of request bodies at once (503 beyond). Measured on a 2-core machine
shared with other jobs (the tiny test model; a real model adds its own, fixed, arena).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.serve.serve_support import LiveServer, build_tiny_variant

MAX_BODY = 1 << 20
PEAK_BUDGET_MB = 200  # peak RSS growth allowed over the idle server, 16 concurrent 1 MiB bodies (b373a54: +3.2 GB at 6)


def max_size_body(kind: str) -> bytes:
    unit = {"latin": "ab ", "cjk": "好"}[kind]
    room = MAX_BODY - len(b'{"text": ""}') - 8
    text = unit * (room // len(unit.encode("utf-8")))
    return json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")


def peak_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def measure(folder: Path, log: Path, bodies: int, kind: str = "latin") -> dict:
    """Start a server, post ``bodies`` maximum-size bodies at once; RSS before, peak and after (MiB)."""
    server = LiveServer(folder, log)
    try:
        server.wait_ready()
        idle, _ = peak_kib(server.proc.pid)
        body = max_size_body(kind)
        with concurrent.futures.ThreadPoolExecutor(bodies) as pool:
            codes = list(pool.map(lambda _: httpx.post(server.url + "/predict", content=body, timeout=600,
                                                       headers={"content-type": "application/json"}).status_code,
                                  range(bodies)))
        after, peak = peak_kib(server.proc.pid)
        return {"bodies": bodies, "body_bytes": len(body), "statuses": sorted(set(codes)), "ok": codes.count(200),
                "idle_mb": round(idle / 1024), "peak_mb": round(peak / 1024), "after_mb": round(after / 1024)}
    finally:
        server.stop()


@pytest.mark.parametrize("bodies", [16])
def test_concurrent_maximum_bodies_keep_rss_within_budget(tmp_path, bodies):
    folder = build_tiny_variant(tmp_path / "tiny")
    figures = measure(folder, tmp_path / "serve.log", bodies)
    assert figures["statuses"] and set(figures["statuses"]) <= {200, 503}, figures
    assert figures["ok"] >= 1, figures  # the budget lets some through; the rest are told to retry
    assert figures["peak_mb"] - figures["idle_mb"] <= PEAK_BUDGET_MB, figures


@pytest.mark.parametrize("truncation", ["head", "head+tail"])
def test_cutting_long_texts_before_tokenizing_keeps_the_answers(tmp_path, truncation):
    from tests.serve.serve_support import CHARS, started_client

    folder = build_tiny_variant(tmp_path / "tiny")
    with started_client(folder, truncation=truncation, cache_size=0) as client:
        engine = client.app.state.serve.engine
        for n in (1500, 40_000):
            text = "".join(CHARS[(i * 7) % len(CHARS)] for i in range(n))
            expected = engine.predict([text])[0]  # the whole text through the tokenizer
            answer = client.post("/predict", json={"text": text}, params={"format": "modelscope"}).json()
            assert max(answer["scores"]) == pytest.approx(max(expected), abs=1e-6)


def test_bodies_over_the_inflight_budget_get_a_503_until_the_others_finish():
    import asyncio

    from structbert_lite.serve.middleware import BodyGuard

    release = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = BodyGuard(app, max_body_bytes=1000, max_inflight_body_bytes=1500, json_paths=frozenset({"/p"}))

    async def post(statuses):
        scope = {"type": "http", "method": "POST", "path": "/p", "headers": [(b"content-length", b"800")]}

        async def receive():
            return {"type": "http.request", "body": b'{"text": "' + b"a" * 788 + b'"}', "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
        await guard(scope, receive, send)

    async def scenario():
        statuses: list = []
        first = asyncio.create_task(post(statuses))
        await asyncio.sleep(0.05)
        await post(statuses)  # 800 + 800 > 1500: refused at once
        release.set()
        await first
        await post(statuses)  # the first one's bytes were given back
        return statuses, guard.inflight_bytes

    statuses, left = asyncio.run(scenario())
    assert statuses == [503, 200, 200] and left == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.serve.test_memory")
    parser.add_argument("--bodies", type=int, nargs="*", default=[6, 16])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        folder = build_tiny_variant(Path(work) / "tiny")
        for n in args.bodies:
            print(json.dumps(measure(folder, Path(work) / f"serve-{n}.log", n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
