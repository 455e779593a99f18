#!/usr/bin/env bash
# Build the MkDocs site into site/ (ignored by git; SITE_DIR=... for another folder); fails
# on any warning, and if a page loads a script or a style sheet from another site: the
# docs must work offline (an HPC login node), so code is highlighted at build time by
# Pygments (see docs/mkdocs.yml) instead of by highlight.js from a CDN.
# Needs: pip install ".[docs]"  (mkdocs, mkdocstrings[python], pygments).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
site="${SITE_DIR:-site}"
# The config must be passed by this relative path: docs_dir "." sits next to it.
mkdocs build --strict -f docs/mkdocs.yml --site-dir "$(realpath -m "$site")" "$@"
if grep -rEn --include='*.html' '<(script|link)[^>]+(src|href)="(https?:)?//' "$site"; then
    echo "error: the pages above load a script or style sheet from the network" >&2
    exit 1
fi
if ! grep -q '<div class="highlight">' "$site/index.html"; then
    echo "error: no Pygments-highlighted code in $site/index.html (is pygments installed?)" >&2
    exit 1
fi
