"""Valid relations between Lipschitz constants, used to turn one bound into another.

For a network ``N: Rⁿ → Rᵐ`` with Jacobian ``J(x)`` and a scalar target ``f = cᵀN`` with gradient
``g(x) = J(x)ᵀc``:

* **norm conversions** — from the norm inequalities ``‖v‖₁ ≤ √k‖v‖₂``, ``‖v‖₂ ≤ ‖v‖₁``,
  ``‖v‖∞ ≤ ‖v‖₂`` and ``‖v‖₂ ≤ √k‖v‖∞`` (``v ∈ Rᵏ``), pointwise in ``x`` and hence for the suprema:

  ======================  =========================  ===========================================
  quantity                from ℓ2 to ℓp              why
  ======================  =========================  ===========================================
  scalar ``L_∞(f)``       ``≤ √n · L_2(f)``          ``‖g‖₁ ≤ √n‖g‖₂``
  scalar ``L_1(f)``       ``≤ L_2(f)``               ``‖g‖∞ ≤ ‖g‖₂``
  network ``‖J‖_{∞→∞}``   ``≤ √n · ‖J‖_{2→2}``       ``‖Jx‖∞ ≤ ‖Jx‖₂ ≤ ‖J‖₂‖x‖₂ ≤ √n‖J‖₂‖x‖∞``
  network ``‖J‖_{1→1}``   ``≤ √m · ‖J‖_{2→2}``       ``‖Jx‖₁ ≤ √m‖Jx‖₂ ≤ √m‖J‖₂‖x‖₂ ≤ √m‖J‖₂‖x‖₁``
  ======================  =========================  ===========================================

  and back to ℓ2: scalar ``L_2(f) ≤ L_∞(f)`` and ``≤ √n·L_1(f)``; network ``‖J‖₂ ≤ √m‖J‖_{∞→∞}``
  and ``≤ √n‖J‖_{1→1}``. The ℓ∞ network constant is the maximum over rows of the scalar ones, so
  the scalar and network rules agree there.
* **global as local** — a bound over all of ``Rⁿ`` bounds the constant over any input box.

Every converted value is rounded up (one multiplication by a rounded-up factor).
"""

from __future__ import annotations

import math

from .floats import EPS


def conversion_factor(
    from_norm: str, to_norm: str, n_inputs: int, n_outputs: int, network: bool
) -> float | None:
    """``κ`` with ``L_to ≤ κ · L_from`` for the quantity (``network``: the ℓp→ℓp norm of the
    Jacobian; else a scalar target), or ``None`` when no such relation is used."""
    if from_norm == to_norm:
        return 1.0
    n, m = float(n_inputs), float(n_outputs)
    table = {
        ("2", "inf"): math.sqrt(n),
        ("2", "1"): math.sqrt(m) if network else 1.0,
        ("inf", "2"): math.sqrt(m) if network else 1.0,
        ("1", "2"): math.sqrt(n),
    }
    factor = table.get((from_norm, to_norm))
    return None if factor is None else factor * (1 + 4 * EPS)


def describe_conversion(from_norm: str, to_norm: str, factor: float, network: bool) -> str:
    """One line saying which inequality turned an ℓ_from bound into an ℓ_to bound."""
    sym = {"inf": "∞", "2": "2", "1": "1"}
    if abs(factor - 1.0) < 1e-12:
        scale = "the same value"
    else:
        dim = "m" if network and (from_norm, to_norm) in (("2", "1"), ("inf", "2")) else "n"
        scale = f"√{dim} = {factor:.6g} times the value"
    return (
        f"converted from an ℓ{sym[from_norm]} bound ({scale}): every ℓ{sym[to_norm]} constant is at most "
        f"that multiple of the ℓ{sym[from_norm]} one"
    )
