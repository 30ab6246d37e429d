# structbert-lite — every entry point a newcomer needs. `make setup` first (or let `make demo` do it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/structbert-base.yaml
MODEL  ?=
EVAL   ?=
OUT    ?=
ARTIFACT ?= artifacts/demo
PORT   ?= 5000
HOST   ?= 127.0.0.1
TEXT_COLUMN  ?=
LABEL_COLUMN ?=
# torch comes from PyTorch's own CPU wheel index: PyPI's torch for Linux x86_64 is the CUDA build (29 packages,
# ~2.7 GB to download, against ~0.2 GB). TORCH_INDEX=URL: a private mirror of that index; TORCH_INDEX= (empty):
# pip's own configured sources only. A CUDA build is refused unless ALLOW_CUDA_TORCH=1 (README "Set-up").
TORCH_VERSION := 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
ALLOW_CUDA_TORCH ?=

COLUMN_FLAGS := $(if $(TEXT_COLUMN),--text-column '$(TEXT_COLUMN)') $(if $(LABEL_COLUMN),--label-column '$(LABEL_COLUMN)')
RUN_FLAGS := $(if $(MODEL),--model $(MODEL)) $(if $(EVAL),--eval $(EVAL)) $(if $(OUT),--out $(OUT)) $(COLUMN_FLAGS)

# Run by .venv's python: with SETUP_CHECK=plan, reads `pip install --dry-run --report -` on stdin and refuses a
# plan that would install a CUDA build of torch (before it is installed); else checks the installed torch.
define TORCH_CPU_CHECK
import json, os, sys
fix = ("point TORCH_INDEX= at a reachable mirror of https://download.pytorch.org/whl/cpu, or put the CPU wheel "
       "(torch-$(TORCH_VERSION)+cpu) in a folder and set PIP_FIND_LINKS=that-folder, then run %s again "
       "(ALLOW_CUDA_TORCH=1 accepts the CUDA build)")
if os.environ.get("SETUP_CHECK") == "plan":
    text = sys.stdin.read()
    if not text.strip():
        sys.exit("setup: pip could not resolve torch==$(TORCH_VERSION) from its own sources (above): " + fix % "`make setup`")
    cuda = sorted((i["metadata"]["name"] for i in json.loads(text)["install"]
                   if i["metadata"]["name"].lower().startswith(("nvidia-", "cuda-"))), key=str.lower, reverse=True)
    if cuda and not "$(ALLOW_CUDA_TORCH)":
        sys.exit(f"setup: pip would install the CUDA build of torch ({len(cuda)} CUDA packages, several GB: "
                 f"{', '.join(cuda[:3])} ...), nothing installed: " + fix % "`make setup`")
    sys.exit(0)
import torch
if torch.version.cuda and not "$(ALLOW_CUDA_TORCH)":
    sys.exit(f"setup: $(VENV) has torch {torch.__version__}, a CUDA build (CUDA {torch.version.cuda}): "
             + fix % "`rm -rf $(VENV) && make setup`")
print(f"setup: torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})")
endef
export TORCH_CPU_CHECK
# pip's own sources (a mirror, a local wheel); a plan with a CUDA build is refused before it is installed
PIP_TORCH := SETUP_CHECK=plan; export SETUP_CHECK; \
	$(BIN)/pip install --dry-run --quiet --report - torch==$(TORCH_VERSION) | $(BIN)/python -c "$$TORCH_CPU_CHECK" \
	&& $(BIN)/pip install torch==$(TORCH_VERSION)

.PHONY: setup demo convert bench serve test clean finetune score-bench distill docs

$(BIN)/structbert-lite: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, the CPU build (the extras below pin torch==$(TORCH_VERSION), which it satisfies); if the index
	# cannot be reached (a mirror-only machine), pip's own sources, refusing a CUDA build
	$(if $(TORCH_INDEX),$(BIN)/pip install --retries 1 --timeout 30 --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION) \
	  || { echo "setup: torch==$(TORCH_VERSION) not installed from $(TORCH_INDEX) (above); trying pip's own sources"; \
	       $(PIP_TORCH); },$(PIP_TORCH))
	$(BIN)/pip install -e ".[convert,test,cluster]"
	$(BIN)/python -c "$$TORCH_CPU_CHECK"
	touch $@

setup: $(BIN)/structbert-lite ## create .venv and install everything (CPU only)

demo: setup ## offline, end to end: train the demo model, convert, quantize, validate, publish into artifacts/demo/
	$(BIN)/structbert-lite run --config configs/demo.yaml --out artifacts/demo --speed-unverified-ok $(if $(EVAL),--eval $(EVAL) $(COLUMN_FLAGS))

# Exit 4 of `run` (published, speed not verified on a busy machine) still compares the student with the teacher's int8.
distill: setup ## offline: a 4x256 demo teacher distilled into a 2x128 student, both gated, into artifacts/distill-demo/ [DISTILL_DATA=FILE]
	$(BIN)/structbert-lite run --config configs/distill-demo.yaml --out artifacts/distill-demo $(if $(DISTILL_DATA),--distill-data '$(DISTILL_DATA)') || [ $$? -eq 4 ]
	$(BIN)/python -m structbert_lite.train.compare_student artifacts/distill-demo --student student-int8 --teacher int8-dynamic --min-speedup 3

convert: setup ## the real StructBERT (needs ModelScope access), or MODEL=<dir> / CONFIG=<yaml>
	$(BIN)/structbert-lite run --config $(CONFIG) $(RUN_FLAGS)

bench: setup ## side-by-side benchmark vs the peers (installs the bench extra); MODEL=, OUT=, THREADS=, CONFIG=, SHAPES=base,student
	$(BIN)/pip install -e ".[convert,test,bench]"
	$(BIN)/python -m structbert_lite.bench $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) --threads $(or $(THREADS),2) $(if $(SHAPES),--shapes $(SHAPES)) --out $(or $(OUT),bench/out)

score-bench: setup ## texts/s of `score` (local, Ray) vs the serving stub's /predict_batch vs one process; ROWS=2000 OUT=bench/out/score
	$(BIN)/python -m structbert_lite.score.bench --rows $(or $(ROWS),2000) --out $(or $(OUT),bench/out/score)

finetune: setup ## fine-tune MODEL= on TRAIN= (labelled CSV/TSV/JSONL/Parquet) [EVAL=] [OUT=] [FINETUNE_CONFIG=]
	$(if $(MODEL),,$(error MODEL= is required: a ModelScope id, hf:<owner>/<name>, a local checkpoint folder or demo))
	$(if $(TRAIN),,$(error TRAIN= is required: a labelled CSV/TSV/JSONL/Parquet file with text,label columns))
	$(BIN)/structbert-lite finetune --model $(MODEL) --train $(TRAIN) $(if $(EVAL),--eval $(EVAL)) --out $(or $(OUT),artifacts/finetuned) --config $(or $(FINETUNE_CONFIG),configs/finetune.yaml) $(COLUMN_FLAGS)

serve: setup ## serve the demo set's fastest variant on this CPU (ARTIFACT=artifacts/demo/int8-dynamic: that one)
	$(BIN)/structbert-lite serve --artifact $(ARTIFACT) --host $(HOST) --port $(PORT)

.PHONY: publish-rehearsal
publish-rehearsal: setup ## rehearse .github/workflows/publish.yml here: a local hub serving the demo checkpoint (make demo first), `make convert`, verify, pack, unpack, check
	$(BIN)/python .ci/rehearse-publish $(REHEARSAL_FLAGS)

# The browser test (tests/serve/test_browser.py) drives Debian's Chromium: installed here when missing (as root),
# else one line says how, so nothing is skipped silently. PYTEST_FLAGS=--durations=15 in CI (.ci/run).
test: setup ## ruff check, then the test suite (no network, tiny models); installs Chromium + ChromeDriver for the browser test
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make test: installing Debian's chromium + chromium-driver for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "make test: the browser test will be SKIPPED: install Chromium first (sudo apt-get install chromium chromium-driver)"; fi
	$(BIN)/ruff check .   # lint first: seconds, and a finding fails before the 10-minute suite starts
	$(BIN)/python -m pytest -q $(PYTEST_FLAGS)

$(BIN)/mkdocs: pyproject.toml | $(BIN)/structbert-lite
	$(BIN)/pip install -e ".[docs]"
	touch $@

docs: $(BIN)/mkdocs ## the docs site into site/ (MkDocs, --strict), docs/configs.md regenerated from the schema first
	$(BIN)/python -m structbert_lite.docs_config
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf artifacts/demo artifacts/distill-demo bench/out .pytest_cache site

# The serving image (Dockerfile, docs/deploy.md): docker when its daemon answers, else podman. Its build context is
# filled here by .ci/image-context (wheels built and fetched on this machine: no index is reached inside the build).
# On podman the CI sandbox's settings apply (.ci/containers.conf: runc, ulimits) when runc is installed.
IMAGE    ?= structbert-lite-serve:latest
OPENVINO ?= 0
VARIANT  ?=
# OCI labels (org.opencontainers.image.*): the publish workflow passes its tag, commit and repository URL. They go
# in as build arguments (the Dockerfile's LABEL) and as --label too: podman 4.3 (buildah 1.28) reuses a cached
# LABEL step whatever the arguments' values, so a rebuild kept the last build's revision; --label sets the final one.
VERSION  ?=
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE   ?= https://github.com/structbert-lite/structbert-lite
OCI_ARGS  = --build-arg REVISION=$(REVISION) --label org.opencontainers.image.revision=$(REVISION) \
            --build-arg VERSION=$(VERSION) --label org.opencontainers.image.version=$(VERSION) \
            --build-arg SOURCE=$(SOURCE) --label org.opencontainers.image.source=$(SOURCE)
ENGINE   ?= $(shell if docker info >/dev/null 2>&1; then echo docker; elif command -v podman >/dev/null 2>&1; then echo podman; fi)
ENGINE_ENV := $(if $(filter podman,$(ENGINE)),$(if $(shell command -v runc),CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/.ci/containers.conf}))

.PHONY: image image-run image-check
image: setup ## the serving image $(IMAGE): onnxruntime only; OPENVINO=1 adds OpenVINO; VARIANT=DIR bakes that variant folder in
	$(if $(ENGINE),,$(error no container engine: install docker or podman (Debian: apt-get install podman runc), or run .ci/container-setup as root))
	@set -e; args=$$(.ci/image-context $(if $(filter 1,$(OPENVINO)),--openvino) $(if $(VARIANT),--variant '$(VARIANT)')); \
	set -x; $(ENGINE_ENV) $(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker) -t $(IMAGE) \
	  --build-arg OPENVINO=$(OPENVINO) $(OCI_ARGS) \
	  $$(for a in $$args; do printf -- '--build-arg %s ' "$$a"; done) .

image-run: ## serve ARTIFACT (default the set artifacts/demo: its fastest variant) from the image on $(HOST):$(PORT) (make image first)
	$(if $(ENGINE),,$(error no container engine: install docker or podman, then `make image`))
	@[ -d '$(ARTIFACT)' ] || { echo "image-run: $(ARTIFACT) not found: run \`make demo\` first, or set ARTIFACT=DIR"; exit 2; }
	$(ENGINE_ENV) $(ENGINE) run --rm -p $(HOST):$(PORT):5000 \
	  -v "$$(realpath '$(ARTIFACT)')":/models:ro $(IMAGE)

image-check: ## start $(IMAGE) (its baked-in variant; CHECK_ARTIFACT=DIR mounts one), wait for /health, one /predict, stop: exit 0
	$(if $(ENGINE),,$(error no container engine: install docker or podman, then `make image`))
	$(ENGINE_ENV) ENGINE=$(ENGINE) .ci/image-check '$(IMAGE)' $(if $(CHECK_ARTIFACT),'$(CHECK_ARTIFACT)')
