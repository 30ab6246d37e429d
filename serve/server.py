"""Command-line entry of the stub: ``structbert-lite serve --artifact DIR`` (the CLI calls these two).

Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), 2 a user error (bad folder or setting),
EXIT_PORT_IN_USE (5) when the port is taken - not 3, which means a failed gate.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import threading
from pathlib import Path

from structbert_lite.errors import ConfigError

from .protocol import header_timeout_protocol
from .settings import ServeSettings, flag_fields

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10  # on SIGTERM, in-flight requests get this long to finish
EXIT_PORT_IN_USE = 5


class PortInUseError(ConfigError):
    """The port is already taken (another server?). The CLI exits EXIT_PORT_IN_USE."""

    exit_code = EXIT_PORT_IN_USE


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--artifact`` and one flag per `ServeSettings` field with a help text (``max_batch`` -> ``--max-batch``)."""
    parser.add_argument("--artifact", required=True, metavar="DIR", type=Path,
                        help="a published set (artifacts/demo: its fastest variant on this CPU) or one of its "
                             "variant folders (artifacts/demo/int8-dynamic)")
    for field in flag_fields():
        parser.add_argument("--" + field.name.replace("_", "-"), type=field.metadata["type"], default=field.default,
                            choices=field.metadata["choices"], help=field.metadata["help"])
    return parser


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(**{field.name: getattr(args, field.name) for field in flag_fields()})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), taken before the model loads: a port in use is found
    in milliseconds, and nothing can take the port between the check and the start. Raises PortInUseError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: rebind after a restart at once
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (another server is running there?): stop it, or pick "
                f"another port with --port"
            ) from None
        hint = "; ports below 1024 need root, pick another --port" if exc.errno == errno.EACCES else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.set_inheritable(True)
    return sock


def serve_from_args(args: argparse.Namespace) -> int:
    """Take the port, verify and load ``args.artifact``, then serve until SIGTERM/SIGINT. Returns the exit status.

    Raises PortInUseError, ConfigError / ArtifactError (the CLI prints them) before anything listens.
    """
    settings = settings_from_args(args)
    sock = bind_socket(settings.host, settings.port)
    try:
        return _serve_on(sock, args.artifact, settings)
    finally:
        sock.close()


def _serve_on(sock: socket.socket, artifact: Path, settings: ServeSettings) -> int:
    import uvicorn

    from .app import create_app
    from .drain import DrainingServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The access log and start-up lines are INFO; keep them even where the caller quietened the root logger.
    for name in ("structbert_lite.serve", "uvicorn"):
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)
    app = create_app(artifact, settings)
    if not is_loopback(settings.host):
        logger.warning("listening on %s: the stub has no authentication; anyone who can reach it can use it",
                       settings.host)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port,
        http=header_timeout_protocol(settings.read_timeout_s),  # uvicorn's h11 + a header-read timeout
        log_config=None,  # keep the process's logging; uvicorn's loggers propagate to it
        access_log=False,  # AccessLog writes the one line per request
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )
    server = DrainingServer(config, sock)  # stops new connections and drains the kernel's queue first (drain.py)
    # uvicorn installs its own SIGTERM/SIGINT handlers while it runs (stop accepting, finish in-flight requests,
    # run the app's shutdown), then re-raises the signal to the handler that was there before, which by default
    # kills the process (status -15) or raises KeyboardInterrupt. After a clean shutdown we exit 0 instead.
    with _exit_zero_on(signal.SIGTERM, signal.SIGINT):
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:  # ours (0, after a clean shutdown) or uvicorn's (1: the server failed to start)
            return exc.code if isinstance(exc.code, int) else 1
    return 0 if server.started else 1


def _raise_exit_zero(signum, frame):
    raise SystemExit(0)


@contextlib.contextmanager
def _exit_zero_on(*signals):
    if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
        yield
        return
    previous = {sig: signal.signal(sig, _raise_exit_zero) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
