"""Norm objects: parsing, vector and operator norms, directions, row combinations."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt import LipoptError
from lipopt.norms import NORMS, Norm, parse_norm

ORD = {"inf": np.inf, "2": 2, "1": 1}


@pytest.mark.parametrize("text, name", [
    ("inf", "inf"), ("∞", "inf"), ("linf", "inf"), ("infinity", "inf"), ("oo", "inf"),
    ("2", "2"), ("l2", "2"), ("ℓ2", "2"), (2, "2"), (2.0, "2"), ("1", "1"), ("L1", "1"), (1, "1"),
])
def test_parse_norm_accepts_the_usual_spellings_and_returns_the_object(text, name):
    norm = parse_norm(text)
    assert isinstance(norm, Norm) and norm == name and str(norm) == name and hash(norm) == hash(name)
    assert parse_norm(norm) is norm
    assert pickle.loads(pickle.dumps(norm)) is norm
    assert json.loads(json.dumps({"norm": norm})) == {"norm": name}
    assert {"inf": 0, "2": 1, "1": 2}[norm] >= 0


def test_parse_norm_error_message():
    with pytest.raises(LipoptError, match=r"unknown norm '3'; choose one of: inf, 2, 1"):
        parse_norm("3")


@pytest.mark.parametrize("name", list(NORMS))
def test_vector_norms_duals_and_directions(name):
    norm = parse_norm(name)
    rng = np.random.default_rng(1)
    g = rng.normal(size=(50, 7))
    q = {"inf": 1, "2": 2, "1": np.inf}[name]
    np.testing.assert_allclose(norm.of(g), np.linalg.norm(g, ORD[name], axis=1))
    np.testing.assert_allclose(norm.dual_norm(g), np.linalg.norm(g, q, axis=1))
    assert norm.dual.dual is norm
    d = norm.dual_direction(g)  # ‖d‖_p ≤ 1 and dᵀg = ‖g‖_q
    assert np.all(norm.of(d) <= 1 + 1e-12)
    np.testing.assert_allclose((d * g).sum(axis=1), norm.dual_norm(g), rtol=1e-12)


@pytest.mark.parametrize("name", list(NORMS))
def test_operator_norm_is_a_tight_upper_bound_dense_and_sparse(name):
    norm = parse_norm(name)
    rng = np.random.default_rng(2)
    for shape in [(5, 9), (9, 5), (1, 4), (30, 30)]:
        w = rng.normal(size=shape) * (rng.random(shape) < 0.5)
        exact = np.linalg.norm(w, ORD[name])
        for m in (w, sp.csr_matrix(w)):
            value = norm.operator_norm(m)
            assert exact <= value <= exact * (1 + 1e-10) + 1e-300


@pytest.mark.parametrize("name", list(NORMS))
def test_matrix_norm_and_its_directions(name):
    norm = parse_norm(name)
    J = np.random.default_rng(3).normal(size=(20, 3, 6))
    value, u, d = norm.matrix_norm(J)
    exact = np.array([np.linalg.norm(j, ORD[name]) for j in J])
    np.testing.assert_allclose(value, exact, rtol=1e-12)
    np.testing.assert_allclose(np.einsum("bm,bmn,bn->b", u, J, d), exact, rtol=1e-10)
    assert np.all(norm.of(d) <= 1 + 1e-12) and np.all(norm.dual_norm(u) <= 1 + 1e-12)


@pytest.mark.parametrize("name", ["2", "1"])
def test_row_combination_bounds_the_induced_norm(name):
    norm = parse_norm(name)
    rng = np.random.default_rng(4)
    for _ in range(200):
        J = rng.normal(size=(rng.integers(1, 6), rng.integers(1, 6))) * rng.random() * 10
        rows = norm.dual_norm(J)  # L_k = ‖J_k‖_q, the scalar constants of the rows
        assert norm.combine_rows(list(rows)) >= np.linalg.norm(J, ORD[name])
    assert parse_norm("inf").combine_rows([1.0, 3.0, 2.0]) == 3.0
    assert norm.combine_rows([np.inf, 1.0]) == np.inf
    assert "per-output bounds" in norm.combination_note(3) and parse_norm("inf").combination_note(3) is None
