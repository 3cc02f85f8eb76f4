# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs torch==2.13.0 first (the CPU build found locally), then the project,
# so the resolver never pulls a CUDA torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.laser-installed
DEMO_OUT ?= out/demo

.PHONY: demo test test-slow lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	touch $(STAMP)

# The main job on the built-in digits-cnn + digits data: recipes x formats x backends, measured on LASER;
# writes $(DEMO_OUT)/report.html, report.json, pareto.png, winner/ and winner.toml (re-runs resume).
demo: $(STAMP)
	$(VENV)/bin/laser optimize -o $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out build *.egg-info
