# structbert-lite — every entry point a newcomer needs. `make setup` first (or let `make demo` do it).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/structbert-base.yaml
MODEL  ?=
EVAL   ?=
OUT    ?=
ARTIFACT ?= artifacts/demo/int8-dynamic
PORT   ?= 5000
HOST   ?= 127.0.0.1

RUN_FLAGS := $(if $(MODEL),--model $(MODEL)) $(if $(EVAL),--eval $(EVAL)) $(if $(OUT),--out $(OUT))

.PHONY: setup demo convert bench serve test clean finetune score-bench

$(BIN)/structbert-lite: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch is pinned to the CPU build (2.13.0); an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[convert,test,cluster]"
	touch $@

setup: $(BIN)/structbert-lite ## create .venv and install everything (CPU only)

demo: setup ## offline, end to end: train the demo model, convert, quantize, validate, publish into artifacts/demo/
	$(BIN)/structbert-lite run --config configs/demo.yaml --out artifacts/demo $(if $(EVAL),--eval $(EVAL))

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
	$(BIN)/structbert-lite finetune --model $(MODEL) --train $(TRAIN) $(if $(EVAL),--eval $(EVAL)) --out $(or $(OUT),artifacts/finetuned) --config $(or $(FINETUNE_CONFIG),configs/finetune.yaml)

serve: setup ## serve a published variant (default: the demo's int8-dynamic)
	$(BIN)/structbert-lite serve --artifact $(ARTIFACT) --host $(HOST) --port $(PORT)

test: setup ## the test suite (no network, tiny models)
	$(BIN)/python -m pytest -q

clean:
	rm -rf artifacts/demo bench/out .pytest_cache
