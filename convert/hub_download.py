"""Download one model snapshot from ModelScope or the Hugging Face Hub, in a child process.

`sources.resolve_source` runs ``python -m structbert_lite.convert.hub_download REQUEST_JSON`` rather than
calling the hub clients in-process, because both clients read their endpoint, cache and retry settings
from the environment *at import time* (``MODELSCOPE_ENDPOINT``, ``MODELSCOPE_DOWNLOAD_MAX_RETRIES``,
``HF_ENDPOINT``, ``HF_HOME`` …), and transformers has usually imported ``huggingface_hub`` long before a
download starts. A child gets our bounded defaults (`DEFAULT_BOUNDS`, never overriding what the user set)
whatever the parent has imported, and it keeps torch out of the way.

The child prints one line ``RESULT_PREFIX + json`` on stdout: ``{"ok": true, "path", "revision", "endpoint"}``
or ``{"ok": false, "kind", "message"}`` where ``message`` is one line naming what failed.

What each hub client checks, and what we add:
  ModelScope (modelscope_hub 0.5): size and sha256 of every file against the repo listing, resume of
    ``*.incomplete`` parts, cache re-verified on every run. We add bounded waits and one-line messages.
  Hugging Face (huggingface_hub 0.36): size only, and when the hub does not answer it returns whatever
    snapshot folder the cache has ("we can't check if all the files are actually there"). We ask the hub
    for the file list with hashes first (no answer: an error, never the cache), check every file's sha256
    (LFS) or git blob id after the download, re-fetch a damaged one once, and delete what still fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Optional

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
MS_DEFAULT_ENDPOINT = "https://modelscope.cn"
# Written into a snapshot folder a failed download left behind (removed by the next successful one), so the
# folder is refused if someone passes it as --model DIR: some of its files may be missing.
INCOMPLETE_MARKER = ".structbert-lite-incomplete"
MS_DEFAULT_REVISION = "master"


class DownloadFailed(Exception):
    """A failure with its one-line message; ``kind`` is not_found | revision_not_found | unavailable |
    integrity | offline | error."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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
    return env


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


# ----------------------------------------------------------------------------------------------- ModelScope
def modelscope_endpoint() -> str:
    return (os.environ.get("MODELSCOPE_ENDPOINT") or MS_DEFAULT_ENDPOINT).rstrip("/")


def download_modelscope(model_id: str, revision: Optional[str], cache_dir: Optional[str]) -> dict:
    # modelscope.snapshot_download is a shim over modelscope_hub's (same arguments, same cache layout, the
    # legacy-cache reuse lives in modelscope_hub's DownloadManager); `import modelscope` also imports torch
    # (~4 s), which a download does not need.
    try:
        from modelscope_hub.compat.snapshot_download import snapshot_download
    except ImportError:  # modelscope < 1.38 has no modelscope_hub
        from modelscope import snapshot_download
    effective = revision or MS_DEFAULT_REVISION
    try:
        path = snapshot_download(model_id, revision=effective, cache_dir=cache_dir, allow_file_pattern=WANTED_PATTERNS)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one classified line
        failure = describe_modelscope_error(exc, model_id, effective)
        mark_incomplete(getattr(exc, "output_dir", None), str(failure))
        raise failure from None
    clear_incomplete(Path(path))
    return {"path": str(path), "revision": effective, "endpoint": modelscope_endpoint()}


def describe_modelscope_error(exc: BaseException, model_id: str, revision: str) -> DownloadFailed:
    """One classified line for anything modelscope raised."""
    from modelscope_hub import errors as ms

    where = f"ModelScope at {modelscope_endpoint()}"
    failed = getattr(exc, "failed_files", None) or {}
    if failed:  # FileDownloadError: every file was tried; name the first failure
        name, cause = next(iter(failed.items()))
        others = f" (and {len(failed) - 1} more file(s))" if len(failed) > 1 else ""
        subject = f"{name} of {model_id!r}{others}"
    else:
        cause, subject = exc, f"the file list of {model_id!r} at revision {revision}"
    chain = _chain(cause)
    if any(isinstance(e, ms.NotExistError) for e in chain) or _status(cause) == 404:
        if failed:
            return DownloadFailed("error", f"{where} lists {name} for {model_id!r} but answers 404 when asked for it")
        return not_found_modelscope(model_id, revision)
    if isinstance(cause, ms.FileSizeMismatchError):
        return DownloadFailed("integrity", f"{where} served {subject} with the wrong size: {one_line(cause, 160)}")
    if isinstance(cause, ms.FileIntegrityError):
        return DownloadFailed("integrity", f"{where} served {subject} with the wrong sha256 on every try "
                              f"({one_line(cause, 120)}); nothing damaged was kept")
    if isinstance(cause, (ms.AuthenticationError, ms.PermissionDeniedError)):
        return DownloadFailed("error", f"{where} refused access to {model_id!r} ({one_line(cause, 120)}): "
                              "log in with `modelscope login` or set MODELSCOPE_API_TOKEN")
    if isinstance(cause, ms.ServerError) or (_status(cause) or 0) >= 500:
        return DownloadFailed("unavailable", f"{where} answered HTTP {_status(cause) or '5xx'} for {subject} on every try "
                              f"({'MODELSCOPE_DOWNLOAD_MAX_RETRIES' if failed else 'MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS'}="
                              f"{os.environ.get('MODELSCOPE_DOWNLOAD_MAX_RETRIES' if failed else 'MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS')})")
    if any(isinstance(e, (ms.RequestTimeoutError, TimeoutError)) or _is_slow(e) for e in chain):
        limit = "MODELSCOPE_DOWNLOAD_TIMEOUT" if failed else "MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS"
        return DownloadFailed("unavailable", f"{where} stopped answering while sending {subject} "
                              f"(idle limit {limit}={os.environ.get(limit)} s)")
    if isinstance(cause, (ms.NetworkError, ConnectionError, OSError)):
        return DownloadFailed("unavailable", f"the connection to {where} failed while fetching {subject} "
                              f"({_connection_detail(chain)}; MODELSCOPE_DOWNLOAD_MAX_RETRIES="
                              f"{os.environ.get('MODELSCOPE_DOWNLOAD_MAX_RETRIES')})")
    return DownloadFailed("error", f"downloading {subject} from {where} failed: {type(cause).__name__}: {one_line(cause, 160)}")


def not_found_modelscope(model_id: str, revision: str) -> DownloadFailed:
    """404: either the id or the revision is wrong; ask the hub which (one more request)."""
    where = f"ModelScope at {modelscope_endpoint()}"
    if revision != MS_DEFAULT_REVISION and _modelscope_repo_exists(model_id):
        return DownloadFailed("revision_not_found", f"{where} has model {model_id!r} but no revision {revision!r}: "
                              "check model.revision in the config (a branch, tag or commit)")
    hint = "check the spelling on modelscope.cn"
    owner, _, name = model_id.partition("/")
    if owner == "damo":
        hint = f"ModelScope moved the damo/ models to iic/: try --model iic/{name}"
    return DownloadFailed("not_found", f"{where} has no model {model_id!r} (HTTP 404): {hint}")


def _modelscope_repo_exists(model_id: str) -> bool:
    try:
        from modelscope_hub.api import HubApi

        HubApi(endpoint=modelscope_endpoint()).get_repo(model_id, "model")
        return True
    except Exception:  # noqa: BLE001 - any failure means we cannot say the repo exists
        return False


def _is_slow(exc: BaseException) -> bool:
    """modelscope_hub's too-slow and read-timeout errors (some say so only in Chinese)."""
    import requests

    text = str(exc).lower()
    return isinstance(exc, requests.Timeout) or "timed out" in text or "速率" in text or "too slow" in text


def _status(exc: BaseException) -> Optional[int]:
    status = getattr(exc, "status_code", None)
    if status is None and getattr(exc, "response", None) is not None:
        status = getattr(exc.response, "status_code", None)
    return int(status) if status else None


def _connection_detail(chain: list[BaseException]) -> str:
    text = " ".join(str(e) for e in chain)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused: is the endpoint right and the hub up?"
    if "Name or service not known" in text or "getaddrinfo" in text or "Errno -2" in text or "Errno -3" in text:
        return "the host name does not resolve: no network, or a wrong endpoint"
    return "the connection dropped mid-transfer"


# ----------------------------------------------------------------------------------------------- Hugging Face
class _BoundedSession:
    """A session factory for huggingface_hub that caps every timeout and the attempts per URL.

    huggingface_hub 0.36 retries a failing request 5 times with 1–8 s waits, and its model-info call has
    no timeout at all (a silent hub hangs it forever). Each request here waits at most ``timeout`` idle
    seconds, and the (retries+2)-th request for one URL raises `HubGaveUp`, which its retry loops do not catch.
    """

    def __init__(self, timeout: float, retries: int):
        import threading

        self.timeout, self.retries = timeout, retries
        self.attempts: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], str] = {}  # the last failure per URL: "HTTP 500", "timed out", ...
        self._lock = threading.Lock()

    def most_retried(self) -> str:
        """The file whose download was retried most (a body that broke off is retried with a new GET)."""
        retried = [(n, url) for (method, url), n in self.attempts.items() if method == "GET" and "/resolve/" in url]
        return max(retried)[1] if retried and max(retried)[0] > 1 else ""

    def __call__(self):
        from huggingface_hub.utils._http import _default_backend_factory

        session = _default_backend_factory()
        send = session.request

        def request(method, url, *args, **kwargs):
            key = (method.upper(), url.split("?")[0])
            with self._lock:
                self.attempts[key] = self.attempts.get(key, 0) + 1
                tries = self.attempts[key]
            if tries > self.retries + 1:
                raise HubGaveUp(key[1], self.retries + 1, self.last.get(key, "no answer"))
            timeout = kwargs.get("timeout")
            kwargs["timeout"] = self.timeout if timeout is None else min(_as_float(timeout), self.timeout)
            try:
                response = send(method, url, *args, **kwargs)
            except Exception as exc:
                self.last[key] = "timed out" if "timed out" in str(exc).lower() else type(exc).__name__
                raise
            if response.status_code >= 500:
                self.last[key] = f"HTTP {response.status_code}"
            return response

        session.request = request
        return session


class HubGaveUp(RuntimeError):
    """Raised by `_BoundedSession` once a URL used up its attempts (not retried by huggingface_hub)."""

    def __init__(self, url: str, tries: int, last: str):
        super().__init__(f"{url} failed {tries} times (last: {last})")
        self.url, self.tries, self.last = url, tries, last


def _as_float(timeout) -> float:
    return max(timeout) if isinstance(timeout, tuple) else float(timeout)


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def download_huggingface(repo_id: str, revision: Optional[str], cache_dir: Optional[str]) -> dict:
    import huggingface_hub
    from huggingface_hub import HfApi, snapshot_download

    timeout = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or DEFAULT_BOUNDS["HF_HUB_DOWNLOAD_TIMEOUT"])
    retries = int(os.environ.get("STRUCTBERT_LITE_HF_MAX_RETRIES") or DEFAULT_BOUNDS["STRUCTBERT_LITE_HF_MAX_RETRIES"])
    bounded = _BoundedSession(timeout, retries)
    huggingface_hub.configure_http_backend(backend_factory=bounded)
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        raise describe_hf_error(exc, repo_id, revision, "the file list") from None
    expected = {s.rfilename: s for s in info.siblings or [] if _wanted(s.rfilename)}
    for attempt in range(2):  # a damaged file is deleted and fetched once more
        bounded.attempts.clear()
        try:
            path = Path(snapshot_download(repo_id, revision=info.sha, cache_dir=cache_dir, allow_patterns=WANTED_PATTERNS))
        except Exception as exc:  # noqa: BLE001
            missing = [name for name in expected if not _hf_cached(repo_id, name, cache_dir, info.sha)]
            what = " and ".join(missing[:3]) if missing else f"revision {info.sha[:12]}"
            failure = describe_hf_error(exc, repo_id, revision, what, bounded.most_retried())
            mark_incomplete(_hf_snapshot_dir(repo_id, info.sha, cache_dir), str(failure))
            raise failure from None
        bad = check_hf_snapshot(path, expected)
        if not bad:
            clear_incomplete(path)
            return {"path": str(path), "revision": info.sha, "endpoint": hf_endpoint()}
        for name in bad:
            discard_hf_file(path / name)
    listed = ", ".join(f"{name} ({problem})" for name, problem in bad.items())
    failure = DownloadFailed("integrity", f"the Hugging Face Hub at {hf_endpoint()} served {listed} for "
                             f"hf:{repo_id} on two tries (deleted from the cache again)")
    mark_incomplete(path, str(failure))
    raise failure


def _hf_snapshot_dir(repo_id: str, sha: str, cache_dir: Optional[str]) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = Path(cache_dir or constants.HF_HUB_CACHE)
    return root / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / sha


def _hf_cached(repo_id: str, name: str, cache_dir: Optional[str], sha: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=sha), str)


def _wanted(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, pattern) for pattern in WANTED_PATTERNS)


def check_hf_snapshot(path: Path, expected: dict) -> dict[str, str]:
    """{file: problem} for every listed file that is missing, the wrong size or has the wrong hash."""
    bad = {}
    for name, sibling in expected.items():
        local = path / name
        if not local.is_file():
            bad[name] = "missing"
            continue
        if sibling.size is not None and local.stat().st_size != sibling.size:
            bad[name] = f"{local.stat().st_size} bytes, the hub lists {sibling.size}"
        elif sibling.lfs is not None and sha256_file(local) != sibling.lfs.sha256:
            bad[name] = "wrong sha256"
        elif sibling.lfs is None and sibling.blob_id and git_blob_sha1(local) != sibling.blob_id:
            bad[name] = "wrong git blob id"
    return bad


def discard_hf_file(link: Path) -> None:
    """Remove a snapshot entry and the cached blob it points to, so the next download fetches it afresh."""
    target = link.resolve() if link.is_symlink() else None
    link.unlink(missing_ok=True)
    if target is not None:
        target.unlink(missing_ok=True)


def describe_hf_error(
    exc: BaseException, repo_id: str, revision: Optional[str], what: str, retried_url: str = ""
) -> DownloadFailed:
    from huggingface_hub import errors as hf

    where = f"the Hugging Face Hub at {hf_endpoint()}"
    if isinstance(exc, hf.RevisionNotFoundError):
        return DownloadFailed("revision_not_found", f"{where} has hf:{repo_id} but no revision {revision!r}: "
                              "check model.revision in the config")
    if isinstance(exc, (hf.RepositoryNotFoundError, hf.GatedRepoError)):
        return DownloadFailed("not_found", f"{where} has no model hf:{repo_id} (or it is private/gated: "
                              "set HF_TOKEN): check the id")
    if isinstance(exc, hf.OfflineModeIsEnabled) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return DownloadFailed("offline", "HF_HUB_OFFLINE is set, so hf: sources cannot be downloaded or checked")
    chain = _chain(exc)
    gave_up = next((e for e in chain if isinstance(e, HubGaveUp)), None)
    url = gave_up.url if gave_up else next((e.request.url for e in chain if getattr(e, "request", None)), retried_url)
    if "/resolve/" in url:
        what = url.rsplit("/resolve/", 1)[1].split("/", 1)[-1]
    status = next((s for s in map(_status, chain) if s), None)
    if gave_up is not None and gave_up.last.startswith("HTTP 5"):
        status = int(gave_up.last.split()[1])
    if status and status >= 500:
        return DownloadFailed("unavailable", f"{where} answered HTTP {status} for {what} of hf:{repo_id} on every try")
    if (gave_up is not None and gave_up.last in ("timed out", "no answer")) or any(_is_slow(e) for e in chain):
        return DownloadFailed("unavailable", f"{where} stopped answering while sending {what} of hf:{repo_id} "
                              f"(idle limit HF_HUB_DOWNLOAD_TIMEOUT={os.environ.get('HF_HUB_DOWNLOAD_TIMEOUT')} s)")
    if gave_up is not None or any(isinstance(e, (ConnectionError, OSError)) for e in chain):
        return DownloadFailed("unavailable", f"the connection to {where} failed while fetching {what} of "
                              f"hf:{repo_id} ({_connection_detail(chain)})")
    return DownloadFailed("error", f"downloading {what} of hf:{repo_id} from {where} failed: "
                          f"{type(exc).__name__}: {one_line(exc, 160)}")


def _chain(exc: BaseException) -> list[BaseException]:
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
        return download_modelscope(hub_id, revision, cache_dir)
    if kind == "huggingface":
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
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main(sys.argv[1:]))
