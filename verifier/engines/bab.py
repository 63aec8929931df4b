"""Branch and bound: strategy choice and the outcome handed back to the pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field


from verifier.config import VerifyConfig
from verifier.engines.bab_common import SplitOutcome
from verifier.engines.bab_input import input_split
from verifier.errors import ResourceError
from verifier.ir.graph import Graph
from verifier.result import Counterexample
from verifier.spec.property import Property

INPUT_SPLIT_MAX_DIM = 16  # inputs up to this size are split directly


@dataclass
class BabOutcome:
    """Summary over all open cases."""

    proven: bool
    counterexample: Counterexample | None = None
    reason: str = ""
    leaves: list = field(default_factory=list)
    bounds: dict = field(default_factory=dict)
    strategy: str = ""
    domains: int = 0
    notes: list = field(default_factory=list)

    def trail_entry(self, elapsed: float) -> dict:
        outcome = "counterexample" if self.counterexample else ("proven" if self.proven else "open")
        extra = {"notes": self.notes} if self.notes else {}
        return {"engine": f"bab-{self.strategy}", "outcome": outcome, "domains_bounded": self.domains,
                "reason": self.reason, "time": elapsed, **self.bounds, **extra}


def choose_strategy(graph: Graph, requested: str) -> str:
    """``input`` for low-dimensional inputs, ``relu`` otherwise, unless one is requested."""
    if requested in ("input", "relu"):
        return requested
    return "input" if graph.n_inputs <= INPUT_SPLIT_MAX_DIM else "relu"


def run_bab(graph: Graph, prop: Property, open_cases: list[int], runner, config: VerifyConfig,
            deadline: float, progress, roots: dict | None = None) -> BabOutcome:
    """Close every open case by branching, or find a confirmed counterexample. ``roots``: by case,
    intermediate bounds to start ReLU splitting from (those the case's evidence records)."""
    strategy = choose_strategy(graph, config.bab.strategy)
    work = graph
    leaves, domains, open_left, worst, notes = [], 0, [], float("inf"), []
    for i in open_cases:
        out = _run_case(work, prop.cases[i], i, runner, config, deadline, progress, strategy,
                        (roots or {}).get(i))
        domains += out.domains_bounded
        notes.extend(f"case {i}: {n}" for n in out.notes)
        if out.counterexample is not None:
            return BabOutcome(False, out.counterexample, "counterexample", strategy=strategy, domains=domains,
                              notes=notes)
        leaves.extend(out.leaves)
        if not out.proven:
            open_left.append(i)
            worst = min(worst, out.best_bound)
            reason = out.reason
    if not open_left:
        return BabOutcome(True, reason="every sub-domain closed", leaves=leaves, strategy=strategy,
                          domains=domains, notes=notes)
    return BabOutcome(False, reason=reason, strategy=strategy, domains=domains, notes=notes,
                      bounds={"open_cases": open_left, "best_global_bound": worst})


def _run_case(graph, case, index, runner, config, deadline, progress, strategy, root=None) -> SplitOutcome:
    """One case's search; running out of memory on a single sub-domain leaves the case open."""
    try:
        return _search_case(graph, case, index, runner, config, deadline, progress, strategy, root)
    except ResourceError as e:
        return SplitOutcome(case_index=index, reason=str(e))


def _search_case(graph, case, index, runner, config, deadline, progress, strategy, root=None) -> SplitOutcome:
    if any(conj.C.shape[0] == 0 for conj in case.unsafe):
        return SplitOutcome(case_index=index, reason="a disjunct with no output constraint makes every "
                            "input unsafe, but no input was confirmed by onnxruntime")
    if strategy == "input":
        return input_split(graph, case, index, runner, config, deadline, progress)
    from verifier.engines.bab_relu import relu_split

    return relu_split(graph, case, index, runner, config, deadline, progress, root)
