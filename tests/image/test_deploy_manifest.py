"""deploy/kubernetes.yaml, read as Kubernetes would: a Deployment of the image the publish workflow pushes, probed
on /health at the port the Dockerfile exposes, as the image's own user, a Service that reaches it, resources no
smaller than the memory docs/deploy.md states; and docs/deploy.md shows the same manifest."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kubernetes.yaml"
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}


def documents() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    return {d["kind"]: d for d in docs}


def container() -> dict:
    (box,) = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return box


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def bytes_of(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMG]i?|)", quantity).groups()
    return int(number) * UNITS[unit]


def test_the_deployment_runs_the_published_image_on_the_exposed_port_as_its_user():
    box = container()
    workflow = (REPO / ".github" / "workflows" / "publish.yml").read_text(encoding="utf-8")
    assert 'repo="ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/structbert-lite-serve"' in workflow
    assert re.fullmatch(r"ghcr\.io/[A-Z]+/structbert-lite-serve:v[\d.]+", box["image"]), box["image"]
    (port,) = box["ports"]
    assert port["containerPort"] == int(re.search(r"^EXPOSE (\d+)$", dockerfile(), re.M).group(1)) == 5000
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile()).group(1))
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"] is True
    assert box["args"][:2] == ["--artifact", "/models"]  # the image's CMD, plus the thread count
    assert box["args"][box["args"].index("--threads") + 1] == str(box["resources"]["limits"]["cpu"])


def test_every_probe_asks_health_on_the_served_port():
    box = container()
    names = {p["name"]: p["containerPort"] for p in box["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = box[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert names.get(get["port"], get["port"]) == 5000, probe
    # the start-up probe gives a slow node a minute before liveness may restart the pod
    assert box["startupProbe"]["periodSeconds"] * box["startupProbe"]["failureThreshold"] >= 60


def test_the_service_selects_the_pods_and_targets_the_served_port():
    deployment, service = documents()["Deployment"], documents()["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    names = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert names.get(port["targetPort"], port["targetPort"]) == 5000


def test_memory_requests_cover_the_measured_peak_and_the_page_shows_this_manifest():
    page = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    # the figure docs/deploy.md states for the base-shaped int8 variant, and the one the manifest's comment repeats
    peak = float(re.search(r"^\|[^\n]*base-shaped int8 variant[^\n]*?\|\s*([\d.]+) MiB peak", page, re.M).group(1))
    resources = container()["resources"]
    assert bytes_of(resources["requests"]["memory"]) >= peak * 2**20
    assert bytes_of(resources["limits"]["memory"]) > bytes_of(resources["requests"]["memory"])
    assert f"{peak:g} MiB peak" in MANIFEST.read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", page, re.S | re.M)
    assert MANIFEST.read_text(encoding="utf-8") in blocks, "docs/deploy.md should show deploy/kubernetes.yaml as it is"
