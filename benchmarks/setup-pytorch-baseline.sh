#!/usr/bin/env bash
# Installs the PyTorch baseline for 'safety-notebooks bench --baseline' WITHOUT putting a second libtorch
# on the system library path (Debian's libtorch in /usr/lib breaks TorchSharp in notebooks elsewhere;
# SafetyNotebooks preloads its own libtorch, but other .NET tools may not).
#
# Debian 12's python3-torch (PyTorch 1.13.1) is installed once so apt brings its dependencies
# (numpy, OpenBLAS with pthreads, ...), its two packages are unpacked into a private folder, and then
# removed from the system. Run as root (or with sudo). Idempotent.
set -euo pipefail
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/artifacts/pytorch-baseline}"
if [ -f "$dest/usr/lib/python3/dist-packages/torch/__init__.py" ]; then
  echo "PyTorch baseline already unpacked in $dest"; exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: this script needs Debian/Ubuntu's apt-get; elsewhere install PyTorch 1.13+ with pip and pass --python to bench." >&2; exit 2
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq python3-torch libopenblas0-pthread >/dev/null
mkdir -p "$dest"
tmp="$(mktemp -d)"
( cd "$tmp" && apt-get download python3-torch libtorch1.13 >/dev/null )
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest"; done
rm -rf "$tmp"
$SUDO apt-get remove -y -qq python3-torch libtorch1.13 libtorch-dev libtorch-test >/dev/null 2>&1 || true
LD_LIBRARY_PATH="$dest/usr/lib/x86_64-linux-gnu" PYTHONPATH="$dest/usr/lib/python3/dist-packages" \
  /usr/bin/python3 -c "import torch; print('PyTorch', torch.__version__, 'unpacked in $dest; system libtorch removed')"
