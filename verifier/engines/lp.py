"""LP bounds and exact MILP verification with cvxpy (HiGHS by default).

- :func:`lp_spec_bounds`: bounds of ``C · y`` over boxes from the triangle LP relaxation,
  each bound taken from weak duality so that it holds whatever the solver's tolerances.
- :func:`milp_case` / :func:`milp_leaf`: an exact MILP per unsafe disjunct of one case (or one
  sub-box of it). A disjunct is excluded only when the solver reports the MILP infeasible; a
  solver point counts only after :func:`verifier.engines.confirm.confirm` (onnxruntime) has
  shown the violation; anything else is ``unknown`` with the solver status named.
- :func:`run_lp_method`: ``verify(..., method="lp" | "milp")`` over the cases of a property.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from verifier.engines.confirm import confirm
from verifier.engines.lp_encode import (LinearModel, RegionEncoding, check_solver, dual_bound,
                                        encode_region, lp_solver)
from verifier.errors import InputError
from verifier.ir.graph import Graph
from verifier.result import Certificate, Counterexample, Result, Status
from verifier.spec.property import Case, Conjunction, Property

# A disjunct is excluded when even ``max_i (C y - d)_i <= MARGIN_REL·(1 + max|d|)`` is
# infeasible. HiGHS accepts rows violated by up to 1e-7 (LP) / 1e-6 (MIP feasibility), so an
# exclusion also rules out points 10x beyond its tolerances: a counterexample at exactly 0
# can only be cut off by a numerical error far larger than the solver allows itself.
MARGIN_REL = 1e-5
# Share of a MILP's time given to LP tightening of the intermediate bounds first: every
# neuron made stable drops a binary and every tighter bound shrinks a big-M constant.
TIGHTEN_SHARE = 0.4
# HiGHS options for every MILP: presolve rule 14 (Sparsify in HiGHS 1.15) spends seconds on the
# dense equality rows of materialised layers for no gain here.
HIGHS_MILP = {"presolve_rule_off": 1 << 14}


@dataclass
class MilpOutcome:
    """The verdict on one case (or one sub-box) by MILP or LP.

    ``status``: ``unsat`` (every disjunct excluded), ``sat`` (``counterexample`` confirmed by
    onnxruntime) or ``unknown`` (``reason`` names the solver status or the doubt).
    ``optima``: per disjunct, the smallest ``max_i (C_k y - d_k)_i`` the solver reached (the
    optimum when it finished), None when the disjunct was excluded.
    """

    status: str
    counterexample: Counterexample | None = None
    reason: str = ""
    optima: list[float | None] = field(default_factory=list)
    disjuncts: list[dict] = field(default_factory=list)
    time: float = 0.0


def _l2(case: Case):
    r = case.region
    return None if r.l2_center is None else (np.asarray(r.l2_center, np.float64), float(r.l2_radius))


def _candidates(case: Case, x: np.ndarray) -> np.ndarray:
    """The solver's input ``x`` ``(n,)`` and, with an L2 ball, its projection onto ball ∩ box
    (alternating projections): ``(k, n)`` rows for :func:`confirm`."""
    r = case.region
    if r.l2_center is None:
        return x[None, :]
    p = np.clip(x, r.lower, r.upper)
    for _ in range(20):
        delta = p - r.l2_center
        norm = float(np.linalg.norm(delta))
        if norm > r.l2_radius:
            p = r.l2_center + delta * (r.l2_radius * (1 - 1e-9) / norm)
        p = np.clip(p, r.lower, r.upper)
    return np.stack([x, p])


def _margin(conj: Conjunction) -> float:
    return MARGIN_REL * (1.0 + (float(np.abs(conj.d).max()) if conj.d.size else 0.0))


# ---- LP bounds -------------------------------------------------------------------------------
def lp_spec_bounds(model: Graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor, deadline: float,
                   tighten: bool = False, solver: str = "HIGHS") -> tuple[torch.Tensor, torch.Tensor]:
    """LP lower/upper bounds of each row of ``C · y`` over each box.

    ``lower``/``upper``: ``(B, *input_full_shape)``; ``C``: ``(B, R, n_outputs)``. Returns
    ``(lb, ub)``, each ``(B, R)`` in the model's dtype. Rows whose LP did not solve before
    ``deadline`` keep their CROWN bound (sound either way). ``tighten`` first sharpens the
    intermediate bounds by LP (two LPs per unstable neuron: small networks only).
    """
    solver = check_solver(solver, mip=False)
    B, R = C.shape[:2]
    lb, ub = np.full((B, R), -np.inf), np.full((B, R), np.inf)
    lo_np = lower.detach().double().cpu().reshape(B, -1).numpy()
    hi_np = upper.detach().double().cpu().reshape(B, -1).numpy()
    C_np = C.detach().double().cpu().numpy()
    for b in range(B):
        lb[b], ub[b] = _box_row_bounds(model, lo_np[b], hi_np[b], C_np[b], solver, deadline, tighten)
    kw = dict(dtype=model.dtype, device=model.device)
    return torch.as_tensor(lb, **kw), torch.as_tensor(ub, **kw)


def _box_row_bounds(model, lower, upper, C, solver, deadline, tighten, l2=None):
    """``(lb, ub)`` ``(R,)`` of ``C y`` over one box: LP where it solved, CROWN elsewhere."""
    renc = encode_region(model, lower, upper, l2, False, solver, deadline, deadline if tighten else None)
    system = renc.enc.rows.build()
    lp = lp_solver(system, solver) if renc.cone is None else LinearModel(system, solver, cone=renc.cone)
    R = C.shape[0]
    lb, ub = np.full(R, -np.inf), np.full(R, np.inf)
    for r in range(R):
        for sign in (1.0, -1.0):
            if time.monotonic() >= deadline:
                break
            cost = np.zeros(system.n)
            np.add.at(cost, renc.y, sign * C[r])
            bound = dual_bound(system, cost, lp.solve(cost, deadline), renc.ball)
            if sign > 0:
                lb[r] = bound
            else:
                ub[r] = -bound
    if not (np.all(np.isfinite(lb)) and np.all(np.isfinite(ub))):
        crown_lb, crown_ub = _crown_rows(renc, C)
        lb = np.where(np.isfinite(lb), lb, crown_lb)
        ub = np.where(np.isfinite(ub), ub, crown_ub)
    return lb, ub


def _crown_rows(renc: RegionEncoding, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from verifier.bounds.crown import spec_bounds

    Ct = torch.as_tensor(C, dtype=torch.float64).unsqueeze(0)
    with torch.no_grad():
        both = spec_bounds(renc.graph, torch.cat([Ct, -Ct], 1), renc.crown, renc.region)[0].numpy()
    R = C.shape[0]
    return both[:R], -both[R:]


# ---- one disjunct ----------------------------------------------------------------------------
def _disjunct_system(system, renc: RegionEncoding, conj: Conjunction, t_cap: float | None):
    """``system`` plus ``t`` (last variable) with ``C y - t <= d``; ``t`` bounded below by the
    rows' bounds and above by ``t_cap`` (or the rows' upper bounds)."""
    lo, hi = renc.enc.bounds[renc.graph.output_name]
    C, d = conj.C, conj.d
    Cp, Cn = np.clip(C, 0, None), np.clip(C, None, 0)
    row_lo, row_hi = Cp @ lo + Cn @ hi - d, Cp @ hi + Cn @ lo - d
    t_lo = float(row_lo.max()) if len(d) else -1.0
    t_hi = float(row_hi.max()) if len(d) else 1.0
    if t_cap is not None:
        t_hi = t_cap
    m, n = len(d), system.n
    cols = np.concatenate([np.tile(renc.y, m), np.full(m, n)])
    rows = np.concatenate([np.repeat(np.arange(m), len(renc.y)), np.arange(m)])
    vals = np.concatenate([C.reshape(-1), -np.ones(m)])
    A = sp.csr_matrix((vals, (rows, cols)), shape=(m, n + 1))
    return system.extended(np.array([t_lo]), np.array([t_hi]), A, d), t_lo, t_hi


def _status_word(status: str) -> str:
    """cvxpy's status with HiGHS's usual cause of ``user_limit`` (no objective target set)."""
    return "user_limit (solver time limit)" if status == "user_limit" else status


def _milp_disjunct(system, renc, conj, k, ctx) -> dict:
    """Decide one disjunct by MILP: a dict with ``excluded``, ``optimum``, ``status``,
    ``counterexample`` and, when undecided, ``reason``."""
    margin = _margin(conj)
    ext, t_lo, _ = _disjunct_system(system, renc, conj, margin)
    rec = {"disjunct": k, "margin": margin, "optimum": None, "counterexample": None}
    if t_lo > margin:
        return {**rec, "excluded": True, "status": "excluded by bounds"}
    model = LinearModel(ext, ctx["solver"], cone=renc.cone)
    cost = np.zeros(ext.n)
    cost[-1] = 1.0
    passes = [{**HIGHS_MILP, "objective_target": -margin}, HIGHS_MILP] if ctx["solver"] == "HIGHS" else [{}]
    for options in passes:
        if time.monotonic() >= ctx["deadline"]:
            return {**rec, "excluded": False, "status": "not started", "reason": "time limit reached"}
        sol = model.solve(cost, ctx["deadline"], options)
        if sol.status == "infeasible":
            return {**rec, "excluded": True, "status": "infeasible"}
        if not sol.has_point:
            word = _status_word(sol.status)
            return {**rec, "excluded": False, "status": sol.status, "reason": f"solver status {word}"}
        t = float(sol.values[-1])
        rec["optimum"] = t
        points = _candidates(ctx["case"], sol.values[renc.x])
        cex = confirm(ctx["runner"], ctx["case"], ctx["case_index"], points, ctx["input_shape"])
        if cex is not None:
            return {**rec, "excluded": False, "status": sol.status, "counterexample": cex}
        if not (sol.status == "user_limit" and t <= -margin):
            break  # only an early stop at the objective target is worth a full second solve
    if sol.status == "optimal" and t > 0:
        why = f"MILP optimum {t:.3g} lies within the margin {margin:.1g} of 0 (solver tolerance)"
    elif sol.status == "optimal":
        why = f"MILP optimum {t:.3g} <= 0 but onnxruntime did not confirm the solver's point"
    else:
        word = _status_word(sol.status)
        why = f"solver status {word} with best value {t:.3g}, point not confirmed"
    return {**rec, "excluded": False, "status": sol.status, "reason": why}


def _lp_disjunct(system, renc, conj, k, ctx) -> dict:
    """Bound ``min max_i (C y - d)_i`` over the LP relaxation (weak-duality safe); excluded
    when that bound clears ``ctx['margin']``. The LP's own point is also tried on onnxruntime."""
    ext, t_lo, _ = _disjunct_system(system, renc, conj, None)
    rec = {"disjunct": k, "optimum": None, "counterexample": None}
    if t_lo > ctx["margin"]:
        return {**rec, "excluded": True, "status": "excluded by bounds", "lower_bound": t_lo}
    if time.monotonic() >= ctx["deadline"]:
        return {**rec, "excluded": False, "status": "not started", "reason": "time limit reached"}
    cost = np.zeros(ext.n)
    cost[-1] = 1.0
    sol = LinearModel(ext, ctx["solver"], cone=renc.cone).solve(cost, ctx["deadline"])
    bound = max(dual_bound(ext, cost, sol, renc.ball), t_lo)
    rec.update(status=sol.status, lower_bound=bound, optimum=sol.value)
    if bound > ctx["margin"]:
        return {**rec, "excluded": True}
    if sol.has_point:
        points = _candidates(ctx["case"], sol.values[renc.x])
        cex = confirm(ctx["runner"], ctx["case"], ctx["case_index"], points, ctx["input_shape"])
        if cex is not None:
            return {**rec, "excluded": False, "counterexample": cex}
    word = _status_word(sol.status)
    why = f"LP lower bound {bound:.3g} does not exclude it (solver status {word})"
    return {**rec, "excluded": False, "reason": why}


# ---- one case / one sub-box ------------------------------------------------------------------
def _decide_region(graph: Graph, case: Case, case_index: int, runner, lower, upper, deadline: float,
                   solver: str, exact: bool, margin: float = 0.0, tighten: bool = False,
                   bounds: dict | None = None) -> MilpOutcome:
    """Every disjunct of ``case`` over the box ``[lower, upper]`` (flat) by MILP or LP;
    ``tighten`` spends up to :data:`TIGHTEN_SHARE` of the time left on LP-tightened bounds."""
    started = time.monotonic()
    solver = check_solver(solver, mip=exact)
    if started >= deadline:
        return MilpOutcome("unknown", reason="time limit reached before the solver started")
    until = started + TIGHTEN_SHARE * (deadline - started) if tighten else None
    renc = encode_region(graph, lower, upper, _l2(case), exact, solver, deadline, until, bounds)
    system = renc.enc.rows.build()
    ctx = {"solver": solver, "deadline": deadline, "runner": runner, "case": case, "case_index": case_index,
           "input_shape": graph.input_shape, "margin": margin}
    decide = _milp_disjunct if exact else _lp_disjunct
    records, reasons = [], []
    for k, conj in enumerate(case.unsafe):
        rec = decide(system, renc, conj, k, ctx)
        cex = rec.pop("counterexample")
        records.append(rec)
        if cex is not None:
            return MilpOutcome("sat", cex, "counterexample confirmed by onnxruntime",
                               [r.get("optimum") for r in records], records, time.monotonic() - started)
        if not rec["excluded"]:
            reasons.append(f"disjunct {k}: {rec['reason']}")
    optima = [None if r["excluded"] else r.get("optimum") for r in records]
    status = "unknown" if reasons else "unsat"
    reason = "; ".join(reasons) if reasons else "every unsafe disjunct excluded"
    return MilpOutcome(status, None, reason, optima, records, time.monotonic() - started)


def milp_case(graph: Graph, case: Case, case_index: int, runner, deadline: float,
              solver: str = "HIGHS", tighten: bool = True) -> MilpOutcome:
    """Exact MILP verification of one case over its whole input region (``tighten``: LP
    bounds on the unstable neurons first, see :data:`TIGHTEN_SHARE`)."""
    return _decide_region(graph, case, case_index, runner, case.region.lower, case.region.upper,
                          deadline, solver, exact=True, tighten=tighten)


def milp_leaf(graph: Graph, case: Case, case_index: int, runner, lower, upper, deadline: float,
              solver: str = "HIGHS", tighten: bool = True, bounds: dict | None = None) -> MilpOutcome:
    """Exact MILP on one sub-box ``[lower, upper]`` of a case's region (arrays or tensors with
    ``n_inputs`` entries; intersected with the region's box). ``bounds``: valid float64 bounds
    of every value over that box (name → ``(1, *shape)`` pair) to build the big-M constants
    from, instead of computing them here."""
    lo = np.maximum(_flat(lower), case.region.lower)
    hi = np.minimum(_flat(upper), case.region.upper)
    if np.any(lo > hi):
        return MilpOutcome("unsat", reason="the sub-box does not meet the case's region")
    return _decide_region(graph, case, case_index, runner, lo, hi, deadline, solver, exact=True,
                          tighten=tighten, bounds=bounds)


def lp_case(graph: Graph, case: Case, case_index: int, runner, deadline: float, solver: str = "HIGHS",
            margin: float = 1e-6, tighten: bool = False) -> MilpOutcome:
    """LP (triangle relaxation) verification of one case: ``unsat`` when every disjunct's safe
    LP bound of ``max_i (C_k y - d_k)_i`` exceeds ``margin``; ``sat`` only if an LP point
    happens to be confirmed by onnxruntime; else ``unknown``."""
    return _decide_region(graph, case, case_index, runner, case.region.lower, case.region.upper,
                          deadline, solver, exact=False, margin=margin, tighten=tighten)


def _flat(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().double().cpu().numpy()
    return np.asarray(a, np.float64).reshape(-1)


def milp_minimum(graph: Graph, lower, upper, c: np.ndarray, deadline: float, solver: str = "HIGHS"):
    """The exact minimum of ``c · y`` over the box (MILP solved to a zero gap where the solver
    allows): ``(status, value, x)`` with ``x`` flat ``(n_inputs,)`` (None without a point)."""
    solver = check_solver(solver, mip=True)
    renc = encode_region(graph, _flat(lower), _flat(upper), None, True, solver, deadline)
    system = renc.enc.rows.build()
    cost = np.zeros(system.n)
    np.add.at(cost, renc.y, np.asarray(c, np.float64).reshape(-1))
    options = {**HIGHS_MILP, "mip_rel_gap": 0.0, "mip_abs_gap": 0.0} if solver == "HIGHS" else {}
    sol = LinearModel(system, solver).solve(cost, deadline, options)
    if not sol.has_point:
        return sol.status, None, None
    return sol.status, sol.value, sol.values[renc.x]


# ---- verify(..., method="lp" | "milp") -------------------------------------------------------
def run_lp_method(graph: Graph, prop: Property, config, runner, deadline: float, *, method: str | None = None,
                  solver: str = "HIGHS", cases: list[int] | None = None, progress=None) -> Result:
    """Decide ``prop`` case by case with the MILP (``method="milp"``) or the LP relaxation
    (``"lp"``); ``method`` defaults to ``config.bounds.method``, ``cases`` to all cases.

    ``verified`` carries a ``Certificate("sound", method, ...)`` listing every disjunct's
    exclusion; ``falsified`` an onnxruntime-confirmed counterexample; otherwise ``unknown``
    (or ``timeout`` once ``deadline`` has passed) with the reasons.
    """
    started = time.monotonic()
    method = method or config.bounds.method
    if method not in ("lp", "milp"):
        raise InputError(f"unknown LP method '{method}' (lp, milp)")
    solver = check_solver(solver, mip=method == "milp")
    indices = list(range(len(prop.cases))) if cases is None else list(cases)
    stats = {"cases": len(prop.cases), "method": method, "solver": solver}
    records, reasons = [], []
    for n_done, i in enumerate(indices):
        if progress is not None:
            progress(f"{method}: case {i + 1}/{len(prop.cases)}")
        share = time.monotonic() + (deadline - time.monotonic()) / (len(indices) - n_done)
        if method == "milp":
            out = milp_case(graph, prop.cases[i], i, runner, share, solver)
        else:
            out = lp_case(graph, prop.cases[i], i, runner, share, solver, margin=config.proof_margin)
        if out.status == "sat":
            stats["time"] = time.monotonic() - started
            return Result(Status.FALSIFIED, "counterexample confirmed by onnxruntime",
                          counterexample=out.counterexample, stats=stats)
        records.append({"case": i, "status": out.status, "time": out.time, "disjuncts": out.disjuncts})
        if out.status != "unsat":
            reasons.append(f"case {i}: {out.reason}")
    stats["time"] = time.monotonic() - started
    if not reasons:
        data = {"solver": solver, "margin_rel": MARGIN_REL if method == "milp" else config.proof_margin,
                "cases": records}
        return Result(Status.VERIFIED, f"every unsafe disjunct excluded by {method.upper()}",
                      certificate=Certificate("sound", method, data), stats=stats)
    status = Status.TIMEOUT if time.monotonic() >= deadline else Status.UNKNOWN
    return Result(status, "; ".join(reasons), stats=stats)
