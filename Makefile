# Two commands do everything on a fresh machine (they create .venv and install ffmpeg if missing):
#   make demo   set up, then `dvc repro` on the embedded sample dataset
#   make test   set up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# Offline and reproducible: nothing is downloaded at run time, thread counts are fixed.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export TORCH_HOME := $(CURDIR)/.cache/torch
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export DVC_NO_ANALYTICS := 1
export OMP_NUM_THREADS := 1
export PYTHONHASHSEED := 0
# dvc runs stage commands with `python` from PATH: the project venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench clean help
help:
	@sed -n '1,4p' Makefile

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || bash scripts/install-ffmpeg.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

demo: setup
	@test -d .dvc || $(VENV)/bin/dvc init --quiet $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	$(VENV)/bin/dvc repro
	$(VENV)/bin/dvc metrics show

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf .cache shards reports/ingest reports/extract reports/index.html data/sample weights .ray
