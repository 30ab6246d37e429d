"""Rewrite a checkpoint folder into the repo layout of the real ModelScope StructBERT sentiment model.

``damo/nlp_structbert_sentiment-classification_chinese-base`` (now ``iic/…``) ships ``configuration.json`` with
its task, model (``text-classification`` over a ``structbert`` backbone, a classification head), preprocessor
and pipeline blocks; ``config.json`` with ``model_type: structbert``; the label names in
``label_mapping.json`` only; tensors named ``encoder.*`` / ``head.classifier.*``. The demo checkpoint is the
only real sentiment model there is offline, so `.ci/rehearse-publish` serves it in this layout from a local
hub (a random model would fail the baseline's sanity bounds, by design); the tests serve a tiny one.

    python -m tests.ci.modelscope_repo SRC_CHECKPOINT DST_FOLDER
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

from tests.builders import MODELSCOPE_CONFIGURATION

# What the hub serves and the downloader fetches (convert/hub_download.WANTED_PATTERNS); nothing else is copied.
REPO_FILES = ("configuration.json", "config.json", "label_mapping.json", "pytorch_model.bin", "vocab.txt")


def write_modelscope_repo(src: Path, dst: Path) -> Path:
    """``src`` (any folder `load_classifier` loads) rewritten into ``dst`` in the real repo layout; the weights
    are the same numbers under ModelScope's tensor names. ``dst`` must not exist; it appears complete or not at all."""
    from structbert_lite.convert.checkpoint import load_classifier, save_checkpoint

    dst = Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists")
    loaded = load_classifier(src)
    config = loaded.model.config
    configuration = copy.deepcopy(MODELSCOPE_CONFIGURATION)
    configuration["model"]["backbone"].update(hidden_size=config.hidden_size,
                                              num_hidden_layers=config.num_hidden_layers)
    configuration["model"]["head"]["hidden_size"] = config.hidden_size
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        save_checkpoint(loaded.model, Path(src) / "vocab.txt", tmp, layout="modelscope", configuration=configuration)
        raw = json.loads((tmp / "config.json").read_text(encoding="utf-8"))
        for key in ("id2label", "label2id", "architectures"):
            raw.pop(key, None)
        raw["model_type"] = "structbert"
        (tmp / "config.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False), encoding="utf-8")
        label2id = {name: int(i) for i, name in sorted(loaded.id2label.items())}
        (tmp / "label_mapping.json").write_text(json.dumps(label2id, ensure_ascii=False), encoding="utf-8")
        extra = sorted(p.name for p in tmp.iterdir() if p.name not in REPO_FILES)
        if extra:
            raise RuntimeError(f"unexpected files in the repo layout: {extra}")
        os.rename(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m tests.ci.modelscope_repo SRC_CHECKPOINT DST_FOLDER")
    print(write_modelscope_repo(Path(sys.argv[1]), Path(sys.argv[2])))
