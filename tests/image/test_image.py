"""The serving image, built from the Dockerfile and run by docker or podman (tests/image/image_support.py).

One build per session (module-scoped; the engine's layer cache makes a rebuild seconds). The container serves a
tiny int8-dynamic variant mounted read-only at /models; its answers are compared with the same folder loaded
in-process. Figures (image size, start-to-healthy, memory, build time) are printed and written to
build/image-measurements.json. Skipped, with one line, only when no container engine can be installed.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.image.image_support import ROOT, TEST_IMAGE, Container, Engine, find_engine, image_context, world_readable
from tests.serve.serve_support import CHARS, build_int8_variant, free_port, started_client

pytestmark = pytest.mark.slow

MAX_IMAGE_MB = 300
MAX_HEALTHY_S = 5.0
MAX_RSS_MB = 250  # the server's peak RSS (docs/deploy.md measures a StructBERT-base-shaped int8 variant too)
LABELS = {"REVISION": "0123456789abcdef0123456789abcdef01234567", "SOURCE": "https://github.com/some-owner/structbert-lite",
          "VERSION": "v9.9.9"}
MEASUREMENTS = ROOT / "build" / "image-measurements.json"
figures: dict = {}


def make_texts_for_image(count: int = 16, seed: int = 0) -> list[str]:
    """Texts in the tiny model's vocabulary (tests/serve/serve_support.py), 2-60 characters."""
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(rng.randint(2, 60))) for _ in range(count)]


def record(**values) -> None:
    figures.update(values)
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print("image figures:", json.dumps(values, sort_keys=True))


@pytest.fixture(scope="module")
def engine() -> Engine:
    name, why = find_engine()
    if name is None:
        pytest.skip(f"image tests skipped: {why}")
    return Engine(name)


@pytest.fixture(scope="module")
def image(engine) -> str:
    image_context()
    done, seconds = engine.build(TEST_IMAGE)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    record(engine=engine.name, build_s=round(seconds, 1),
           image_mb=round(engine.inspect(TEST_IMAGE)["Size"] / 1e6, 1))
    return TEST_IMAGE


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("image-variant")
    return world_readable(build_int8_variant(work / "int8-dynamic", work / "build"))


@pytest.fixture(scope="module")
def container(engine, image, variant):
    box = Container(engine, image, "structbert-lite-image-test", variant, free_port())
    try:
        record(start_to_healthy_s=round(box.wait_healthy(), 2))
        yield box
    finally:
        box.remove()


def test_the_image_is_small_torch_free_and_unprivileged(engine, image):
    info = engine.inspect(image)
    config = info["Config"]
    assert config["User"] == "serve"
    assert "5000/tcp" in config["ExposedPorts"]
    healthcheck = config.get("Healthcheck") or info["Healthcheck"]  # docker: in Config; podman: beside it
    assert "/health" in " ".join(healthcheck["Test"])
    assert config["Entrypoint"][:2] == ["tini", "--"]
    assert info["Size"] / 1e6 <= MAX_IMAGE_MB
    probe = ("import importlib.util as u, shutil, os; "
             "print([m for m in ('torch', 'transformers', 'pip', 'pytest', 'openvino') if u.find_spec(m)], "
             "[c for c in ('gcc', 'cc', 'g++', 'pip', 'curl') if shutil.which(c)], os.getuid())")
    done = engine.run("run", "--rm", "--entrypoint", "python3", image, "-c", probe)
    assert done.stdout.strip() == "[] [] 10001", done.stdout


def test_it_answers_like_the_folder_loaded_in_process(container, variant):
    texts = make_texts_for_image()
    with started_client(variant) as local:
        for path, body in [("/predict", {"text": texts[0]}), ("/predict_batch", {"texts": texts})]:
            for query in ("", "?format=modelscope"):
                expected = local.post(path + query, json=body)
                got = httpx.post(container.url + path + query, json=body, timeout=30)
                assert got.status_code == expected.status_code == 200
                assert got.json() == expected.json(), (path, query)
        served = httpx.get(container.url + "/health").json()["artifact"]
        loaded = local.get("/health").json()["artifact"]
        assert served.pop("path") == "/models"
        assert served == {k: v for k, v in loaded.items() if k != "path"}
    assert container.engine.run("healthcheck", "run", container.name, check=False).returncode == 0 \
        if container.engine.name == "podman" else True
    assert not {name for name in container.mapped_libraries() if name.startswith("libonnxruntime.so")}
    memory = container.memory()
    record(tiny_int8=memory)
    assert memory["peak_rss_mib"] * 2**20 / 1e6 <= MAX_RSS_MB, memory


@pytest.mark.parametrize("path, body, status", [
    ("/predict", {}, 422),
    ("/predict", {"text": ""}, 422),
    ("/predict", "not json", 422),
    ("/predict_batch", {"texts": ["好"] * 10_000}, 422),
    ("/predict", {"text": "好" * (2 << 20)}, 413),
    ("/nowhere", {"text": "好"}, 404),
])
def test_bad_requests_get_the_same_4xx_as_in_process(container, variant, path, body, status):
    send = {"content": body} if isinstance(body, str) else {"json": body}
    with started_client(variant) as local:
        expected = local.post(path, headers={"Content-Type": "application/json"}, **send)
    got = httpx.post(container.url + path, headers={"Content-Type": "application/json"}, timeout=30, **send)
    assert 400 <= got.status_code < 500
    assert got.status_code == expected.status_code, (got.status_code, expected.status_code, got.text)
    assert httpx.get(container.url + "/health").status_code == 200


def load_until_stopped(url: str, texts: list[str], results: list, stop: threading.Event) -> None:
    """One client: /predict_batch on a fresh connection each time until the server stops accepting."""
    with httpx.Client(timeout=60, headers={"Connection": "close"}) as client:
        while not stop.is_set():
            began = time.monotonic()
            try:
                response = client.post(url + "/predict_batch", json={"texts": texts})
                results.append(("answered", response.status_code, began, time.monotonic()))
            except (httpx.ConnectError, httpx.ConnectTimeout):  # never accepted: not in flight
                results.append(("not accepted", None, began, time.monotonic()))
                return
            except httpx.HTTPError as exc:  # accepted, then no answer: lost
                results.append(("lost", repr(exc), began, time.monotonic()))


def test_stop_under_a_16_client_load_answers_every_request_in_flight_and_exits_0(engine, image, variant):
    box = Container(engine, image, "structbert-lite-image-stop", variant, free_port())
    try:
        box.wait_healthy()
        results: list = []
        stop = threading.Event()
        clients = [threading.Thread(target=load_until_stopped, args=(box.url, make_texts_for_image(seed=i), results,
                                                                      stop)) for i in range(16)]
        for client in clients:
            client.start()
        while sum(1 for r in results if r[0] == "answered") < 64:
            time.sleep(0.05)
        signalled = time.monotonic()
        engine.run("stop", "-t", "30", box.name, timeout=60)
        stop.set()
        for client in clients:
            client.join(60)
        code, log = box.state()["ExitCode"], box.logs()
    finally:
        box.remove()
    lost = [r for r in results if r[0] == "lost" or (r[0] == "answered" and r[1] != 200)]
    in_flight = [r for r in results if r[0] == "answered" and r[2] < signalled < r[3]]
    record(stop_load={"clients": 16, "answered": sum(r[0] == "answered" for r in results), "lost": len(lost),
                      "answered_after_sigterm": len(in_flight)})
    assert not lost, lost[:5]
    assert in_flight, "no request was in flight when SIGTERM arrived: the load did not test the drain"
    assert code == 0, log
    assert "shut down cleanly" in log and "Traceback" not in log, log


def test_a_tampered_mounted_folder_is_refused_at_start(engine, image, variant, tmp_path):
    tampered = world_readable(Path(shutil.copytree(variant, tmp_path / "int8-dynamic")))
    with open(tampered / "tokenizer.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    box = Container(engine, image, "structbert-lite-image-tampered", tampered, free_port())
    try:
        code, log = box.wait_exit(), box.logs()
    finally:
        box.remove()
    assert code != 0, log
    assert "does not match its manifest" in log and "tokenizer.json" in log, log
    assert "Traceback" not in log, log


def test_a_baked_in_variant_is_verified_during_the_build_and_served_without_a_mount(engine, image, variant, tmp_path):
    args = image_context("--variant", str(variant))
    digest = "sha256:" + hashlib.sha256((variant / "manifest.json").read_bytes()).hexdigest()
    assert f"VARIANT_DIGEST={digest}" in args
    done, seconds = engine.build(TEST_IMAGE + "-baked", *args, *(f"{k}={v}" for k, v in LABELS.items()))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    labels = engine.inspect(TEST_IMAGE + "-baked")["Config"]["Labels"]
    assert labels["io.github.structbert-lite.variant.manifest-digest"] == digest
    assert labels["io.github.structbert-lite.variant"] == f"build/variant/{variant.name}"
    assert {k: labels[f"org.opencontainers.image.{k.lower()}"] for k in LABELS} == LABELS
    box = Container(engine, TEST_IMAGE + "-baked", "structbert-lite-image-baked", None, free_port())
    try:
        box.wait_healthy()
        assert httpx.get(box.url + "/health").json()["artifact"]["manifest_sha256"] == digest.split(":")[1]
    finally:
        box.remove()
    tampered = Path(shutil.copytree(variant, tmp_path / "int8-dynamic"))
    (tampered / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    done, _ = engine.build(TEST_IMAGE + "-tampered", *image_context("--variant", str(tampered)))
    assert done.returncode != 0 and "hash mismatch: vocab.txt" in done.stdout + done.stderr
    record(baked_build_s=round(seconds, 1))
