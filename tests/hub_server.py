"""A small, real model hub on 127.0.0.1: the ModelScope and Hugging Face Hub HTTP APIs over local folders.

It speaks exactly the requests the installed clients make, so tests run the unchanged
``modelscope.snapshot_download`` and ``huggingface_hub.snapshot_download`` against it:

    ModelScope (modelscope 1.40 / modelscope_hub 0.5, MODELSCOPE_ENDPOINT=http://127.0.0.1:PORT)
      GET  /api/v1/repos/internalAccelerationInfo                       region probe (answered: no region)
      GET  /api/v1/models/{owner}/{name}/repo/files?Revision=R&Recursive=True
                                                                        {"Code":200,"Data":{"Files":[{Path,Type,Size,Sha256,Revision,...}]}}
      GET  /api/v1/models/{owner}/{name}/repo?Revision=R&FilePath=F     the file (Range honoured: 206)
      GET  /api/v1/models/{owner}/{name}                                repo info
    Hugging Face (huggingface_hub 0.36, HF_ENDPOINT=http://127.0.0.1:PORT)
      GET  /api/models/{owner}/{name}[/revision/R]
                                                                        {"id","sha","siblings":[{rfilename,size,blobId,lfs}]}
      HEAD /{owner}/{name}/resolve/R/F                                  X-Repo-Commit, ETag / X-Linked-Etag, sizes
      GET  /{owner}/{name}/resolve/R/F                                  the file (Range honoured: 206)

Unknown ids get the hub's own "not found" answers (ModelScope: HTTP 404 + 模型不存在; Hugging Face:
404 with ``X-Error-Code: RepoNotFound``); unknown revisions likewise. Faults are injected per request:

    Fault("500", "listing")             the file listing answers HTTP 500
    Fault("short", "pytorch_model.bin") the file's body stops halfway (full Content-Length announced)
    Fault("corrupt", "vocab.txt")       one byte flipped: same size, wrong sha256
    Fault("stall", "any", times=None)   the server reads the request and never answers
    Fault("404", "file:config.json")    one file is missing

``target`` is ``listing`` (ModelScope repo/files, HF model info), a file name (its downloads),
``any``, or ``probe`` (the region probe). ``times=None`` means every matching request; an int means the
first N. Every request is logged in ``server.log`` (method, path, query, Range header).

Standalone (the lead's rehearsal of ``MODELSCOPE_ENDPOINT=http://127.0.0.1:PORT make convert``)::

    python -m tests.hub_server --model-id damo/nlp_structbert_sentiment-classification_chinese-base \\
        --dir CHECKPOINT_DIR --port PORT [--fault stall:any] [--revision v1.0.0=OTHER_DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import signal
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

MS_DEFAULT_REVISION = "master"
HF_DEFAULT_REVISION = "main"
FAULT_KINDS = ("404", "500", "short", "corrupt", "stall")
LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".onnx")


@dataclasses.dataclass
class Fault:
    kind: str  # one of FAULT_KINDS
    target: str = "any"  # "listing", "probe", "any", or a file path
    times: Optional[int] = None  # None: every matching request

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    @classmethod
    def parse(cls, text: str) -> "Fault":
        """``kind[:target[:times]]``, e.g. ``stall:any`` or ``short:pytorch_model.bin:1``."""
        parts = text.split(":")
        times = int(parts[2]) if len(parts) > 2 else None
        return cls(parts[0], parts[1] if len(parts) > 1 else "any", times)


@dataclasses.dataclass
class RepoFile:
    path: str
    data: bytes
    sha256: str
    git_sha1: str  # the blob id git (and the HF API) gives a non-LFS file

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)


def read_repo_files(folder: Path) -> dict[str, RepoFile]:
    """Every file under ``folder`` (hidden files skipped), keyed by its posix path in the repo."""
    files = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        data = path.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        files[rel] = RepoFile(rel, data, hashlib.sha256(data).hexdigest(), blob)
    return files


def commit_id(files: dict[str, RepoFile]) -> str:
    """A stable 40-hex commit id for a revision's content (what a real hub would return)."""
    digest = hashlib.sha1()
    for path, item in sorted(files.items()):
        digest.update(path.encode() + b"\0" + item.sha256.encode())
    return digest.hexdigest()


class Repo:
    """One model id: revision name -> files. Revisions are also addressable by their commit id."""

    def __init__(self, repo_id: str, revisions: dict[str, Path]):
        self.id = repo_id
        self.revisions = {name: read_repo_files(folder) for name, folder in revisions.items()}
        self.commits = {name: commit_id(files) for name, files in self.revisions.items()}

    def files_at(self, revision: str) -> Optional[tuple[str, dict[str, RepoFile]]]:
        """(commit id, files) for a revision name or commit id; None when unknown."""
        if revision in self.revisions:
            return self.commits[revision], self.revisions[revision]
        for name, sha in self.commits.items():
            if revision == sha:
                return sha, self.revisions[name]
        return None


class HubServer:
    """A threaded HTTP server on 127.0.0.1 serving ``repos`` through both hub APIs; a context manager."""

    def __init__(self, repos: dict[str, Repo] | None = None, port: int = 0, stall_seconds: float = 60.0):
        self.repos: dict[str, Repo] = dict(repos or {})
        self.faults: list[Fault] = []
        self.log: list[dict] = []
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_repo(self, repo_id: str, folder: Path, revisions: dict[str, Path] | None = None) -> Repo:
        """Serve ``folder`` as ``repo_id`` on the default branch (master and main), plus named ``revisions``."""
        revs = {MS_DEFAULT_REVISION: Path(folder), HF_DEFAULT_REVISION: Path(folder), **(revisions or {})}
        repo = Repo(repo_id, revs)
        self.repos[repo_id] = repo
        return repo

    def inject(self, kind: str, target: str = "any", times: Optional[int] = None) -> Fault:
        fault = Fault(kind, target, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def take_fault(self, target: str) -> Optional[Fault]:
        """The first fault matching ``target`` (a file path, "listing" or "probe"), consuming one use."""
        with self._lock:
            for fault in self.faults:
                if fault.target not in (target, "any") or (fault.target == "any" and target == "probe"):
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    def requests_for(self, needle: str) -> list[dict]:
        with self._lock:
            return [r for r in self.log if needle in r["path"] or needle in json.dumps(r["query"])]

    def stall(self) -> None:
        """Hold the connection without answering, until the server stops or ``stall_seconds`` pass."""
        self._stop.wait(self.stall_seconds)

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the request log lives in hub.log
        logger.debug("hub_server: " + fmt, *args)

    # ---------------------------------------------------------------- dispatch
    def do_HEAD(self):
        self._dispatch(head=True)

    def do_GET(self):
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.hub._lock:
            self.hub.log.append(
                {"method": self.command, "path": path, "query": query, "range": self.headers.get("Range")}
            )
        try:
            if path == "/api/v1/repos/internalAccelerationInfo":
                return self._ms_probe()
            if path.startswith("/api/v1/models/"):
                return self._ms_api(path[len("/api/v1/models/") :], query, head)
            if path.startswith("/api/models/"):
                return self._hf_info(path[len("/api/models/") :])
            if "/resolve/" in path:
                return self._hf_resolve(path.lstrip("/"), head)
            self._json(404, {"error": f"hub_server does not serve {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---------------------------------------------------------------- helpers
    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _fault(self, target: str) -> Optional[Fault]:
        fault = self.hub.take_fault(target)
        if fault is not None and fault.kind == "stall":
            self.hub.stall()
            self.close_connection = True
            return fault
        return fault

    def _send_file(self, item: RepoFile, head: bool, headers: dict, fault: Optional[Fault]) -> None:
        data = item.data
        if fault is not None and fault.kind == "corrupt" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start, status = 0, 200
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and requested.endswith("-") and not head:
            start = int(requested[len("bytes=") : -1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        if fault is not None and fault.kind == "short":
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    # ---------------------------------------------------------------- ModelScope
    def _ms_probe(self) -> None:
        if self._fault("probe"):
            return
        self._json(200, {"Code": 200, "Data": {"InternalRegionQueryAddress": ""}, "Success": True})

    def _ms_not_found(self, what: str) -> None:
        self._json(
            404,
            {"Code": 10010205001, "Message": what, "RequestId": "hub-server", "Success": False},
        )

    def _ms_api(self, rest: str, query: dict, head: bool) -> None:
        owner, _, tail = rest.partition("/")
        name, _, action = tail.partition("/")  # action: "" (repo info), "repo" (a file), "repo/files" (listing)
        repo = self.hub.repos.get(f"{owner}/{name}")
        is_listing = action == "repo/files"
        file_path = query.get("FilePath") if action == "repo" else None
        target = "listing" if is_listing else (file_path or "info")
        fault = self._fault(target)
        if fault is not None and fault.kind == "stall":
            return
        if repo is None or (fault is not None and fault.kind == "404" and target == "listing"):
            return self._ms_not_found("模型不存在")
        if fault is not None and fault.kind == "500":
            return self._json(500, {"Code": 500, "Message": "Internal Server Error", "Success": False})
        if action not in ("repo", "repo/files"):  # repo info
            repo_owner, repo_name = repo.id.split("/")[:2]
            return self._json(200, {"Code": 200, "Data": {"Path": repo_owner, "Name": repo_name}, "Success": True})
        resolved = repo.files_at(query.get("Revision") or MS_DEFAULT_REVISION)
        if resolved is None:
            return self._ms_not_found(f"revision {query.get('Revision')} does not exist")
        commit, files = resolved
        if is_listing:
            listing = [
                {
                    "Name": item.path.rsplit("/", 1)[-1],
                    "Path": item.path,
                    "Type": "blob",
                    "Size": len(item.data),
                    "Sha256": item.sha256,
                    "Revision": commit,
                    "IsLFS": item.lfs,
                    "Mode": "33188",
                    "CommittedDate": 1700000000,
                }
                for item in files.values()
            ]
            return self._json(200, {"Code": 200, "Data": {"Files": listing}, "Message": "success", "Success": True})
        item = files.get(file_path or "")
        if item is None or (fault is not None and fault.kind == "404"):
            return self._ms_not_found(f"file {file_path} does not exist")
        self._send_file(item, head, {}, fault)

    # ---------------------------------------------------------------- Hugging Face
    def _hf_error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

    def _hf_info(self, rest: str) -> None:
        repo_id, _, revision = rest.partition("/revision/")
        revision = unquote(revision) or HF_DEFAULT_REVISION
        fault = self._fault("listing")
        if fault is not None and fault.kind == "stall":
            return
        repo = self.hub.repos.get(repo_id.strip("/"))
        if repo is None or (fault is not None and fault.kind == "404"):
            return self._hf_error(404, "RepoNotFound", "Repository not found")
        if fault is not None and fault.kind == "500":
            return self._hf_error(500, "InternalError", "Internal Error")
        resolved = repo.files_at(revision)
        if resolved is None:
            return self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        commit, files = resolved
        siblings = []
        for item in files.values():
            sibling = {"rfilename": item.path, "size": len(item.data), "blobId": item.git_sha1}
            if item.lfs:
                sibling["lfs"] = {"sha256": item.sha256, "size": len(item.data), "pointerSize": 134}
            siblings.append(sibling)
        body = {
            "_id": commit[:24],
            "id": repo.id,
            "modelId": repo.id,
            "sha": commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "createdAt": "2024-01-01T00:00:00.000Z",
        }
        self._json(200, body)

    def _hf_resolve(self, rest: str, head: bool) -> None:
        repo_id, _, tail = rest.partition("/resolve/")
        revision, _, file_path = tail.partition("/")
        fault = self._fault(file_path)
        if fault is not None and fault.kind == "stall":
            return
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._hf_error(404, "RepoNotFound", "Repository not found")
        if fault is not None and fault.kind == "500":
            return self._hf_error(500, "InternalError", "Internal Error")
        resolved = repo.files_at(unquote(revision))
        if resolved is None:
            return self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        commit, files = resolved
        item = files.get(file_path)
        if item is None or (fault is not None and fault.kind == "404"):
            return self._hf_error(404, "EntryNotFound", f"{file_path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit, "ETag": f'"{item.git_sha1}"', "Last-Modified": formatdate(usegmt=True)}
        if item.lfs:
            headers.update({"X-Linked-Etag": f'"{item.sha256}"', "X-Linked-Size": str(len(item.data))})
        self._send_file(item, head, headers, fault)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a checkpoint folder through the ModelScope and HF hub APIs")
    parser.add_argument("--model-id", required=True, help="owner/name the folder is served under (both APIs)")
    parser.add_argument("--dir", required=True, type=Path, help="the checkpoint folder (default branch)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--revision", action="append", default=[], metavar="NAME=DIR", help="an extra revision")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:TARGET[:TIMES]]", help="inject a fault")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir} is not a folder")
    revisions = {}
    for spec in args.revision:
        name, _, folder = spec.partition("=")
        revisions[name] = Path(folder)
    server = HubServer(port=args.port)
    server.add_repo(args.model_id, args.dir, revisions)
    for spec in args.fault:
        server.faults.append(Fault.parse(spec))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    print(f"serving {args.model_id} from {args.dir} at {server.url}", flush=True)
    print(f"  MODELSCOPE_ENDPOINT={server.url}   HF_ENDPOINT={server.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    print(f"served {len(server.log)} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------------------------------------- test helpers
# Bounds for tests: a stalled hub costs a few seconds. The retry counts stay at structbert-lite's defaults
# (convert/hub_download.DEFAULT_BOUNDS) so the retry paths run as users get them.
TEST_BOUNDS = {
    "MODELSCOPE_DOWNLOAD_TIMEOUT": "2",
    "MODELSCOPE_REPO_TREE_PAGE_TIMEOUT_SECONDS": "2",
    "MODELSCOPE_API_TIMEOUT": "2",
    "MODELSCOPE_API_CONNECT_TIMEOUT": "2",
    "MODELSCOPE_DOWNLOAD_LOW_SPEED_WINDOW_SECONDS": "3",
    "MODELSCOPE_DOWNLOAD_RETRY_MAX_DELAY_SECONDS": "1",
    "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    "HF_HUB_ETAG_TIMEOUT": "2",
}


def point_clients_at(setenv, url: str, tmp: Path) -> None:
    """Point both hub clients at ``url`` with caches and config under ``tmp`` (``setenv``: monkeypatch.setenv).

    The downloads run in a child process (convert/hub_download.py), so environment variables set here reach
    the clients however early the test process imported them.
    """
    for key, value in {
        "MODELSCOPE_ENDPOINT": url,
        "HF_ENDPOINT": url,
        "MODELSCOPE_CACHE": str(tmp / "modelscope-cache"),
        "MODELSCOPE_HOME": str(tmp / "modelscope-home"),
        "HF_HOME": str(tmp / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **TEST_BOUNDS,
    }.items():
        setenv(key, value)


def same_files(served: Path, downloaded: Path, patterns=("*.json", "*.bin", "*.safetensors", "*.txt")) -> list[str]:
    """Names of the served files matching ``patterns``, after asserting each is byte-identical in ``downloaded``."""
    from fnmatch import fnmatch

    names = sorted(p.name for p in Path(served).iterdir() if any(fnmatch(p.name, pat) for pat in patterns))
    for name in names:
        assert (Path(downloaded) / name).read_bytes() == (Path(served) / name).read_bytes(), name
    return names
