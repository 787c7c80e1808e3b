#!/usr/bin/env bash
# Registers the .NET (C#) Jupyter kernel (dotnet-interactive 1.0.712001, pinned in .config/dotnet-tools.json)
# so the notebooks open in JupyterLab, Jupyter Notebook or VS Code's Jupyter extension.
# Jupyter itself is optional for SafetyNotebooks (the headless runner does not need it).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet tool restore
if ! command -v jupyter >/dev/null 2>&1; then
  cat >&2 <<'MSG'
error: 'jupyter' is not installed. Install it, then run this script again:
  Debian/Ubuntu:  sudo apt-get install jupyter-notebook python3-nbclient jupyter-nbconvert
  pip:            pip install jupyterlab
MSG
  exit 2
fi
# The kernel spec runs 'dotnet interactive', which resolves through this repository's tool manifest
# because Jupyter starts kernels in the notebook's folder (notebooks/ is inside the repository).
dotnet tool run dotnet-interactive -- jupyter install
jupyter kernelspec list
echo "Kernel registered. Start JupyterLab in this repository ('jupyter lab notebooks') and pick '.NET (C#)'."
