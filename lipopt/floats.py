r"""Float-safety constants and helpers shared by every certificate in lipopt.

A leaf module (it imports only :mod:`math` and :mod:`numpy`), so any stage of the pipeline
network → problem → graph → hierarchy → solvers → bounds may import it.

Rounding model
--------------
IEEE 754 binary64, round to nearest. For ``∘ ∈ {+, −, ×, /}`` and ``√`` the computed result
satisfies ``fl(x∘y) = (x∘y)(1 + δ)`` with ``|δ| ≤ u = eps/2`` (the unit roundoff), barring
underflow and overflow. The error bounds in lipopt are stated with the looser

    ``|fl(x∘y) − x∘y| ≤ eps·|x∘y|``,

i.e. twice the unit roundoff, which leaves a factor 2 of headroom for second-order terms
(``γ_n = nu/(1 − nu) ≤ n·eps`` while ``n·u ≤ 1/2``; Higham, *Accuracy and Stability of Numerical
Algorithms*, Lemma 3.1). Underflow is covered where it matters by an absolute :data:`TINY` term;
overflow makes a value non-finite, and a non-finite bound is reported as ``inf`` (no certificate).

Constants
---------
* :data:`EPS` — machine epsilon ``2^-52`` (the spacing of floats in ``[1, 2)``; twice the unit
  roundoff).
* :data:`TINY` — ``2^-1074``, the smallest positive subnormal: the absolute error of one rounding
  that underflows.
* :data:`EIG_ERROR_CONSTANT` — the constant ``c`` of the eigensolver error model
  ``|λ̂ − λ| ≤ c·n·eps·‖M‖_F`` for a symmetric ``n×n`` matrix ``M``. ``numpy.linalg.eigvalsh`` /
  ``eigh`` (LAPACK ``syevd``) and ``scipy.linalg.eigh`` with ``subset_by_index`` (LAPACK ``syevr``:
  Householder tridiagonalisation, backward stable like ``syevd``) are backward stable: the
  computed eigenvalues are exact for ``M̂ + E`` with ``‖E‖₂ ≤ p(n)·eps·‖M̂‖₂`` (LAPACK Users'
  Guide §4.7, "p(n) a modestly growing function of n"). We take ``p(n) = 16·n``, far above the
  observed errors, and ``‖M̂‖₂ ≤ ‖M̂‖_F``; by Weyl's inequality every eigenvalue then moves by at
  most ``16·n·eps·‖M̂‖_F``.

Helpers
-------
* :func:`round_up` / :func:`round_up_array` — move ``steps`` floats towards ``+inf`` (default 2:
  covers one rounding of the value with a step to spare; ``steps=1`` where a single correctly
  rounded operation is all there is to cover).
* :func:`padded_fsum` — an upper bound on the exact sum of float terms: the correctly rounded
  :func:`math.fsum`, plus ``4·eps·Σ|t|``, rounded up twice. No check for non-finite terms.
* :func:`safe_sum` — :func:`padded_fsum`, but ``inf`` as soon as a term is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = [
    "EIG_ERROR_CONSTANT",
    "EPS",
    "SUM_PADDING",
    "TINY",
    "padded_fsum",
    "round_up",
    "round_up_array",
    "safe_sum",
]

#: machine epsilon ``2^-52`` (twice the unit roundoff)
EPS = float(np.finfo(float).eps)
#: the smallest positive subnormal ``2^-1074`` (absolute error of an underflowing rounding)
TINY = 2.0**-1074
#: constant ``c`` of the eigensolver error model ``|λ̂ − λ| ≤ c·n·eps·‖M‖_F`` (see the module doc)
EIG_ERROR_CONSTANT = 16.0
#: relative padding (in units of ``eps``) that :func:`padded_fsum` adds to ``Σ|t|``
SUM_PADDING = 4.0


def round_up(x: float, steps: int = 2) -> float:
    """``x`` moved ``steps`` floats towards ``+inf`` (:func:`math.nextafter`; ``inf``/``nan`` stay)."""
    for _ in range(steps):
        x = math.nextafter(x, math.inf)
    return x


def round_up_array(a: np.ndarray, steps: int = 2) -> np.ndarray:
    """Elementwise :func:`round_up` of an array (:func:`numpy.nextafter`)."""
    for _ in range(steps):
        a = np.nextafter(a, np.inf)
    return a


def padded_fsum(terms: Iterable[float]) -> float:
    """Upper bound on the exact sum of the float ``terms``: ``fsum(t) + 4·eps·fsum(|t|)``, rounded
    up twice. ``fsum`` is correctly rounded; the padding covers that rounding and the rounding of
    the padding itself. Non-finite terms give whatever ``fsum`` gives (``inf``, ``nan`` or its
    ``ValueError`` for ``inf − inf``); use :func:`safe_sum` to map them to ``inf``."""
    terms = list(terms)
    s = math.fsum(terms)
    s += SUM_PADDING * EPS * math.fsum(abs(t) for t in terms)
    return round_up(s)


def safe_sum(terms: Iterable[float]) -> float:
    """An upper bound on the exact sum of the float ``terms`` (fsum, padded, rounded up);
    ``inf`` if any term is not finite."""
    terms = list(terms)
    if not all(math.isfinite(t) for t in terms):
        return math.inf
    return padded_fsum(terms)
