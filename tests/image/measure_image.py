"""The serving image's figures in docs/deploy.md: start-to-healthy time and the server's memory after a load.

    .venv/bin/python -m tests.image.measure_image IMAGE [--mount DIR] [--starts 3]

Each start: `ENGINE run -d` (DIR mounted read-only at /models, else the image's baked-in variant), time to the
first 200 from /health, then 64 /predict_batch requests of 16 review texts (the longest cut at the variant's
max_length) and 64 /predict, then the server's RSS and peak RSS (host /proc, the process tini started) and the
engine's own memory figure (RSS and peak also once healthy, before the load). Prints one JSON object: the
image's size and each start's figures, with medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import httpx

from tests.builders import free_port
from tests.image.image_support import Container, Engine, find_engine


def load(url: str, texts: list[str]) -> None:
    with httpx.Client(timeout=120) as client:
        for i in range(64):
            assert client.post(url + "/predict_batch", json={"texts": texts[i % 4 * 16:][:16]}).status_code == 200
            assert client.post(url + "/predict", json={"text": texts[i % len(texts)]}).status_code == 200


def one_start(engine: Engine, image: str, mount: Path | None, texts: list[str], index: int) -> dict:
    box = Container(engine, image, f"structbert-lite-measure-{index}", mount, free_port())
    try:
        healthy = box.wait_healthy(timeout=180)
        variant = httpx.get(box.url + "/health").json()["artifact"]["variant"]
        started = box.memory()
        load(box.url, texts)
        return {"start_to_healthy_s": round(healthy, 2), "variant": variant, **box.memory(),
                "when_healthy": {k: started[k] for k in ("rss_mib", "peak_rss_mib")}}
    finally:
        box.remove()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image.measure_image", description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--mount", type=Path, help="a variant folder or published set to mount at /models")
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args(argv)
    name, why = find_engine()
    if name is None:
        parser.error(why)
    from structbert_lite.reviews import balanced_sample

    texts = [text for text, _ in balanced_sample(64, seed=1)]
    engine = Engine(name)
    mount = args.mount.resolve() if args.mount else None
    starts = [one_start(engine, args.image, mount, texts, i) for i in range(args.starts)]
    result = {"image": args.image, "engine": name, "image_mb": round(engine.inspect(args.image)["Size"] / 1e6, 1),
              "mount": str(mount) if mount else None, "starts": starts,
              **{f"median_{key}": statistics.median(s[key] for s in starts)
                 for key in ("start_to_healthy_s", "rss_mib", "peak_rss_mib")}}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
