"""Solving a :class:`~verifier.engines.lp_system.System`: solver checks and time limits,
:class:`LinearModel` (cvxpy, any installed solver, parametric linear objective),
:class:`HighsLP` (HiGHS directly, re-solving LPs that differ only in their cost from the last
basis) and :func:`dual_bound`, which turns the multipliers of any solve into a lower bound of
the LP optimum that holds whatever the solver's tolerances.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from verifier.engines.lp_system import System
from verifier.errors import InputError

_TIME_OPTION = {"HIGHS": "time_limit", "CLARABEL": "time_limit", "SCS": "time_limit_secs",
                "OSQP": "time_limit", "GUROBI": "TimeLimit", "CBC": "maximumSeconds", "COPT": "TimeLimit"}


def _solver_class(name: str):
    from cvxpy.reductions.solvers.defines import SOLVER_MAP_CONIC, SOLVER_MAP_QP

    return SOLVER_MAP_CONIC.get(name) or SOLVER_MAP_QP.get(name)


def check_solver(name: str, mip: bool) -> str:
    """The cvxpy name of an installed solver able to solve the problem class (else InputError)."""
    key = str(name).upper()
    installed = cp.installed_solvers()
    if key not in installed:
        raise InputError(f"solver '{name}' is not installed for cvxpy (installed: {', '.join(installed)})")
    cls = _solver_class(key)
    if mip and not getattr(cls, "MIP_CAPABLE", False):
        capable = [s for s in installed if getattr(_solver_class(s), "MIP_CAPABLE", False)]
        raise InputError(f"solver {key} cannot solve mixed-integer programs "
                         f"(use one of: {', '.join(capable)})")
    return key


def supports_cone(name: str, mip: bool) -> bool:
    """Whether the solver takes second-order cones (with binaries when ``mip``)."""
    from cvxpy.constraints import SOC

    cls = _solver_class(name)
    allowed = getattr(cls, "MI_SUPPORTED_CONSTRAINTS" if mip else "SUPPORTED_CONSTRAINTS", [])
    return SOC in allowed


def time_options(solver: str, seconds: float) -> dict:
    """Keyword arguments that give ``solver`` a wall-clock limit (empty if unknown)."""
    seconds = max(0.9 * float(seconds) - 0.1, 1e-2)  # solvers overshoot their limit a little
    if solver == "SCIPY":
        return {"scipy_options": {"time_limit": seconds}}
    key = _TIME_OPTION.get(solver)
    return {key: seconds} if key else {}


@dataclass
class Solution:
    """One solve: cvxpy ``status``, objective ``value``, variable ``values`` ``(n,)`` and the
    row multipliers ``le_dual``/``eq_dual`` (LPs only), each None when absent."""

    status: str
    value: float | None = None
    values: np.ndarray | None = None
    le_dual: np.ndarray | None = None
    eq_dual: np.ndarray | None = None

    @property
    def has_point(self) -> bool:
        return self.values is not None and self.status in cp.settings.SOLUTION_PRESENT


class LinearModel:
    """A cvxpy problem ``min cost · v`` over a :class:`System` (``cost`` a parameter, so
    repeated solves reuse the compiled problem). ``relax`` drops integrality; ``cone``
    ``(x_idx, center, radius)`` adds ``||v[x_idx] - center||_2 <= radius``."""

    def __init__(self, system: System, solver: str, relax: bool = False, cone=None):
        self.system, self.solver = system, solver
        ints = system.integer & (not relax)
        self.cont, self.ints = np.flatnonzero(~ints), np.flatnonzero(ints)
        self.v = cp.Variable(len(self.cont), bounds=[system.lb[self.cont], system.ub[self.cont]])
        self.d = cp.Variable(len(self.ints), boolean=True) if len(self.ints) else None
        self.cost = cp.Parameter(len(self.cont))
        self.constraints = [self._expr(system.A_le) <= system.b_le if system.A_le.shape[0] else None,
                            self._expr(system.A_eq) == system.b_eq if system.A_eq.shape[0] else None]
        extra = []
        if cone is not None:
            pos = np.full(system.n, -1)
            pos[self.cont] = np.arange(len(self.cont))
            extra.append(cp.norm(self.v[pos[cone[0]]] - cone[1], 2) <= cone[2])
        live = [c for c in self.constraints if c is not None] + extra
        self.problem = cp.Problem(cp.Minimize(self.cost @ self.v), live)

    def _expr(self, A: sp.csr_matrix):
        e = A[:, self.cont] @ self.v
        return e + A[:, self.ints] @ self.d if self.d is not None else e

    def solve(self, cost: np.ndarray, deadline: float, options: dict | None = None) -> Solution:
        """Minimise ``cost · v`` (``cost`` ``(n,)``, zero on binaries) until ``deadline``
        (``time.monotonic()``); the problem is compiled first so the solver gets what is left."""
        self.cost.value = np.asarray(cost, np.float64)[self.cont]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.problem.get_problem_data(solver=self.solver)  # compiled once, then cached
                opts = {**time_options(self.solver, deadline - time.monotonic()), **(options or {})}
                self.problem.solve(solver=self.solver, **opts)
        except (cp.error.SolverError, ValueError, ArithmeticError) as e:
            return Solution(f"solver error ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
        status = str(self.problem.status)
        if self.v.value is None or not _solver_has_point(self.problem):
            return Solution(status)
        values = np.zeros(self.system.n)
        values[self.cont] = self.v.value
        if self.d is not None:
            values[self.ints] = self.d.value
        le, eq = self.constraints
        return Solution(status, float(self.problem.value), values, _dual(le), _dual(eq))


class HighsLP:
    """Many LPs over one :class:`System` (integrality dropped) that differ only in their cost,
    solved by HiGHS directly: the first by dual simplex, every later one by primal simplex from
    the previous optimal basis (still feasible under a new cost). Multipliers
    follow :class:`LinearModel`'s convention (``le_dual >= 0``)."""

    def __init__(self, system: System):
        import highspy

        self.h, self.system = highspy.Highs(), system
        self.h.setOptionValue("output_flag", False)
        inf = highspy.kHighsInf
        A = sp.vstack([system.A_eq, system.A_le]).tocsc()
        self.m_eq = system.A_eq.shape[0]
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = system.n, A.shape[0]
        lp.col_cost_ = np.zeros(system.n)
        lp.col_lower_ = np.where(np.isfinite(system.lb), system.lb, -inf)
        lp.col_upper_ = np.where(np.isfinite(system.ub), system.ub, inf)
        lp.row_lower_ = np.concatenate([system.b_eq, np.full(system.A_le.shape[0], -inf)])
        lp.row_upper_ = np.concatenate([system.b_eq, system.b_le])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = A.indptr, A.indices, A.data
        self.h.passModel(lp)
        self.cols = np.arange(system.n, dtype=np.int32)

    def solve(self, cost: np.ndarray, deadline: float) -> Solution:
        """Minimise ``cost · v`` until ``deadline`` (``time.monotonic()``)."""
        self.h.changeColsCost(self.system.n, self.cols, np.asarray(cost, np.float64))
        self.h.setOptionValue("time_limit", time_options("HIGHS", deadline - time.monotonic())["time_limit"])
        self.h.run()
        self.h.setOptionValue("simplex_strategy", 4)  # later costs start from a primal feasible basis
        name = self.h.getModelStatus().name
        status = {"kOptimal": "optimal", "kInfeasible": "infeasible"}.get(name, name)
        if status != "optimal":
            return Solution(status)
        sol = self.h.getSolution()
        dual = -np.asarray(sol.row_dual, np.float64)
        return Solution(status, float(self.h.getInfo().objective_function_value),
                        np.asarray(sol.col_value, np.float64), dual[self.m_eq:], dual[:self.m_eq])


def lp_solver(system: System, solver: str):
    """A repeated-LP solver over ``system``: :class:`HighsLP` for HiGHS, else a relaxed
    :class:`LinearModel`; both have ``solve(cost, deadline) -> Solution``."""
    return HighsLP(system) if solver == "HIGHS" else LinearModel(system, solver, relax=True)


def _dual(constraint) -> np.ndarray | None:
    if constraint is None or constraint.dual_value is None:
        return None
    return np.asarray(constraint.dual_value, np.float64).reshape(-1)


def _solver_has_point(problem: cp.Problem) -> bool:
    """False when the solver says it holds no feasible point (HiGHS returns zeros after a
    time limit without an incumbent)."""
    info = problem.solver_stats.extra_stats if problem.solver_stats is not None else None
    status = getattr(info, "primal_solution_status", None)
    return status is None or not isinstance(status, int) or status == 2


def dual_bound(system: System, cost: np.ndarray, sol: Solution, ball=None) -> float:
    """A lower bound of ``min cost · v`` over the LP relaxation from any multipliers.

    For ``lam >= 0`` (clipped) and any ``mu``: ``cost·v >= -lam·b_le - mu·b_eq +
    sum_j min_{lb_j <= v_j <= ub_j} r_j v_j`` with ``r = cost + A_le^T lam + A_eq^T mu`` (weak
    duality), so the bound holds whatever accuracy the solver reached. ``ball``
    ``(x_idx, center, radius)`` lets the input part also be minimised over that ball (the
    better of box and ball is kept). Returns -inf without multipliers.
    """
    if system.A_le.shape[0] and sol.le_dual is None or system.A_eq.shape[0] and sol.eq_dual is None:
        return -math.inf
    lam = np.maximum(sol.le_dual, 0.0) if system.A_le.shape[0] else np.zeros(0)
    mu = sol.eq_dual if system.A_eq.shape[0] else np.zeros(0)
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(mu))):
        return -math.inf
    r = np.asarray(cost, np.float64) + system.A_le.T @ lam + system.A_eq.T @ mu
    with np.errstate(invalid="ignore"):
        terms = np.where(r > 0, r * system.lb, np.where(r < 0, r * system.ub, 0.0))
    const = -(lam @ system.b_le) - (mu @ system.b_eq)
    best = const + terms.sum()
    if ball is not None:
        x, center, radius = ball
        others = np.ones(system.n, bool)
        others[x] = False
        rx = r[x]
        best = max(best, const + terms[others].sum() + rx @ center - radius * np.linalg.norm(rx))
    scale = abs(const) + np.abs(terms[np.isfinite(terms)]).sum() + 1.0
    return float(best - 1e-9 * scale) if np.isfinite(best) else -math.inf
