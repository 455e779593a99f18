#!/usr/bin/env bash
# Build the MkDocs site into site/ (ignored by git); fails on any warning.
# Needs: pip install ".[docs]"  (mkdocs, mkdocstrings[python]).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The config must be passed by this relative path: docs_dir "." sits next to it.
exec mkdocs build --strict -f docs/mkdocs.yml "$@"
