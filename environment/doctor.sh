#!/usr/bin/env bash
# Reports what this machine has and lacks for SafetyNotebooks (dotnet, tools, TorchSharp native load, kernel).
set -uo pipefail
cd "$(dirname "$0")/.."
dotnet tool restore >/dev/null 2>&1 || echo "! dotnet tool restore failed (no NuGet access?)"
exec dotnet run --project src/SafetyNotebooks.Cli -c Release -p:SafetyNotebooksSkipVerify=true -- doctor
