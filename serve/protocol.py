"""uvicorn's h11 protocol plus a header-read timeout (slow-loris on the request line and headers) and a
lingering close.

uvicorn (0.54) closes an idle keep-alive connection after a response, but a connection whose request headers
never complete - a client that connects and sends nothing, or sends ``POST /predict HTTP/1.1\\r\\nHo`` and
stops - is held for ever: no timer runs until a request has started. Here one does: a new connection, and the
first bytes of each later request, start a clock; the request line and headers must be complete within
``timeout_s``, else the connection is closed, with a 408 if part of a request had arrived (a client that sent
nothing is closed silently, as uvicorn's keep-alive timeout does). The body's own deadline is
`middleware.BodyGuard`'s, once the app has the request.

Lingering close: a response sent before the request body has all arrived (a 413 for a body over the limit,
a 408) closes the connection. Closing a socket whose receive buffer still holds unread bytes makes the kernel
send a RST, and a RST can destroy the response the client has not read yet: the client sees "peer closed
connection" instead of the 413 (37% of 3 MiB posts over loopback did). So such a close first shuts down our
sending side (the response is flushed, then FIN), then reads and discards what the client still sends, and
closes when the client closes, after LINGER_IDLE_S without data, or after LINGER_S in all (nginx's
lingering_close, with shorter limits).

It relies on H11Protocol members that uvicorn has kept since 0.1x: ``data_received``, ``handle_events`` (parses
what arrived; ``self.cycle`` changes when a request's headers are complete), ``cycle.response_complete`` and
``loop``; tests/serve/test_live.py checks the behaviour over a real socket.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

LINGER_S = 3.0  # at most this long reading (and discarding) the rest of a request body after a closing response
LINGER_IDLE_S = 1.0  # ...and closed sooner once the client has sent nothing for this long


def timeout_response(timeout_s: float) -> bytes:
    body = json.dumps({
        "error": "read_timeout",
        "detail": f"request headers not complete after {timeout_s:g} s; send the whole request promptly "
                  "(the limit is --read-timeout-s)",
    }).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n" % len(body))
    return head + body


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's H11Protocol with the header-read timeout and the lingering close (see the module doc)."""

    timeout_s = 10.0  # set per server by header_timeout_protocol
    _header_timer: Optional[object] = None
    _partial = False  # bytes of a request whose headers are not complete yet have arrived
    _raw = None  # the real transport; uvicorn gets a LingeringTransport over it
    _lingering = False
    _linger_timer: Optional[object] = None
    _linger_deadline = 0.0

    def connection_made(self, transport) -> None:
        self._raw = transport
        super().connection_made(LingeringTransport(transport, self))
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # the rest of a body we already answered: discarded
            self._arm_linger()
            return
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
        self._header_timer = self.loop.call_later(self.timeout_s, self._on_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        if self._partial:
            logger.warning("closing a connection whose request headers were not complete within %g s", self.timeout_s)
            self.transport.write(timeout_response(self.timeout_s))
        self.transport.close()

    def close_lingering(self) -> None:
        """Close now, or - while the client is still sending the request body - linger first."""
        raw = self._raw
        if self._lingering or raw.is_closing():
            return
        if self.conn.their_state is not h11.SEND_BODY or not raw.can_write_eof():
            raw.close()
            return
        self._lingering = True
        self._disarm()
        self._linger_deadline = self.loop.time() + LINGER_S
        raw.write_eof()  # the response is flushed first, then our FIN
        raw.resume_reading()
        self._arm_linger()

    def _arm_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        delay = min(LINGER_IDLE_S, self._linger_deadline - self.loop.time())
        self._linger_timer = self.loop.call_later(max(delay, 0.0), self._raw.close)


def header_timeout_protocol(timeout_s: float) -> type[H11Protocol]:
    """The protocol class for uvicorn.Config(http=...): request headers get ``timeout_s`` seconds."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"timeout_s": timeout_s})


class LingeringTransport:
    """The transport as uvicorn sees it: ``close()`` goes through the protocol's lingering close, and a lingering
    connection counts as closing; everything else is the real transport's."""

    def __init__(self, transport, protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol._lingering or self._transport.is_closing()

    def close(self) -> None:
        self._protocol.close_lingering()
