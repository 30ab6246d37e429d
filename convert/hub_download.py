"""Download one model snapshot from ModelScope or the Hugging Face Hub, in a child process.

`sources.resolve_source` runs ``python -m structbert_lite.convert.hub_download REQUEST_JSON`` rather than
calling the hub clients in-process, because both clients read their endpoint, cache and retry settings
from the environment *at import time* (``MODELSCOPE_ENDPOINT``, ``MODELSCOPE_DOWNLOAD_MAX_RETRIES``,
``HF_ENDPOINT``, ``HF_HOME`` …), and transformers has usually imported ``huggingface_hub`` long before a
download starts. A child gets our bounded defaults (`DEFAULT_BOUNDS`, never overriding what the user set)
whatever the parent has imported, and it keeps torch out of the way.

The hub specifics live in `hub_modelscope` and `hub_huggingface` (what each client checks, and what we
add); this module holds what they share and the child's entry point. The child prints one line
``RESULT_PREFIX + json`` on stdout: ``{"ok": true, "path", "revision", "endpoint"}`` or
``{"ok": false, "kind", "message"}`` where ``message`` is one line naming what failed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Optional

from structbert_lite import console

RESULT_PREFIX = "@@structbert-lite-download@@ "
# Files a snapshot needs for conversion; the rest of the repo (images, docs, other formats) is skipped.
WANTED_PATTERNS = ["*.json", "*.bin", "*.safetensors", "*.txt"]

# Our defaults for the hub clients' own settings: a hub that stops answering costs seconds, not the
# libraries' minutes (modelscope's defaults: ~60 s for a 500, ~390 s for a trickling server).
# A variable the user set always wins. See README "Private mirrors and offline use".
DEFAULT_BOUNDS = {
    "MODELSCOPE_API_TIMEOUT": "10",  # library default 60
    "MODELSCOPE_API_CONNECT_TIMEOUT": "5",  # 10
    "MODELSCOPE_API_MAX_RETRIES": "1",  # 5
    "MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS": "10",  # 15
    "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "2",  # 4
    "MODELSCOPE_DOWNLOAD_TIMEOUT": "10",  # 60: idle seconds before a file read is abandoned
    "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "1",  # 5
    "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": "4",  # 60
    "MODELSCOPE_DOWNLOAD_LOW_SPEED_WINDOW_SECONDS": "15",  # 60 (below MODELSCOPE_DOWNLOAD_MIN_BYTES_PER_SECOND)
    "HF_HUB_ETAG_TIMEOUT": "10",  # 10
    "HF_HUB_DOWNLOAD_TIMEOUT": "10",  # 10
    "STRUCTBERT_LITE_HF_MAX_RETRIES": "1",  # ours: huggingface_hub retries 5 times with no variable to change it
}
# Written into a snapshot folder a failed download left behind (removed by the next successful one), so the
# folder is refused if someone passes it as --model DIR: some of its files may be missing.
INCOMPLETE_MARKER = ".structbert-lite-incomplete"


class DownloadFailed(Exception):
    """A failure with its one-line message; ``kind`` is not_found | revision_not_found | unavailable |
    integrity | offline | error."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


LOG_LEVEL_ENV = "STRUCTBERT_LITE_LOG_LEVEL"  # the parent's level: the child logs as the CLI was asked to
HUB_LOGGERS = ("modelscope_hub", "modelscope", "huggingface_hub")


def one_line(text: object, limit: int = 240) -> str:
    """``text`` on one line, shortened at a word boundary (never mid-word) with an ellipsis."""
    flat = " ".join(str(text).split())
    flat = re.sub(r"\[E\d{4}\]\s*", "", flat)  # modelscope_hub's internal error codes mean nothing to users
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"


def child_env(environ: dict[str, str], interactive: bool) -> dict[str, str]:
    """The child's environment: ``environ`` plus `DEFAULT_BOUNDS` where unset; no progress bars when not a TTY."""
    env = dict(environ)
    for key, value in DEFAULT_BOUNDS.items():
        env.setdefault(key, value)
    if not interactive:  # progress bars in a log file are kilobytes of carriage returns
        env.setdefault("TQDM_DISABLE", "1")
        env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    level = logging.getLogger("structbert_lite").getEffectiveLevel()
    if not console.stderr_shows_info():  # `run` (stage lines) or --quiet: the parent's error line sums the retries
        level = max(level, logging.WARNING)
    env[LOG_LEVEL_ENV] = str(level)
    if level >= logging.WARNING:  # --quiet: modelscope_hub configures its own logger from this variable
        env.setdefault("MODELSCOPE_LOG_LEVEL", "ERROR")
    return env


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mark_incomplete(folder: Optional[Path], message: str) -> None:
    if folder is not None and Path(folder).is_dir():
        (Path(folder) / INCOMPLETE_MARKER).write_text(message + "\n", encoding="utf-8")


def clear_incomplete(folder: Path) -> None:
    (Path(folder) / INCOMPLETE_MARKER).unlink(missing_ok=True)


def is_slow(exc: BaseException) -> bool:
    """modelscope_hub's too-slow and read-timeout errors (some say so only in Chinese)."""
    import requests

    text = str(exc).lower()
    return isinstance(exc, requests.Timeout) or "timed out" in text or "速率" in text or "too slow" in text


def status_of(exc: BaseException) -> Optional[int]:
    status = getattr(exc, "status_code", None)
    if status is None and getattr(exc, "response", None) is not None:
        status = getattr(exc.response, "status_code", None)
    return int(status) if status else None


def connection_detail(chain: list[BaseException]) -> str:
    text = " ".join(str(e) for e in chain)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused: is the endpoint right and the hub up?"
    if "Name or service not known" in text or "getaddrinfo" in text or "Errno -2" in text or "Errno -3" in text:
        return "the host name does not resolve: no network, or a wrong endpoint"
    return "the connection dropped mid-transfer"


def exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


# ----------------------------------------------------------------------------------------------- entry point
def run(request: dict) -> dict:
    kind, hub_id = request["kind"], request["id"]
    revision, cache_dir = request.get("revision"), request.get("cache_dir")
    if kind == "modelscope":
        from structbert_lite.convert.hub_modelscope import download_modelscope

        return download_modelscope(hub_id, revision, cache_dir)
    if kind == "huggingface":
        from structbert_lite.convert.hub_huggingface import download_huggingface

        return download_huggingface(hub_id, revision, cache_dir)
    raise DownloadFailed("error", f"unknown hub kind {kind!r}")


def main(argv: list[str]) -> int:
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # whatever the hub clients print goes with their logs, not into our result line
    try:
        result = {"ok": True, **run(json.loads(argv[0]))}
    except DownloadFailed as exc:
        result = {"ok": False, "kind": exc.kind, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the parent turns this into a SourceError
        result = {"ok": False, "kind": "error", "message": f"{type(exc).__name__}: {one_line(exc)}"}
    real_stdout.write(RESULT_PREFIX + json.dumps(result, ensure_ascii=False) + "\n")
    real_stdout.flush()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    import os

    # Run the imported module's main, not this __main__ copy: hub_modelscope/hub_huggingface raise the
    # imported module's DownloadFailed, which this copy's class would not catch.
    from structbert_lite.convert import hub_download

    level = int(os.environ.get(LOG_LEVEL_ENV, logging.INFO))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if level >= logging.WARNING:  # --quiet: the parent's one error line says what the retries ended in
        for name in HUB_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    raise SystemExit(hub_download.main(sys.argv[1:]))
