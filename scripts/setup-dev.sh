#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine with Python 3.11.  Safe to run again.
#
#   bash scripts/setup-dev.sh
#
# 1. Debian packages, only if something is missing: Chromium + ChromeDriver (the browser tests drive
#    /usr/bin/chromium; Playwright's own browser downloads are never used) and the Fashion-MNIST data set
#    (/usr/share/datasets/fashion-mnist).
# 2. The Python packages of requirements-dev.txt, the project itself installed editable.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
    echo "setup-dev: ERROR: $*" >&2
    exit 1
}

PYTHON=${PYTHON:-python}
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python 3.11 (or set PYTHON=...)"

# --- Debian packages -----------------------------------------------------------------------------
missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
[[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)

if ((${#missing[@]})); then
    echo "setup-dev: missing Debian packages: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get is not available; install ${missing[*]} by hand (Debian package names)"
    if [[ $(id -u) -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        die "not root and no sudo: run as root 'apt-get update && apt-get install -y ${missing[*]}'"
    fi
    apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    "${apt[@]}" update ||
        die "'apt-get update' failed (no network to Debian's archive, or sudo needs a password?)"
    # Install the full set named in the docs; apt skips what is already there.
    "${apt[@]}" install -y chromium chromium-driver dataset-fashion-mnist ||
        die "'apt-get install chromium chromium-driver dataset-fashion-mnist' failed"
    [[ -x /usr/bin/chromium ]] || die "apt-get finished but /usr/bin/chromium is still missing"
    [[ -d /usr/share/datasets/fashion-mnist ]] ||
        die "apt-get finished but /usr/share/datasets/fashion-mnist is still missing"
else
    echo "setup-dev: Debian packages present (chromium, chromium-driver, dataset-fashion-mnist)"
fi

# --- Python packages -----------------------------------------------------------------------------
# requirements.txt pins torch==2.13.0 on purpose: that CPU build installs offline on the project's
# machines, where a newer or unpinned torch would download a CUDA build of several GB.
"$PYTHON" -m pip install --disable-pip-version-check -r requirements-dev.txt ||
    die "'$PYTHON -m pip install -r requirements-dev.txt' failed"

"$PYTHON" - <<'EOF' || die "installed packages do not import; see the traceback above"
import playwright.sync_api  # noqa: F401
import plotly  # noqa: F401
import pytest  # noqa: F401
import streamlit  # noqa: F401
import torch  # noqa: F401

import arcface_viz  # noqa: F401
EOF
echo "setup-dev: done"
