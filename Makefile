PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NET ?= data/digits_mlp_64-32-32-10.npz

.PHONY: demo test lint bench clean install install-test

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/lipopt info $(NET)
	$(BIN)/lipopt bound $(NET) --norm inf --center x0 --eps 0.02 --seed 0

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/certdnn_grid.py
	$(BIN)/python benchmarks/shor_solvers.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
