"""The code blocks this package's scipy pages add run as written (issue 15): every block of
docs/coming-from-scipy.md in order, and the README's curve_fit block after the quick start
it builds on. (Issue 17 extends this to every page.)"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def run(blocks: list[str]) -> dict:
    namespace: dict = {"__name__": "__docs__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, block in enumerate(blocks):
            exec(compile(block, f"<block {i}>", "exec"), namespace)
    return namespace


def test_coming_from_scipy_page_runs():
    blocks = python_blocks(ROOT / "docs" / "coming-from-scipy.md")
    assert len(blocks) == 3
    ns = run(blocks)
    assert ns["ier"] in (1, 2, 3, 4) and ns["infodict"]["nfev"] > 0
    assert abs(ns["result"].x[0] - 2.0) < 1e-9             # at its upper bound
    assert abs(ns["popt"][0] - 4.7) < 1e-8 and abs(ns["popt"][1]) < 1e-8   # the last block
    assert ns["result"].fun.shape == (50,) and ns["result"].jac.shape == (50, 2)


def test_readme_curve_fit_block_runs_after_the_quick_start():
    blocks = python_blocks(ROOT / "README.md")
    quick = next(b for b in blocks if "popt, pcov = nlsq_dask.fit(model, x, y" in b)
    scipy_block = next(b for b in blocks if "nlsq_dask.curve_fit(model" in b)
    ns = run([quick, scipy_block])
    assert abs(ns["popt"][1] - 0.5) < 0.01
