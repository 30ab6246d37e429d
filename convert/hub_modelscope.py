"""ModelScope downloads for `hub_download` (run in its child process): the unchanged client, one-line errors.

modelscope_hub 0.5 checks every file's size and sha256 against the repo listing, resumes ``*.incomplete``
parts and re-verifies the cache on every run; we add bounded waits (`hub_download.DEFAULT_BOUNDS`), the
classification of its many exception types into one line, and the iic/ hint for renamed damo/ ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from structbert_lite.convert.hub_download import (
    WANTED_PATTERNS,
    DownloadFailed,
    clear_incomplete,
    connection_detail,
    exception_chain,
    is_slow,
    mark_incomplete,
    one_line,
    status_of,
)

MS_DEFAULT_ENDPOINT = "https://modelscope.cn"
MS_DEFAULT_REVISION = "master"


MS_DEFAULT_CACHE = "~/.cache/modelscope"  # modelscope_hub's default when MODELSCOPE_CACHE is unset


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
        if failure.kind == "not_found":  # nothing was fetched: leave no empty snapshot skeleton behind
            prune_empty_model_dirs(Path(cache_dir or os.environ.get("MODELSCOPE_CACHE") or MS_DEFAULT_CACHE), model_id)
        else:
            mark_incomplete(getattr(exc, "output_dir", None), str(failure))
        raise failure from None
    clear_incomplete(Path(path))
    return {"path": str(path), "revision": effective, "endpoint": modelscope_endpoint()}


def prune_empty_model_dirs(cache: Path, model_id: str) -> None:
    """Remove the empty folders modelscope_hub made for ``model_id`` under ``cache`` (deepest first)."""
    owner, _, name = model_id.partition("/")
    cache = cache.expanduser()
    if not cache.is_dir():
        return
    for folder in sorted(cache.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        inside = f"{owner}--{name}" in folder.parts or (owner in folder.parts and name in folder.parts)
        if inside and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    for folder in (cache / "models" / owner, cache / "models", cache / owner):  # parents we may have emptied
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


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
    chain = exception_chain(cause)
    if any(isinstance(e, ms.NotExistError) for e in chain) or status_of(cause) == 404:
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
    if isinstance(cause, ms.ServerError) or (status_of(cause) or 0) >= 500:
        retries = "MODELSCOPE_DOWNLOAD_MAX_RETRIES" if failed else "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS"
        return DownloadFailed("unavailable", f"{where} answered HTTP {status_of(cause) or '5xx'} for {subject} "
                              f"on every try ({retries}={os.environ.get(retries)})")
    if any(isinstance(e, (ms.RequestTimeoutError, TimeoutError)) or is_slow(e) for e in chain):
        limit = "MODELSCOPE_DOWNLOAD_TIMEOUT" if failed else "MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS"
        return DownloadFailed("unavailable", f"{where} stopped answering while sending {subject} "
                              f"(idle limit {limit}={os.environ.get(limit)} s)")
    if isinstance(cause, (ms.NetworkError, ConnectionError, OSError)):
        return DownloadFailed("unavailable", f"the connection to {where} failed while fetching {subject} "
                              f"({connection_detail(chain)}; MODELSCOPE_DOWNLOAD_MAX_RETRIES="
                              f"{os.environ.get('MODELSCOPE_DOWNLOAD_MAX_RETRIES')})")
    return DownloadFailed("error", f"downloading {subject} from {where} failed: "
                          f"{type(cause).__name__}: {one_line(cause, 160)}")


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
