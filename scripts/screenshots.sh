#!/usr/bin/env bash
# Regenerate the docs gallery (docs/README.md shows it):
#   docs/screenshots/<url_path>.png   every page of pages/_registry.py as it first opens (the default page,
#                                     served at "/", is named after its file: home.png), taken by
#                                     tests/browser/test_browser_pages.py::test_page_opens_without_errors
#   docs/screenshots/<state>.png      the interesting states of tests/browser/test_browser_lessons.py's GALLERY
#                                     (toy training in compare mode after some steps, the explainer's step 6,
#                                     CosFace's decision margins, …), taken by test_gallery_state
# in headless Chromium, 1400 px wide, full height.  Each picture is taken by a test that also checks the page
# shows no error, so a broken page fails here instead of landing in the gallery.
#
#   bash scripts/screenshots.sh            # needs `bash scripts/setup-dev.sh` once
#
# Extra arguments go to pytest, e.g. `-k target_logit` for one page's pictures.  Without them the folder is
# emptied first, so a page that left the registry leaves the gallery too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="$PWD/docs/screenshots"
mkdir -p "$out"
if (($# == 0)); then
    rm -f "$out"/*.png
fi

SCREENSHOT_DIR="$out" python -m pytest \
    tests/browser/test_browser_pages.py::test_page_opens_without_errors \
    tests/browser/test_browser_lessons.py::test_gallery_state \
    -m "browser or gallery" -p no:cacheprovider -q "$@"

echo "screenshots in docs/screenshots/:"
ls -1 "$out"
missing=()
for png in "$out"/*.png; do
    name="$(basename "$png")"
    grep -qF "screenshots/$name" docs/README.md 2>/dev/null || missing+=("$name")
done
if ((${#missing[@]})); then
    echo "not described in docs/README.md yet: ${missing[*]}" >&2
fi
