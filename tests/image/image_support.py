"""Helpers of the image tests: the container engine (docker when its daemon answers, else podman, installed by
.ci/container-setup as root when missing), building the image from the Dockerfile, and one running container.

Nothing is mocked: the image is the one `make image` builds, started the way docs/deploy.md says.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = ROOT / ".ci" / "containers.conf"
TEST_IMAGE = "localhost/structbert-lite-serve:test"


def engine_works(name: str) -> bool:
    if not shutil.which(name):
        return False
    probe = [name, "info"] if name == "docker" else [name, "--version"]
    return subprocess.run(probe, capture_output=True, env=engine_env(name), timeout=60).returncode == 0


def engine_env(name: str) -> dict[str, str]:
    """podman here reads .ci/containers.conf (runc; ulimits this sandbox allows) unless CONTAINERS_CONF is set."""
    env = dict(os.environ)
    if name == "podman" and shutil.which("runc"):
        env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def find_engine() -> tuple[str | None, str]:
    """(engine, "") when one works, after .ci/container-setup (root only) installed podman and the base image;
    else (None, why)."""
    found = next((name for name in ("docker", "podman") if engine_works(name)), None)
    if os.geteuid() != 0 and found is None:
        return None, "no docker or podman, and not root, so .ci/container-setup cannot install podman"
    setup = subprocess.run([str(ROOT / ".ci" / "container-setup")], capture_output=True, text=True, timeout=1200)
    if setup.returncode != 0:
        return None, f".ci/container-setup failed: {(setup.stdout + setup.stderr).strip()[-800:]}"
    found = found or next((name for name in ("docker", "podman") if engine_works(name)), None)
    return (found, "") if found else (None, ".ci/container-setup ran but no container engine works")


class Engine:
    """One container engine's command line."""

    def __init__(self, name: str):
        self.name = name
        self.env = engine_env(name)

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([self.name, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def build(self, tag: str, *build_args: str, timeout: float = 1200) -> tuple[subprocess.CompletedProcess, float]:
        """Build the repo's Dockerfile as ``tag``; returns the finished process and its seconds."""
        flags = ["--format", "docker"] if self.name == "podman" else []
        for arg in build_args:
            flags += ["--build-arg", arg]
        start = time.monotonic()
        done = self.run("build", *flags, "-t", tag, str(ROOT), check=False, timeout=timeout)
        return done, time.monotonic() - start

    def inspect(self, ref: str, kind: str = "image") -> dict:
        return json.loads(self.run(kind, "inspect", ref).stdout)[0]

    def remove(self, name: str) -> None:
        self.run("rm", "-f", name, check=False, timeout=120)


def image_context(*args: str) -> list[str]:
    """Run .ci/image-context; the build arguments it prints (VARIANT=..., VARIANT_DIGEST=...)."""
    done = subprocess.run([str(ROOT / ".ci" / "image-context"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def world_readable(folder: Path) -> Path:
    """The image runs as an unprivileged user (uid 10001): a mounted folder must be readable by others."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


class Container:
    """``ENGINE run -d`` of the image with ``folder`` mounted read-only at /models, published on loopback."""

    def __init__(self, engine: Engine, image: str, name: str, folder: Path | None, port: int, *args: str):
        self.engine, self.name, self.port = engine, name, port
        self.url = f"http://127.0.0.1:{port}"
        engine.remove(name)
        mount = ["-v", f"{folder}:/models:ro"] if folder else []
        self.started = time.monotonic()
        engine.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", *mount, image, *args)

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds from `run` to the first 200 from /health."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            if self.state()["Status"] == "exited":
                raise AssertionError(f"container exited with {self.state()['ExitCode']}:\n{self.logs()}")
            time.sleep(0.05)
        raise AssertionError(f"not healthy after {timeout} s:\n{self.logs()}")

    def state(self) -> dict:
        return self.engine.inspect(self.name, "container")["State"]

    def logs(self) -> str:
        done = self.engine.run("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait_exit(self, timeout: float = 60.0) -> int:
        done = self.engine.run("wait", self.name, timeout=timeout)
        return int(done.stdout.strip().splitlines()[-1])

    def server_pid(self) -> int:
        """The host pid of the server process: tini's (the container's PID 1) only child."""
        tini = self.state()["Pid"]
        children = Path(f"/proc/{tini}/task/{tini}/children").read_text().split()
        assert len(children) == 1, f"tini has children {children}"
        return int(children[0])

    def memory(self) -> dict:
        """The server's RSS and peak RSS (host /proc), and the engine's own memory figure for the container."""
        status = dict(line.split(":", 1) for line in Path(f"/proc/{self.server_pid()}/status").read_text().splitlines())
        stats = self.engine.run("stats", "--no-stream", "--format", "{{.MemUsage}}", self.name, check=False)
        mib = {key: round(int(status[field].split()[0]) / 1024, 1) for key, field in
               (("rss_mib", "VmRSS"), ("peak_rss_mib", "VmHWM"))}
        return {**mib, "engine_mem_usage": stats.stdout.strip()}

    def mapped_libraries(self) -> set[str]:
        maps = Path(f"/proc/{self.server_pid()}/maps").read_text().splitlines()
        return {Path(line.split()[-1]).name for line in maps if ".so" in line}

    def remove(self) -> None:
        self.engine.remove(self.name)
