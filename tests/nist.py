"""NIST StRD nonlinear regression problems: data, starts, certified values, models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

DATA = Path(__file__).parent / "data"


def _misra1a(x, b1, b2): return b1 * (1 - jnp.exp(-b2 * x))
def _misra1b(x, b1, b2): return b1 * (1 - (1 + b2 * x / 2) ** (-2))
def _misra1c(x, b1, b2): return b1 * (1 - (1 + 2 * b2 * x) ** (-0.5))
def _misra1d(x, b1, b2): return b1 * b2 * x * ((1 + b2 * x) ** (-1))
def _chwirut(x, b1, b2, b3): return jnp.exp(-b1 * x) / (b2 + b3 * x)
def _danwood(x, b1, b2): return b1 * x ** b2
def _lanczos(x, b1, b2, b3, b4, b5, b6):
    return b1 * jnp.exp(-b2 * x) + b3 * jnp.exp(-b4 * x) + b5 * jnp.exp(-b6 * x)
def _gauss(x, b1, b2, b3, b4, b5, b6, b7, b8):
    return (b1 * jnp.exp(-b2 * x) + b3 * jnp.exp(-(x - b4) ** 2 / b5 ** 2)
            + b6 * jnp.exp(-(x - b7) ** 2 / b8 ** 2))
def _mgh17(x, b1, b2, b3, b4, b5): return b1 + b2 * jnp.exp(-x * b4) + b3 * jnp.exp(-x * b5)
def _roszman1(x, b1, b2, b3, b4): return b1 - b2 * x - jnp.arctan(b3 / (x - b4)) / jnp.pi
def _enso(x, b1, b2, b3, b4, b5, b6, b7, b8, b9):
    t = 2 * jnp.pi * x
    return (b1 + b2 * jnp.cos(t / 12) + b3 * jnp.sin(t / 12) + b5 * jnp.cos(t / b4)
            + b6 * jnp.sin(t / b4) + b8 * jnp.cos(t / b7) + b9 * jnp.sin(t / b7))
def _rat3(x, b1, b2, b3, b4, b5, b6, b7):
    return (b1 + b2 * x + b3 * x**2 + b4 * x**3) / (1 + b5 * x + b6 * x**2 + b7 * x**3)
def _kirby2(x, b1, b2, b3, b4, b5): return (b1 + b2 * x + b3 * x**2) / (1 + b4 * x + b5 * x**2)
def _nelson(x, b1, b2, b3):  # x is (2, N): x1, x2; y is log(response)
    return b1 - b2 * x[0] * jnp.exp(-b3 * x[1])
def _mgh09(x, b1, b2, b3, b4): return b1 * (x**2 + x * b2) / (x**2 + x * b3 + b4)
def _mgh10(x, b1, b2, b3): return b1 * jnp.exp(b2 / (x + b3))
def _thurber(x, b1, b2, b3, b4, b5, b6, b7): return _rat3(x, b1, b2, b3, b4, b5, b6, b7)
def _boxbod(x, b1, b2): return b1 * (1 - jnp.exp(-b2 * x))
def _rat42(x, b1, b2, b3): return b1 / (1 + jnp.exp(b2 - b3 * x))
def _rat43(x, b1, b2, b3, b4): return b1 / ((1 + jnp.exp(b2 - b3 * x)) ** (1 / b4))
def _eckerle4(x, b1, b2, b3): return (b1 / b2) * jnp.exp(-0.5 * ((x - b3) / b2) ** 2)
def _bennett5(x, b1, b2, b3): return b1 * (b2 + x) ** (-1 / b3)


MODELS = {
    "Misra1a": _misra1a, "Misra1b": _misra1b, "Misra1c": _misra1c, "Misra1d": _misra1d,
    "Chwirut1": _chwirut, "Chwirut2": _chwirut, "DanWood": _danwood,
    "Lanczos1": _lanczos, "Lanczos2": _lanczos, "Lanczos3": _lanczos,
    "Gauss1": _gauss, "Gauss2": _gauss, "Gauss3": _gauss, "MGH17": _mgh17,
    "Roszman1": _roszman1, "ENSO": _enso, "Hahn1": _rat3, "Kirby2": _kirby2, "Nelson": _nelson,
    "MGH09": _mgh09, "MGH10": _mgh10, "Thurber": _thurber, "BoxBOD": _boxbod,
    "Rat42": _rat42, "Rat43": _rat43, "Eckerle4": _eckerle4, "Bennett5": _bennett5,
}


@dataclass
class Problem:
    name: str
    x: np.ndarray
    y: np.ndarray
    starts: tuple
    certified: np.ndarray
    certified_sd: np.ndarray
    rss: float

    @property
    def model(self):
        return MODELS[self.name]


_NUM = r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?"


def load(name: str) -> Problem:
    lines = (DATA / f"{name}.dat").read_text().splitlines()
    params = [ln for ln in lines if re.match(r"\s*b\d+\s*=", ln)]
    starts1, starts2, cert, sd = [], [], [], []
    for ln in params:
        nums = re.findall(_NUM, ln.split("=", 1)[1])
        starts1.append(float(nums[0])); starts2.append(float(nums[1]))
        cert.append(float(nums[2])); sd.append(float(nums[3]))
    rss = float(re.findall(_NUM, next(ln for ln in lines if "Residual Sum of Squares" in ln))[-1])
    start = next(i for i, ln in enumerate(lines) if re.match(r"\s*Data:\s+y", ln))
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[start + 1:] if ln.strip()])
    y = rows[:, 0]
    x = rows[:, 1] if rows.shape[1] == 2 else rows[:, 1:].T.copy()
    if name == "Nelson":
        y = np.log(y)
    return Problem(name, x, y, (np.array(starts1), np.array(starts2)), np.array(cert),
                   np.array(sd), rss)


def lre(estimate, certified) -> np.ndarray:
    """Log relative error (digits of agreement), capped at 15 as NIST does."""
    estimate, certified = np.asarray(estimate, float), np.asarray(certified, float)
    with np.errstate(divide="ignore"):
        err = np.abs(estimate - certified) / np.abs(certified)
        return np.minimum(15.0, -np.log10(np.where(err == 0, 1e-16, err)))


def available() -> list[str]:
    return sorted(p.stem for p in DATA.glob("*.dat"))
