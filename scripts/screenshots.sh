#!/usr/bin/env bash
# Regenerate the docs gallery: docs/screenshots/<url_path>.png for every page of pages/_registry.py
# (the default page, served at "/", is named after its file: home.png), taken by the browser test that
# opens each page (tests/browser/test_browser_pages.py) in headless Chromium, 1400 px wide, full height.
#
#   bash scripts/screenshots.sh            # needs `bash scripts/setup-dev.sh` once
#
# Extra arguments go to pytest, e.g. `-k target-logit` for one page.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="$PWD/docs/screenshots"
mkdir -p "$out"

SCREENSHOT_DIR="$out" python -m pytest tests/browser/test_browser_pages.py -k test_page_opens_without_errors \
    -p no:cacheprovider -q "$@"

echo "screenshots in docs/screenshots/:"
ls -1 "$out"
