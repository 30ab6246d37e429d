"""Hugging Face Hub downloads for `hub_download` (run in its child process).

huggingface_hub 0.36 checks sizes only, retries 5 times with no setting to change it, has no timeout on its
file-list request, and when the hub does not answer returns whatever snapshot folder the cache holds ("we
can't check if all the files are actually there"). So we ask the hub for the file list with hashes first (no
answer: an error, never the cache), bound every request (`_BoundedSession`), check every file's sha256 (LFS)
or git blob id after the download, re-fetch a damaged file once, and delete what still fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from structbert_lite.artifact import sha256_file
from structbert_lite.convert.hub_download import (
    DEFAULT_BOUNDS,
    WANTED_PATTERNS,
    DownloadFailed,
    clear_incomplete,
    connection_detail,
    exception_chain,
    git_blob_sha1,
    is_slow,
    mark_incomplete,
    one_line,
    status_of,
)


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
    except Exception as exc:  # noqa: BLE001 - describe_hf_error classifies any failure into one line
        raise describe_hf_error(exc, repo_id, revision, "the file list") from None
    expected = {s.rfilename: s for s in info.siblings or [] if _wanted(s.rfilename)}
    for _attempt in range(2):  # a damaged file is deleted and fetched once more
        bounded.attempts.clear()
        try:
            path = Path(snapshot_download(repo_id, revision=info.sha, cache_dir=cache_dir,
                                          allow_patterns=WANTED_PATTERNS))
        except Exception as exc:  # noqa: BLE001 - describe_hf_error classifies any failure into one line
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
    chain = exception_chain(exc)
    gave_up = next((e for e in chain if isinstance(e, HubGaveUp)), None)
    url = gave_up.url if gave_up else next((e.request.url for e in chain if getattr(e, "request", None)), retried_url)
    if "/resolve/" in url:
        what = url.rsplit("/resolve/", 1)[1].split("/", 1)[-1]
    status = next((s for s in map(status_of, chain) if s), None)
    if gave_up is not None and gave_up.last.startswith("HTTP 5"):
        status = int(gave_up.last.split()[1])
    if status and status >= 500:
        return DownloadFailed("unavailable", f"{where} answered HTTP {status} for {what} of hf:{repo_id} on every try")
    if (gave_up is not None and gave_up.last in ("timed out", "no answer")) or any(is_slow(e) for e in chain):
        return DownloadFailed("unavailable", f"{where} stopped answering while sending {what} of hf:{repo_id} "
                              f"(idle limit HF_HUB_DOWNLOAD_TIMEOUT={os.environ.get('HF_HUB_DOWNLOAD_TIMEOUT')} s)")
    if gave_up is not None or any(isinstance(e, (ConnectionError, OSError)) for e in chain):
        return DownloadFailed("unavailable", f"the connection to {where} failed while fetching {what} of "
                              f"hf:{repo_id} ({connection_detail(chain)})")
    return DownloadFailed("error", f"downloading {what} of hf:{repo_id} from {where} failed: "
                          f"{type(exc).__name__}: {one_line(exc, 160)}")
