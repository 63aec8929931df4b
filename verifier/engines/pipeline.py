"""The verification pipeline behind :func:`verifier.verify`."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from verifier.config import VerifyConfig
from verifier.engines.attack import attack
from verifier.engines.incomplete import CaseBounds, bound_case, bound_case_layers, wants_layer_stage
from verifier.engines.onnx_runner import OnnxRunner
from verifier.errors import InputError
from verifier.ir.graph import Graph
from verifier.result import Certificate, Leaf, Result, Status
from verifier.spec.property import Property


ATTACK_SHARE = 0.3  # each attack stage gets at most this share of the time limit
BOUNDS_REASON = "every unsafe disjunct excluded by bounds"


@dataclass
class _Run:
    """One verification's fixed parts: the property, the settings, the clock, onnxruntime on the
    model's file, and the trail of stages that the result carries."""

    prop: Property
    config: VerifyConfig
    progress: Callable[[str], None]
    runner: OnnxRunner
    started: float
    trail: list[dict] = field(default_factory=list)

    @property
    def deadline(self) -> float:
        return self.started + self.config.timeout

    def finish(self, status: Status, reason: str, **kw) -> Result:
        stats = {"time": time.monotonic() - self.started, "cases": len(self.prop.cases)}
        return Result(status, reason, trail=self.trail, stats=stats, **kw)

    def falsified(self, cex) -> Result:
        return self.finish(Status.FALSIFIED, "counterexample confirmed by onnxruntime", counterexample=cex)

    def verified(self, how: str, reason: str, evidence: dict) -> Result:
        return self.finish(Status.VERIFIED, reason, certificate=Certificate("sound", how, evidence))

    def attack(self, graph: Graph, indices: list[int] | None, cfg, start: float, seed: int, name: str):
        """An attack stage on the cases ``indices`` (all when ``None``), for at most
        ``ATTACK_SHARE`` of the time limit from ``start``."""
        deadline = min(self.deadline, start + ATTACK_SHARE * self.config.timeout)
        cases = self.prop.cases if indices is None else [self.prop.cases[i] for i in indices]
        return _attack(graph, cases, self.runner, cfg, deadline, seed, name, self.trail, self.started,
                       self.progress, indices)


def run_pipeline(model: Graph, prop: Property, config: VerifyConfig,
                 progress: Callable[[str], None]) -> Result:
    """Attack, then bounds per case, then branch and bound on the cases left open."""
    started = time.monotonic()
    if model.onnx_path is None:
        raise InputError("the model has no ONNX file to confirm counterexamples with")
    torch.manual_seed(config.seed)
    graph = model.to(device=config.device)  # float32, as the network runs: for attacks
    prover = model.to(device=config.device, dtype=_proof_dtype(config))
    run = _Run(prop, config, progress, OnnxRunner(model), started)
    quick = dataclasses.replace(config.attack, rounds=1, steps=min(config.attack.steps, 20),
                                samples=min(config.attack.samples, 8192))
    cex = run.attack(graph, None, quick, started, config.seed, "attack (quick)")
    if cex is not None:
        return run.falsified(cex)
    if config.bounds.method in ("lp", "milp"):
        return _solver_method(prover, prop, config, run.runner, run.deadline, run.trail, started, progress)
    open_cases, leaves, worst = _bound_cases(prover, prop, config, run.deadline, run.trail, progress)
    if not open_cases:
        return run.verified("bound propagation", BOUNDS_REASON, {"leaves": leaves})
    cex = run.attack(graph, open_cases, config.attack, time.monotonic(), config.seed + 1, "attack")
    if cex is not None:
        return run.falsified(cex)
    layered = _bound_layers(prover, prop, open_cases, leaves, config, run.deadline, run.trail, progress)
    layers = {i: cb.layers for i, cb in layered.items()}
    if not open_cases:
        return run.verified("bound propagation", BOUNDS_REASON, {"leaves": leaves, "layers": layers})
    if all(i in layered for i in open_cases):  # each open case's own best bound
        worst = min(layered[i].worst() for i in open_cases)
    return _branch_and_bound(run, prover, open_cases, leaves, layered, worst)


def _branch_and_bound(run: _Run, prover: Graph, open_cases: list[int], leaves: list, layered: dict,
                      worst: float) -> Result:
    """The last stage: branch and bound on the open cases (from their layer-optimised bounds
    where there are some), or the open cases and the best bound reached as they stand."""
    known = {"open_cases": open_cases, "best_global_bound": worst}
    if time.monotonic() >= run.deadline:
        return run.finish(Status.TIMEOUT, "time limit reached with cases open", bounds=known)
    if not run.config.bab.enabled:
        return run.finish(Status.UNKNOWN, f"{len(open_cases)} case(s) not proven by bounds", bounds=known)
    from verifier.engines.bab import run_bab

    run.progress(f"branch and bound on {len(open_cases)} open case(s)")
    outcome = run_bab(prover, run.prop, open_cases, run.runner, run.config, run.deadline, run.progress,
                      roots={i: cb.root for i, cb in layered.items()})
    run.trail.append(outcome.trail_entry(time.monotonic() - run.started))
    if outcome.counterexample is not None:
        return run.falsified(outcome.counterexample)
    if outcome.proven:
        layers = {i: cb.layers for i, cb in layered.items()}
        return run.verified("branch and bound", "every sub-domain closed",
                            {"leaves": leaves + outcome.leaves, "layers": layers})
    status = Status.TIMEOUT if time.monotonic() >= run.deadline else Status.UNKNOWN
    return run.finish(status, outcome.reason, bounds=outcome.bounds)


def _solver_method(graph, prop, config, runner, deadline, trail, started, progress) -> Result:
    """``--method lp|milp``: decide every case with the LP relaxation or the exact MILP."""
    from verifier.engines.lp import run_lp_method

    result = run_lp_method(graph, prop, config, runner, deadline, method=config.bounds.method,
                           solver=config.bounds.solver, progress=progress)
    trail.append({"engine": config.bounds.method, "solver": config.bounds.solver,
                  "outcome": result.status.value, "time": time.monotonic() - started})
    result.trail = trail + result.trail
    result.stats["time"] = time.monotonic() - started
    return result


def _proof_dtype(config: VerifyConfig) -> torch.dtype:
    """Bounds that decide proofs run in float64 unless float32 is asked for (faster on GPUs;
    the proof margin then has to absorb float32 rounding)."""
    return torch.float32 if config.bounds.dtype == "float32" else torch.float64


def _attack(graph, cases, runner, cfg, deadline, seed, name, trail, started, progress, indices=None):
    """One attack stage over ``cases``; the counterexample names the case in ``prop``."""
    progress(name)
    cex = attack(graph, cases, runner, cfg, deadline, seed)
    if cex is not None and indices is not None:
        cex = dataclasses.replace(cex, case_index=indices[cex.case_index])
    trail.append({"engine": name, "outcome": "counterexample" if cex else "none found",
                  "time": time.monotonic() - started})
    return cex


def _bound_cases(graph, prop, config, deadline, trail, progress):
    """Bound every case; returns the indices left open, the leaves that closed and the weakest
    bound among the open cases (-inf for a case never bounded)."""
    open_cases, leaves, worst = [], [], float("inf")
    for i, case in enumerate(prop.cases):
        if time.monotonic() >= deadline:
            open_cases.append(i)
            worst = float("-inf")
            continue
        progress(f"bounds: case {i + 1}/{len(prop.cases)}")
        stages: list[CaseBounds] = bound_case(graph, case, config.bounds.method, config.bounds,
                                              config.proof_margin, deadline)
        for st in stages:
            note = {"note": st.note} if st.note else {}
            trail.append({"engine": st.method, "case": i, "proven": st.proven, "worst_bound": st.worst(), **note})
        if stages[-1].proven:
            leaves.append(Leaf(i, stages[-1].method, stages[-1].worst(), multipliers=stages[-1].multipliers))
        else:
            open_cases.append(i)
            worst = min(worst, stages[-1].worst())
    return open_cases, leaves, worst


def _bound_layers(graph, prop, open_cases: list[int], leaves: list, config, deadline, trail, progress) -> dict:
    """α-CROWN on layer-optimised intermediate bounds for the open cases (when
    :func:`wants_layer_stage`): closed cases leave ``open_cases`` for ``leaves``. Returns, by
    case, the stage's bounds (their slopes back the case's whole-region bounds, in the proof and
    as the root of ReLU splitting)."""
    layered: dict[int, CaseBounds] = {}
    if not wants_layer_stage(graph, config.bounds):
        return layered
    for i in list(open_cases):
        if time.monotonic() >= deadline:
            break
        progress(f"bounds, intermediate layers optimised: case {i + 1}/{len(prop.cases)}")
        st = bound_case_layers(graph, prop.cases[i], config.bounds, config.proof_margin, deadline)
        if st is None:
            continue
        trail.append({"engine": st.method, "case": i, "proven": st.proven, "worst_bound": st.worst()})
        layered[i] = st
        if st.proven:
            leaves.append(Leaf(i, st.method, st.worst(), multipliers=st.multipliers))
            open_cases.remove(i)
    return layered
