#!/usr/bin/env bash
# The one setup script: CI runs it before the tests, and the JupyterHub image (environment/Dockerfile) runs the same steps,
# so CI proves the image's steps. It restores the pinned tools (dotnet-interactive, .config/dotnet-tools.json) and the NuGet
# packages, and builds everything in Release; the build loads TorchSharp's native backend once (applying the Debian 12 /
# Ubuntu 22.04 libstdc++ fix when the system needs it) and fails with the reason when it cannot.
#
#   bash environment/setup.sh            restore and build (what CI runs)
#   bash environment/setup.sh --kernel   also register the .NET (C#) Jupyter kernel for this user (needs jupyter)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
kernel=""
case "${1:-}" in
  "") ;;
  --kernel) kernel=1 ;;
  *) echo "error: unknown option '$1'; use 'bash environment/setup.sh' or 'bash environment/setup.sh --kernel'." >&2; exit 2 ;;
esac
command -v dotnet >/dev/null 2>&1 || { echo "error: 'dotnet' is not on PATH; install the .NET 10 SDK (https://dot.net) and run this again." >&2; exit 2; }
dotnet tool restore
dotnet build -c Release
if [ -n "$kernel" ]; then
  bash environment/install-jupyter-kernel.sh
fi
echo "setup done: library built in Release (notebooks load src/SafetyNotebooks.Interactive/bin/Release/net10.0)."
