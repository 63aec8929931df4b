"""The linear system of an encoded graph: :class:`System` (``A_le v <= b_le``, ``A_eq v == b_eq``,
``lb <= v <= ub`` over one vector ``v``, some entries binary) and :class:`SystemBuilder`, which
collects variables and rows while :mod:`verifier.engines.lp_ops` encodes a graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class System:
    """``A_le v <= b_le``, ``A_eq v == b_eq``, ``lb <= v <= ub``; ``integer`` ``(n,)`` marks binaries."""

    lb: np.ndarray
    ub: np.ndarray
    integer: np.ndarray
    A_le: sp.csr_matrix
    b_le: np.ndarray
    A_eq: sp.csr_matrix
    b_eq: np.ndarray

    @property
    def n(self) -> int:
        return int(self.lb.shape[0])

    def extended(self, lb: np.ndarray, ub: np.ndarray, A_le: sp.spmatrix, b_le: np.ndarray) -> "System":
        """This system with ``len(lb)`` new continuous variables (appended) and new rows
        ``A_le [v; new] <= b_le`` (``A_le`` has ``n + len(lb)`` columns)."""
        k = len(lb)
        pad = lambda A: sp.hstack([A, sp.csr_matrix((A.shape[0], k))]).tocsr()  # noqa: E731
        return System(np.concatenate([self.lb, lb]), np.concatenate([self.ub, ub]),
                      np.concatenate([self.integer, np.zeros(k, bool)]),
                      sp.vstack([pad(self.A_le), sp.csr_matrix(A_le)]).tocsr(),
                      np.concatenate([self.b_le, b_le]), pad(self.A_eq), self.b_eq)


class SystemBuilder:
    """Collects variables and rows; :meth:`build` gives the :class:`System` so far."""

    def __init__(self) -> None:
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._int: list[np.ndarray] = []
        self.n = 0
        self._rows: dict[str, list] = {"le": [], "eq": []}
        self._m = {"le": 0, "eq": 0}

    def add_vars(self, lb: np.ndarray, ub: np.ndarray, integer: bool = False) -> np.ndarray:
        """New variables with bounds ``lb``/``ub`` ``(k,)``; returns their indices ``(k,)``."""
        lb, ub = np.asarray(lb, np.float64).reshape(-1), np.asarray(ub, np.float64).reshape(-1)
        idx = np.arange(self.n, self.n + len(lb))
        self._lb.append(lb.copy())
        self._ub.append(np.maximum(ub, lb))
        self._int.append(np.full(len(lb), integer))
        self.n += len(lb)
        return idx

    def restrict(self, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Intersect the bounds of variables ``idx`` with ``[lo, hi]``."""
        self._lb, self._ub = [np.concatenate(self._lb)], [np.concatenate(self._ub)]
        np.maximum.at(self._lb[0], idx, lo)
        np.minimum.at(self._ub[0], idx, hi)
        self._ub[0] = np.maximum(self._ub[0], self._lb[0])

    def add_terms(self, kind: str, terms: list[tuple[np.ndarray, object]], rhs: np.ndarray) -> None:
        """Rows ``sum_t coef_t[r] · v[cols_t[r]]`` (``kind`` ``le``: ``<= rhs[r]``, ``eq``: ``==``)."""
        m = len(rhs)
        r = np.concatenate([np.arange(m)] * len(terms))
        c = np.concatenate([cols for cols, _ in terms])
        v = np.concatenate([np.broadcast_to(np.asarray(coef, np.float64), (m,)) for _, coef in terms])
        self._append(kind, r, c, v, rhs)

    def add_sparse(self, kind: str, blocks: list[tuple[sp.spmatrix, np.ndarray]], rhs: np.ndarray) -> None:
        """Rows ``sum_b M_b · v[cols_b]`` compared with ``rhs`` (each ``M_b`` is ``(m, len(cols_b))``)."""
        parts = [sp.coo_matrix(M) for M, _ in blocks]
        r = np.concatenate([p.row for p in parts])
        c = np.concatenate([cols[p.col] for p, (_, cols) in zip(parts, blocks)])
        v = np.concatenate([p.data for p in parts])
        self._append(kind, r, c, v, rhs)

    def _append(self, kind, r, c, v, rhs) -> None:
        rhs = np.asarray(rhs, np.float64).reshape(-1)
        self._rows[kind].append((r + self._m[kind], c, v, rhs))
        self._m[kind] += len(rhs)

    def build(self) -> System:
        mats = {}
        for kind in ("le", "eq"):
            parts = self._rows[kind]
            cat = lambda i: np.concatenate([p[i] for p in parts]) if parts else np.zeros(0)  # noqa: E731
            A = sp.csr_matrix((cat(2), (cat(0).astype(np.int64), cat(1).astype(np.int64))),
                              shape=(self._m[kind], self.n))
            mats[kind] = (A, cat(3))
        return System(np.concatenate(self._lb), np.concatenate(self._ub), np.concatenate(self._int),
                      mats["le"][0], mats["le"][1], mats["eq"][0], mats["eq"][1])
