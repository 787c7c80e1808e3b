#!/usr/bin/env bash
# Registers the .NET (C#) Jupyter kernel (dotnet-interactive 1.0.712001, pinned in .config/dotnet-tools.json)
# so the notebooks open in JupyterLab, Jupyter Notebook or VS Code's Jupyter extension.
# Jupyter itself is optional for SafetyNotebooks (the headless runner does not need it).
#
# The kernel's HTTP API is bound to loopback only (--http-local-only): by default dotnet-interactive serves it on
# every network interface (ports 2048-3000), which would let anyone on the network run code in a learner's kernel.
#
#   bash environment/install-jupyter-kernel.sh               register the kernels with Jupyter (for this user)
#   bash environment/install-jupyter-kernel.sh --spec-only DIR  only write the kernel specs to DIR (no Jupyter needed)
set -euo pipefail
shopt -s dotglob nullglob   # the kernel folders are named .net-csharp, .net-fsharp, .net-pwsh
cd "$(dirname "$0")/.."
spec_only=""
if [ "${1:-}" = "--spec-only" ]; then
  spec_only="${2:?--spec-only needs a folder, e.g. --spec-only /tmp/kernels}"
fi
dotnet tool restore >/dev/null
if [ -z "$spec_only" ] && ! command -v jupyter >/dev/null 2>&1; then
  cat >&2 <<'MSG'
error: 'jupyter' is not installed. Install it, then run this script again:
  Debian/Ubuntu:  sudo apt-get install jupyter-notebook python3-nbclient jupyter-nbconvert
  pip:            pip install jupyterlab
MSG
  exit 2
fi

# Write the specs to a folder first, add --http-local-only to each kernel's argv, then hand them to Jupyter.
specs="${spec_only:-$(mktemp -d)}"
mkdir -p "$specs"
dotnet tool run dotnet-interactive -- jupyter install --path "$specs" >/dev/null
jsons=("$specs"/*/kernel.json)
[ ${#jsons[@]} -gt 0 ] || { echo "error: dotnet-interactive wrote no kernel specs to $specs; run 'dotnet tool restore' and try again." >&2; exit 1; }
for json in "${jsons[@]}"; do
  if ! grep -q -- '"--http-local-only"' "$json"; then
    # argv ends with "--http-port-range", "2048-3000": append the flag after the range.
    sed -i -E 's/^( *)"([0-9]+-[0-9]+)"$/\1"\2",\n\1"--http-local-only"/' "$json"
  fi
  if ! grep -q -- '"--http-local-only"' "$json"; then
    echo "error: could not add --http-local-only to $json (its argv layout changed?); edit it by hand before registering it." >&2
    exit 1
  fi
done
if [ -n "$spec_only" ]; then
  echo "Kernel specs written to $specs (HTTP API on loopback only)."
  exit 0
fi
# The kernel spec runs 'dotnet interactive', which resolves through this repository's tool manifest
# because Jupyter starts kernels in the notebook's folder (notebooks/ is inside the repository).
for dir in "$specs"/*/; do
  jupyter kernelspec install --user --replace --name "$(basename "$dir")" "$dir" >/dev/null
done
rm -rf "$specs"
jupyter kernelspec list
echo "Kernel registered (HTTP API on loopback only). Start JupyterLab in this repository ('jupyter lab notebooks') and pick '.NET (C#)'."
