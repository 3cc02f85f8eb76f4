#!/bin/sh
# Build (once) an emulated ARM64 "device": a Debian bookworm arm64 root filesystem from debootstrap, with
# python3 and the aarch64 onnxruntime + numpy wheels from PyPI, run through qemu-aarch64-static.
# No binfmt_misc is needed: the arm64 python is started explicitly as `qemu-aarch64-static -L ROOT ROOT/usr/bin/python3`
# by ROOT/laser-bin/python3, which an SSH device puts first on its PATH (tests/sshd.py does so).
# Usage: scripts/arm64-device.sh [ROOT]   (default ${XDG_CACHE_HOME:-~/.cache}/laser/arm64-root; built once, then a no-op)
set -eu
ROOT=${1:-${LASER_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/laser/arm64-root}}
PY=${PYTHON:-python3}
# onnxruntime 1.32.0's aarch64 wheel dies (SIGSEGV) while loading its extension under qemu-user 7.2 (bookworm's);
# 1.22.0 imports and runs there.
ORT=${ORT_VERSION:-1.22.0}
NUMPY=${NUMPY_VERSION:-2.4.6}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -f "$ROOT/.laser-ready" ]; then echo "$ROOT"; exit 0; fi
need() { command -v "$1" >/dev/null 2>&1 || { echo "$1 is missing: apt-get install -y $2" >&2; exit 3; }; }
need debootstrap debootstrap
need qemu-aarch64-static qemu-user-static
need dpkg-deb dpkg
BUILD="$ROOT.build"   # an interrupted build resumes from its last finished step (the .step-* markers)
mkdir -p "$BUILD"
if [ ! -f "$BUILD/.step-debootstrap" ]; then
  # --foreign: download and unpack on the host without running arm64 code (the second stage needs binfmt_misc).
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-pip bookworm "$BUILD" "$MIRROR"
  # Unpack every downloaded package (the first stage only unpacks the required set); no maintainer scripts run.
  for deb in "$BUILD"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$BUILD"; done
  rm -f "$BUILD"/var/cache/apt/archives/*.deb
  cp "$(command -v qemu-aarch64-static)" "$BUILD/usr/bin/"
  touch "$BUILD/.step-debootstrap"
fi
# Wheels for the device (aarch64, CPython 3.11 = bookworm's python3), from PyPI on the host.
"$PY" -m pip download --quiet --dest "$BUILD/wheels" --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
  "onnxruntime==$ORT" "numpy==$NUMPY"
mkdir -p "$BUILD/laser-bin"
cat > "$BUILD/laser-bin/python3" <<WRAP
#!/bin/sh
# The device's python3: Debian arm64 python under qemu user-mode emulation.
here=\$(dirname "\$0")/..
root=\$(cd "\$here" && pwd)
export LASER_EMULATED="qemu-aarch64-static"
exec qemu-aarch64-static -L "\$root" "\$root/usr/bin/python3.11" "\$@"
WRAP
chmod +x "$BUILD/laser-bin/python3"
# pip inside the device (arm64 pip under qemu), from the downloaded wheels only.
PATH="$BUILD/laser-bin:$PATH" python3 -m pip install --quiet --no-index --break-system-packages --no-compile \
  --root-user-action=ignore --find-links "$BUILD/wheels" "onnxruntime==$ORT" "numpy==$NUMPY"
PATH="$BUILD/laser-bin:$PATH" python3 -c "import platform, onnxruntime, numpy; print(platform.machine(), onnxruntime.__version__, numpy.__version__)"
rm -f "$BUILD"/.step-*
touch "$BUILD/.laser-ready"
rm -rf "$ROOT"
mv "$BUILD" "$ROOT"
echo "$ROOT"
