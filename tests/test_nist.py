"""NIST StRD nonlinear regression: every problem in tests/data x both starts.

Every problem runs with the default ``reduction='normal'``; the TSQR form
(``reduction='qr'``) runs on the ill-conditioned problems where it matters (each
reduction is a separate compile, so the whole matrix would double the suite's time;
``python tests/nist_table.py`` prints it).

Certified parameters must be matched to at least 6 significant digits (LRE >= 6) and the
certified standard deviations (``perr`` with ``absolute_sigma=False``, which is NIST's
definition) to at least 4. ``python tests/nist_table.py`` prints the whole table.
"""

import nist
import pytest
from nist_table import REDUCTIONS, run

PROBLEMS = nist.available()  # read at collection time: new .dat files are picked up

QR_PROBLEMS = ("Hahn1", "Kirby2", "Lanczos2", "MGH09", "MGH10", "Bennett5", "Thurber", "Nelson")

# Standard deviations that cannot reach LRE 4 (strict: an XPASS fails, so the marker
# must be removed once the cause is gone).
SD_FLOAT64_LIMIT = ("Lanczos1 fits to rounding level (RSS 1.4e-25): its residuals and hence "
                    "the SDs have ~3 correct digits in float64; scipy's trf gets LRE 3.1 too")
KNOWN_SD_FAILURES = {
    ("Lanczos1", "normal"): SD_FLOAT64_LIMIT,
    ("Lanczos1", "qr"): SD_FLOAT64_LIMIT,
}


def _cases(known=None):
    cases = []
    for name in PROBLEMS:
        for start in (1, 2):
            for red in [r for r in REDUCTIONS if r == "normal" or name in QR_PROBLEMS]:
                marks = []
                if known and (name, red) in known:
                    marks = [pytest.mark.xfail(reason=known[(name, red)], strict=True)]
                cases.append(pytest.param(name, start, red, marks=marks,
                                          id=f"{name}-start{start}-{red}"))
    return cases


@pytest.mark.parametrize("problem, start, reduction", _cases())
def test_nist_parameters(problem, start, reduction):
    row = run(problem, start, reduction)
    assert row.tier == "standard"
    assert row.status > 0, f"no convergence: status {row.status}, nfev {row.nfev}"
    assert row.lre_params >= 6, (
        f"{problem} start {start} ({reduction}): min LRE of the parameters {row.lre_params:.2f}")


@pytest.mark.parametrize("problem, start, reduction", _cases(KNOWN_SD_FAILURES))
def test_nist_standard_deviations(problem, start, reduction):
    row = run(problem, start, reduction)
    assert row.lre_sd >= 4, (
        f"{problem} start {start} ({reduction}): min LRE of the standard deviations "
        f"{row.lre_sd:.2f}")


def test_every_problem_has_a_model():
    assert len(PROBLEMS) >= 19
    missing = [p for p in PROBLEMS if p not in nist.MODELS]
    assert not missing, missing
