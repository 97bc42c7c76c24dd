import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lipopt.polynomial import PAD, Polynomial


def random_poly(rng, n_vars=5, terms=8, width=3) -> Polynomial:
    sup = np.full((terms, width), PAD)
    for k in range(terms):
        d = rng.integers(0, width + 1)
        sup[k, width - d :] = np.sort(rng.choice(n_vars, size=d, replace=False))
    return Polynomial.from_terms(sup, rng.normal(size=terms), n_vars)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_substitute_affine_preserves_values(seed):
    rng = np.random.default_rng(seed)
    p = random_poly(rng)
    off, scl = rng.normal(size=5), rng.normal(size=5)
    q, mass = p.substitute_affine(off, scl)
    u = rng.random((20, 5))
    np.testing.assert_allclose(q.evaluate(u), p.evaluate(off + scl * u), atol=1e-10)
    assert mass >= q.abs_coef_sum() - 1e-12


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_binary_product_matches_pointwise_product(seed):
    rng = np.random.default_rng(seed)
    p, q = random_poly(rng), random_poly(rng)
    pq = p.multiply(q, binary=True)
    u = np.array(list(itertools.product([0.0, 1.0], repeat=5)))
    np.testing.assert_allclose(pq.evaluate(u), p.evaluate(u) * q.evaluate(u), atol=1e-10)
    assert pq.degree <= p.degree + q.degree


def test_merging_and_restrict():
    p = Polynomial.from_terms(np.array([[3, 1], [1, 3], [PAD, 2]]), np.array([1.0, 2.0, 0.0]), 4)
    assert p.num_terms == 1 and p.coef[0] == 3.0
    r, keep = p.restrict(np.array([1, 3]))
    assert r.n_vars == 2 and keep.tolist() == [1, 3]
    assert r.evaluate(np.array([2.0, 5.0])) == 30.0


def test_to_sympy_round_trip():
    p = Polynomial.from_terms(np.array([[0, 1], [PAD, 1]]), np.array([2.0, -1.0]), 2)
    expr = p.to_sympy(["a", "b"])
    assert float(expr.subs({"a": 3, "b": 2})) == 10.0


def test_to_sympy_without_sympy_is_a_one_line_error(monkeypatch):
    import sys

    from lipopt import LipoptError

    monkeypatch.setitem(sys.modules, "sympy", None)  # import sympy now raises ImportError
    with pytest.raises(LipoptError, match=r"needs sympy: pip install lipopt\[display\]"):
        Polynomial.constant(1.0, 0).to_sympy()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_vars=st.sampled_from([3, 40, 2**20]))
def test_integer_row_keys_merge_like_row_unique(seed, n_vars):
    """from_terms merges rows through int64 keys when they fit; it must match np.unique(axis=0)."""
    rng = np.random.default_rng(seed)
    sup = rng.integers(-1, min(n_vars, 5), size=(60, 4))
    sup[sup == 4] = n_vars - 1  # large indices: keys overflow int64 → row-wise fallback
    sup = np.sort(sup, axis=1)
    sup[:, -1] = np.maximum(sup[:, -1], 0)
    coef = rng.normal(size=60)
    p = Polynomial.from_terms(sup, coef, n_vars)
    uniq, inv = np.unique(sup, axis=0, return_inverse=True)
    merged = np.bincount(inv.ravel(), weights=coef, minlength=len(uniq))
    expect = {tuple(int(i) for i in r if i != PAD): c for r, c in zip(uniq, merged, strict=True) if c != 0}
    got = {tuple(int(i) for i in r if i != PAD): c for r, c in zip(p.supports, p.coef, strict=True)}
    assert got.keys() == expect.keys()
    for k, c in expect.items():
        assert got[k] == c
