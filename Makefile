# Two commands on a fresh machine: `make demo` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lab lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install whenever pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	# the capymoa extra too: the CapyMOA tests run when Java is there (.ci/run installs it)
	$(PIP) install -e '.[test,ray,capymoa]'
	# An optional dependency of jupyter-events that costs ~2 s in every kernel start.
	-$(PIP) uninstall -y rfc3987-syntax
	touch $@ $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(BIN)/workbench demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -p no:cacheprovider --nbmake tests notebooks

lab: $(VENV)/.installed-base
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/replay_overhead.py

clean:
	rm -rf runs reports .pytest_cache

.PHONY: bench-kafka
bench-kafka: $(VENV)/.installed-test
	$(BIN)/python benchmarks/kafka_parse_rate.py
	$(BIN)/python benchmarks/kafka_replay_memory.py
	$(BIN)/python benchmarks/minibatch.py
