# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs torch==2.13.0 first (the CPU build found locally), then the project,
# so the resolver never pulls a CUDA torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.laser-installed
DEMO_OUT ?= out/demo

.PHONY: demo test test-slow lint venv web-deps real-models native-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	$(PY) -m pip install --quiet --no-deps "executorch==1.5.1" "torchao==0.18.0" "ruamel.yaml==0.19.1" \
	  "ruamel.yaml.clib==0.2.15" "expecttest==0.3.0" "parameterized==0.9.0" "kgb==7.3" "py-cpuinfo==9.0.0"
	touch $(STAMP)

# `laser web` and its browser tests: Debian's chromium (apt-get as root; otherwise the command is printed and
# the browser tests skip) and the pinned onnxruntime-web npm package (npm, into the venv; no-op when present).
web-deps: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } \
	  || echo "could not install chromium; the browser tests will skip: apt-get install -y chromium"; \
	  else echo "chromium is missing; the browser tests will skip: sudo apt-get install -y chromium"; fi; }
	@if command -v npm >/dev/null 2>&1; then $(VENV)/bin/laser web --fetch-runtime; \
	  else echo "npm is missing; the browser tests will skip: apt-get install -y nodejs npm && $(VENV)/bin/laser web --fetch-runtime"; fi

# Real pretrained models (laser hub cards pp-ocrv4-*, silero-vad): fonts and espeak-ng for their generated
# evaluation data (apt-get as root; otherwise the command is printed and those tests skip), and the weights
# files out of their pinned PyPI wheels into laser's cache (pip download --no-deps; never installs the packages).
REAL_APT := fonts-dejavu-core fonts-dejavu-extra fonts-noto-cjk espeak-ng
real-models: $(STAMP)
	@if [ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || ! command -v espeak-ng >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q $(REAL_APT) >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q $(REAL_APT) >/dev/null; } || \
	  echo "could not install fonts/espeak-ng; their tests will skip: apt-get install -y $(REAL_APT)"; \
	  else echo "fonts/espeak-ng missing; their tests will skip: sudo apt-get install -y $(REAL_APT)"; fi; fi
	$(VENV)/bin/laser hub fetch pp-ocr silero-vad mtcnn || echo "could not fetch the real models; their tests will skip"

# `laser deploy cpp` for ONNX models: ONNX Runtime 1.29.0's C++ headers + linux-x64 libonnxruntime.so from the
# npm package com.github.asus4.onnxruntime (pinned) into the venv; cmake + g++ (apt-get as root, else printed).
ORT_NPM := com.github.asus4.onnxruntime@0.4.9
native-deps: $(STAMP)
	@command -v cmake >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q cmake g++ >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q cmake g++ >/dev/null; } \
	  || echo "could not install cmake/g++; the C++ tests will fail: apt-get install -y cmake g++"; \
	  else echo "cmake or g++ is missing; the C++ tests will fail: sudo apt-get install -y cmake g++"; fi; }
	@test -f $(VENV)/share/laser/native/node_modules/com.github.asus4.onnxruntime/package.json || { \
	  if command -v npm >/dev/null 2>&1; then npm install --prefix $(VENV)/share/laser/native --no-save --no-audit \
	  --no-fund --ignore-scripts --silent $(ORT_NPM); \
	  else echo "npm is missing; laser deploy cpp cannot build ONNX models: apt-get install -y nodejs npm && make native-deps"; fi; }

# The main job on the built-in digits-cnn + digits data: recipes x formats x backends, measured on LASER;
# writes $(DEMO_OUT)/report.html, report.json, pareto.png, winner/ and winner.toml (re-runs resume).
demo: $(STAMP) web-deps
	$(VENV)/bin/laser optimize -o $(DEMO_OUT)

test: $(STAMP) web-deps real-models native-deps
	$(PY) -m pytest -q

test-slow: $(STAMP) web-deps real-models native-deps
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out build *.egg-info
