"""uvicorn's h11 protocol plus a header-read timeout (slow-loris on the request line and headers).

uvicorn (0.54) closes an idle keep-alive connection after a response, but a connection whose request headers
never complete - a client that connects and sends nothing, or sends ``POST /predict HTTP/1.1\\r\\nHo`` and
stops - is held for ever: no timer runs until a request has started. Here one does: a new connection, and the
first bytes of each later request, start a clock; the request line and headers must be complete within
``timeout_s``, else the connection is closed, with a 408 if part of a request had arrived (a client that sent
nothing is closed silently, as uvicorn's keep-alive timeout does). The body's own deadline is
`middleware.BodyGuard`'s, once the app has the request.

It relies on H11Protocol members that uvicorn has kept since 0.1x: ``data_received``, ``handle_events`` (parses
what arrived; ``self.cycle`` changes when a request's headers are complete), ``cycle.response_complete`` and
``loop``; tests/serve/test_live.py checks the behaviour over a real socket.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


def timeout_response(timeout_s: float) -> bytes:
    body = json.dumps({
        "error": "read_timeout",
        "detail": f"request headers not complete after {timeout_s:g} s; send the whole request promptly "
                  "(the limit is --read-timeout-s)",
    }).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body))
    return head + body


def header_timeout_protocol(timeout_s: float) -> type[H11Protocol]:
    """An H11Protocol subclass (uvicorn.Config(http=...)) that gives request headers ``timeout_s`` seconds."""

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: Optional[object] = None
        _partial = False  # bytes of a request whose headers are not complete yet have arrived

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # between requests: these start the next one
                self._partial = True
                if self._header_timer is None:
                    self._arm()
            super().data_received(data)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a new request's headers are complete: the app (and BodyGuard) has it
                self._disarm()
                self._partial = False

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_s, self._on_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _on_timeout(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            if self._partial:
                logger.warning("closing a connection whose request headers were not complete within %g s", timeout_s)
                self.transport.write(timeout_response(timeout_s))
            self.transport.close()

    return HeaderTimeoutH11Protocol
