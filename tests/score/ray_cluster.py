"""A real single-node Ray cluster for the tests: `ray start --head --block` on 127.0.0.1 with free ports.

Token authentication (RAY_AUTH_MODE=token) with a token file of the test's own: the configuration Ray
recommends, and independent of a ~/.ray/auth_token left by anything else (`ray start` turns token mode on
when that file exists, while a driver does not, and then cannot join). Drivers get the same settings
from `env`.

The `ray start` process is ours (its own session); stopping it with SIGTERM makes Ray stop the processes it
started (GCS, raylet, workers). Nothing here uses `ray stop`, which would stop every Ray cluster on the
machine, not only this one.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.builders import free_port

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class LocalRayCluster:
    """``with LocalRayCluster(tmp, cpus=2) as cluster: cluster.address``."""

    def __init__(self, folder: Path, cpus: int = 2):
        self.folder = Path(folder)
        self.cpus = cpus
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        token = self.folder / "auth_token"
        token.write_text(secrets.token_hex(32), encoding="utf-8")
        # What every process that joins this cluster needs (drivers: the CLI under test, the probe).
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env.pop("RAY_ADDRESS", None)

    def __enter__(self) -> "LocalRayCluster":
        ray_bin = Path(sys.executable).with_name("ray")
        command = [
            str(ray_bin), "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus}", "--include-dashboard=false", "--disable-usage-stats",
            "--object-store-memory=150000000", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={self.folder}",
        ]
        env = {**self.env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # stop now, no 30 s drain
        self.log = open(self.folder / "ray-start.log", "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        """Until the head's log says it started, then one probe driver must see all CPUs."""
        deadline = time.monotonic() + START_TIMEOUT_S
        log = self.folder / "ray-start.log"
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"ray start did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        probe = subprocess.run(
            [sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(int(ray.cluster_resources().get('CPU', 0)))", self.address],
            capture_output=True, text=True, timeout=max(10.0, deadline - time.monotonic()), env=self.env,
        )
        if probe.returncode != 0 or probe.stdout.strip().splitlines()[-1:] != [str(self.cpus)]:
            self.__exit__()
            raise RuntimeError(f"the Ray cluster at {self.address} does not answer: {probe.stderr[-2000:]}")

    def descendants(self):
        import psutil

        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def __exit__(self, *exc) -> None:
        if self.process is None:
            return
        import psutil

        leftovers = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for child in leftovers:  # only processes this cluster started, by pid
            try:
                child.kill()
            except psutil.Error:  # already gone (NoSuchProcess), or no longer ours to kill (AccessDenied)
                pass
        self.log.close()
        self.process = None
