# Setup and checks. Every target creates .venv first, so a fresh clone needs nothing else.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools -c constraints.txt
	$(BIN)/pip install -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ghostq data synth --out runs/demo-data --images 8 --size 512
	@echo "(issue 7 adds 'ghostq run configs/demo.yaml'; today the demo builds the synthetic set and checks it)"
	$(BIN)/ghostq data check --format dota --root runs/demo-data

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
