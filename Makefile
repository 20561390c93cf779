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
	$(BIN)/ghostq train configs/demo.yaml
	$(BIN)/ghostq eval configs/demo.yaml --model runs/demo/fp/best.pt --metric voc07 --json runs/demo/fp/eval_voc07.json
	$(BIN)/ghostq predict $$(ls runs/_data/synthetic-*/images/*.png | head -n 4) --model runs/demo/fp/best.pt \
		--out runs/demo/predict --score 0.3

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
