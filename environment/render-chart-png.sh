#!/usr/bin/env bash
# Renders a chart page written by 'safety-notebooks export --charts' to a PNG with headless Chromium
# (offline: plotly.js is embedded in the page). Used to make the README's images from real runs.
#   usage: environment/render-chart-png.sh artifacts/charts/NAME-chart1.html out.png [width] [height]
set -euo pipefail
page="$1"; out="$2"; width="${3:-900}"; height="${4:-480}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
  echo "error: no Chromium found; install it (Debian/Ubuntu: apt-get install chromium) and run again." >&2
  exit 2
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${width},${height}" \
  --virtual-time-budget=5000 --screenshot="$(realpath -m "$out")" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out"
