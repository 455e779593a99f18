"""Every code block of README.md and docs/ runs as written, in order, in a fresh
directory (the rules are in ``tests/docs_blocks.py``); some pages' results are checked
against what the page says."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from docs_blocks import docs_pages, reader_environment, run_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = docs_pages(ROOT)


def check_coming_from_scipy(ns):
    assert ns["ier"] in (1, 2, 3, 4) and ns["infodict"]["nfev"] > 0
    assert abs(ns["result"].x[0] - 2.0) < 1e-9             # at its upper bound
    assert abs(ns["popt"][0] - 4.7) < 1e-8 and abs(ns["popt"][1]) < 1e-8   # the last block
    assert ns["result"].fun.shape == (50,) and ns["result"].jac.shape == (50, 2)


def check_readme(ns):
    assert abs(ns["popt"][1] - 0.5) < 0.01


CHECKS = {"coming-from-scipy.md": check_coming_from_scipy, "README.md": check_readme}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = reader_environment()
    for key in [k for k in os.environ if k.startswith("NLSQ_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        namespace, ran = run_page(page, tmp_path, env)
    _close_clients()
    if page.name in CHECKS:
        CHECKS[page.name](namespace)
    for block, outcome in ran:
        assert outcome == "ran" or outcome.startswith("skip "), (block.where, outcome)


def _close_clients():
    """A page that leaves a distributed Client open must not leak it into other tests."""
    import sys

    if "distributed" in sys.modules:
        from distributed import default_client
        try:
            default_client().close()
        except ValueError:
            pass
    import matplotlib

    if "matplotlib.pyplot" in sys.modules:
        matplotlib.pyplot.close("all")


def test_every_marker_is_known_and_every_page_has_runnable_blocks():
    from docs_blocks import RUN, blocks

    for page in PAGES:
        found = blocks(page)                     # raises on an unknown marker
        if page.name not in ("changelog.md", "comparison.md"):
            assert any(b.lang in RUN for b in found), page.name
