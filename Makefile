# Two commands do all the set-up: `make demo` and `make test`.
# Each creates .venv and installs torch==2.13.0 first (the CPU build found locally), then the project,
# so the resolver never pulls a CUDA torch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.laser-installed
DEMO_OUT ?= out/demo

.PHONY: demo test test-slow lint venv web-deps real-models native-deps ssh-deps arm64-device frameworks-venv clean

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

# `laser run/bench --on ssh://` tests: Debian's OpenSSH server (started by the tests on 127.0.0.1 with a throwaway key;
# the system's sshd is not configured or started). apt-get as root; otherwise the command is printed and they skip.
ssh-deps:
	@test -x /usr/sbin/sshd || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q openssh-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q openssh-server >/dev/null; } \
	  || echo "could not install openssh-server; the ssh tests will skip: apt-get install -y openssh-server"; \
	  else echo "sshd is missing; the ssh tests will skip: sudo apt-get install -y openssh-server"; fi; }

# The emulated ARM64 device of `make test-slow`: a Debian arm64 root (debootstrap --foreign, no binfmt_misc needed)
# with python3 and PyPI's aarch64 onnxruntime + numpy, run by qemu-aarch64-static; built once into
# $${XDG_CACHE_HOME:-~/.cache}/laser/arm64-root (scripts/arm64-device.sh).
arm64-device: ssh-deps
	@command -v debootstrap >/dev/null 2>&1 && command -v qemu-aarch64-static >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q debootstrap qemu-user-static >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap qemu-user-static >/dev/null; } \
	  || echo "could not install debootstrap/qemu-user-static: apt-get install -y debootstrap qemu-user-static"; \
	  else echo "debootstrap or qemu-user-static is missing: sudo apt-get install -y debootstrap qemu-user-static"; fi; }
	PYTHON=$(PY) sh scripts/arm64-device.sh

# The main job on the built-in digits-cnn + digits data: recipes x formats x backends, measured on LASER;
# writes $(DEMO_OUT)/report.html, report.json, pareto.png, winner/ and winner.toml (re-runs resume).
demo: $(STAMP) web-deps
	$(VENV)/bin/laser optimize -o $(DEMO_OUT)

test: $(STAMP) web-deps real-models native-deps ssh-deps
	$(PY) -m pytest -q

# `laser import` of TF / Keras / TFLite / Paddle models: tensorflow-cpu + tf2onnx and paddlepaddle + paddle2onnx
# in their own venv (no torch, no laser: their protobuf/numpy pins stay out of .venv). laser runs the converters
# there through LASER_FRAMEWORKS_PYTHON (or --python); the slow tests build their source models with it.
FW_VENV ?= .venv-frameworks
frameworks-venv: $(FW_VENV)/.installed
$(FW_VENV)/.installed:
	test -x $(FW_VENV)/bin/python || $(PYTHON) -m venv $(FW_VENV)
	$(FW_VENV)/bin/python -m pip install --quiet "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0" \
	  "paddlepaddle==3.3.1" "paddle2onnx==2.1.0"
	touch $@

test-slow: $(STAMP) web-deps real-models native-deps arm64-device frameworks-venv
	LASER_FRAMEWORKS_PYTHON=$(CURDIR)/$(FW_VENV)/bin/python $(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(FW_VENV) out build *.egg-info
