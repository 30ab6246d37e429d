"""Memory/cold-start probe: run in a FRESH process by `speed.measure_process`, never imported by the pipeline.

Reads one JSON request on stdin, loads the contender, answers one batch, prints one JSON line:
``{"peak_rss_mb", "import_s", "load_s", "first_answer_s", "answered_at", "torch_imported"}``.
For ``kind == "onnx"`` it imports only onnxruntime + tokenizers + numpy (what a serving process needs),
so the peak RSS is what a user of the variant pays; ``torch_imported`` lets a test prove it.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _peak_rss_mb() -> float:
    """Peak resident memory of THIS program, MiB.

    Not ``ru_maxrss`` on Linux: exec keeps the high-water mark of the address space it replaces, and
    subprocess spawns via fork/vfork, so ru_maxrss would report the *parent's* peak (seen: 579 MB for every
    contender, the size of the pipeline process). ``VmHWM`` belongs to the new address space only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # not Linux
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # macOS: bytes, else KiB


def main() -> int:
    request = json.loads(sys.stdin.read())
    started = time.perf_counter()
    from structbert_lite.runtime import OnnxClassifier, encode

    threads = request.get("threads")
    if request["kind"] == "onnx":
        imported = time.perf_counter()
        classifier = OnnxClassifier(request["path"], max_length=request["max_length"], threads=threads)
    else:
        from structbert_lite.validate.torch_baseline import DEFAULT_BASELINE_LOADER, TorchClassifier, load_baseline_model

        imported = time.perf_counter()
        model = load_baseline_model(request["path"], request.get("loader") or DEFAULT_BASELINE_LOADER)
        classifier = TorchClassifier(
            model, request.get("tokenizer_folder") or request["path"], request["max_length"], threads
        )
    loaded = time.perf_counter()
    classifier.logits_for_encoding(encode(classifier.tokenizer, request["texts"]))
    answered_at = time.time()
    answered = time.perf_counter()
    result = {
        "peak_rss_mb": _peak_rss_mb(),
        "import_s": imported - started,
        "load_s": loaded - imported,
        "first_answer_s": answered - loaded,
        "answered_at": answered_at,
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
