#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed (the dashboard's browser test,
# tests/e2e/test_dashboard_browser.py, drives it; no browser is ever downloaded by a tool).
#
#   scripts/ensure_chromium.sh
#
# Does nothing when /usr/bin/chromium already runs (a second call costs milliseconds). Otherwise
# installs the `chromium` package and a font with apt-get, which needs root (CI and the
# development machines run as root); anyone else is told what to run.
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [[ -x "$CHROMIUM" ]] && "$CHROMIUM" --version >/dev/null 2>&1; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "error: $CHROMIUM is missing; install it with: apt-get install -y chromium fonts-dejavu-core" >&2
    exit 1
fi

start=$SECONDS
echo "==> installing Debian's chromium (for the dashboard's browser test)"
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: refresh them once, and again
# only if the install cannot find the package.
if ! apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version
echo "==> chromium ready ($((SECONDS - start))s)"
