"""Two small ASGI middlewares: one log line per request, and a guard on request bodies.

``BodyGuard`` runs before FastAPI parses anything, so a body that is too large, not UTF-8 or not JSON
gets a 4xx naming the problem (FastAPI alone answers a non-UTF-8 body with a vague "error parsing the
body", and would read a body of any size into memory), and a body that does not arrive in time gets a 408
and a closed connection (uvicorn has no body-read timeout: a client sending a few bytes now and then, or
stopping half-way, would hold the connection and its task for ever - a slow-loris attack). Headers that never
complete are protocol.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from .http_errors import error_response

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("structbert_lite.serve.access")

# JSON media types FastAPI parses as JSON; anything else on a POST is relabelled as JSON (curl -d sends
# application/x-www-form-urlencoded, and existing clients post JSON without a Content-Type).
JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class AccessLog:
    """Logs ``METHOD PATH STATUS LATENCY ms`` once per HTTP request, when its response is complete."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 0, "logged": False}

        def log():
            if not status["logged"]:
                status["logged"] = True
                elapsed_ms = (time.perf_counter() - start) * 1000
                access_logger.info("%s %s %d %.1f ms", scope["method"], scope["path"], status["code"], elapsed_ms)

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                log()

        try:
            await self.app(scope, receive, send_logged)
        except BaseException:
            status["code"] = status["code"] or 500
            raise
        finally:
            log()


class BodyGuard:
    """Enforces the body size limit on every request; POST bodies to ``json_paths`` must be UTF-8 JSON.

    All requests together hold at most ``max_inflight_body_bytes`` of bodies (from the first byte read until the
    answer is sent): past that a request gets a 503 with Retry-After, so memory does not grow with the number of
    concurrent maximum-size bodies.
    """

    def __init__(self, app, max_body_bytes: int, read_timeout_s: float = 10.0,
                 json_paths: frozenset[str] = frozenset(), max_inflight_body_bytes: int = 1 << 62):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.read_timeout_s = read_timeout_s
        self.json_paths = json_paths
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.inflight_bytes = 0  # one event loop: no lock needed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        held = [0]
        try:
            await self._guarded(scope, receive, send, held)
        finally:
            self.inflight_bytes -= held[0]

    def _take(self, held: list, size: int) -> bool:
        """Count ``size`` more body bytes against the in-flight budget; False (nothing taken) when over it."""
        if self.inflight_bytes + size > self.max_inflight_body_bytes:
            return False
        self.inflight_bytes += size
        held[0] += size
        return True

    async def _busy(self, scope, send):
        detail = ("the server is holding the most request-body bytes it takes at once "
                  f"({self.max_inflight_body_bytes}, --max-inflight-body-bytes); retry shortly")
        return await self._reject(scope, send, 503, "server_busy", detail)

    async def _guarded(self, scope, receive, send, held: list):
        limit = self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            detail = f"request body is {int(declared)} bytes, over the limit of {limit} (--max-body-bytes)"
            return await self._reject(scope, send, 413, "body_too_large", detail)
        reserved = declared is not None and declared.isdigit()
        if reserved and not self._take(held, int(declared)):
            return await self._busy(scope, send)
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                detail = (f"request body not complete after {self.read_timeout_s:g} s ({size} bytes received); "
                          "send the whole body promptly (the limit is --read-timeout-s)")
                logger.warning("closing a connection whose request body stalled (%d bytes in %g s)",
                               size, self.read_timeout_s)
                return await self._reject(scope, send, 408, "read_timeout", detail)
            if message["type"] == "http.disconnect":
                return  # the client went away; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                detail = f"request body is over the limit of {limit} bytes (--max-body-bytes)"
                return await self._reject(scope, send, 413, "body_too_large", detail)
            if size > held[0] and not self._take(held, size - held[0]):
                return await self._busy(scope, send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["method"] == "POST" and scope["path"] in self.json_paths:
            problem = check_json_body(body)
            if problem is not None:
                return await self._reject(scope, send, 400, *problem)
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = dict(scope, headers=headers + [JSON_CONTENT_TYPE])

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for http.disconnect as usual

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(scope, send, status: int, error: str, detail: str) -> None:
        # 413, 408 and 503 close the connection: the rest of the body is never read.
        closing = status in (408, 413, 503)
        headers = {"Connection": "close"} if closing else {}
        if status == 503:
            headers["Retry-After"] = "1"
        response = error_response(status, error, detail, headers=headers or None)
        await response(scope, None, send)


def check_json_body(body: bytes):
    """(error code, message) when ``body`` is not a UTF-8 JSON document, else None."""
    if not body.strip():
        return "empty_body", 'request body is empty; send JSON such as {"text": "..."}'
    try:
        text = body.decode("utf-8-sig")  # a BOM is tolerated, as json.loads(bytes) does
    except UnicodeDecodeError as exc:
        where = f"byte 0x{body[exc.start]:02x} at offset {exc.start}"
        return "invalid_utf8", f"request body is not valid UTF-8: {where} ({exc.reason})"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return "invalid_json", f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except (ValueError, RecursionError) as exc:  # e.g. an int of >4300 digits, or nesting deeper than Python's stack
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        return "invalid_json", f"request body is JSON this server does not accept: {reason}"
    return None
