"""Hand-off of open input-split sub-boxes to the exact MILP.

Bound propagation closes most sub-boxes quickly, but some stay open for long: the property's
rows each hold on part of the box only, or the linear relaxation is loose near a decision
boundary. On small piecewise-linear networks an exact MILP settles such a box in well under a
second when few of its neurons are unstable. Once branch and bound has used
:attr:`BabConfig.milp_after` of its time, the open box with the fewest unstable neurons is
handed to :func:`verifier.engines.lp.milp_leaf` whenever the MILP calls so far have used less
than :data:`MILP_TIME_SHARE` of the time since then (more slowed branch and bound down on
ACAS Xu and reach_prob_density: the MILP settled boxes bound propagation would have closed); a box the solver cannot settle in its share goes back to the
store and is split further.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from verifier.ir.graph import Graph

MILP_MAX_NEURONS = 2000   # networks with more ReLU neurons are not handed to the MILP
MILP_CALL_CAP = 10.0      # seconds at most per MILP call
MILP_MAX_UNSTABLE = 40    # boxes with more unstable neurons (binaries) stay with bound propagation
MILP_TIME_SHARE = 0.1     # at most this share of the time since the hand-off began goes to MILP calls


def milp_unavailable(graph: Graph) -> str | None:
    """Why open boxes of ``graph`` cannot go to the MILP, or None when they can."""
    from verifier.engines.lp_ops import encodable

    for node in graph.nodes:
        if not encodable(graph.ops[node.name]):
            return f"op {node.op} at node {node.name} is not MILP-encodable"
    neurons = sum(int(np.prod(node.out_shape)) for node in graph.nodes if node.op in ("Relu", "LeakyRelu"))
    if neurons == 0:
        return "no ReLU neurons (nothing for a MILP to decide that bounds do not)"
    if neurons > MILP_MAX_NEURONS:
        return f"{neurons} ReLU neurons (more than {MILP_MAX_NEURONS})"
    try:
        from verifier.engines.lp_encode import check_solver

        check_solver("HIGHS", mip=True)
    except Exception as e:  # no MIP solver installed: the hand-off is skipped, never fatal
        return f"no MIP solver: {e}"
    return None


@dataclass
class MilpHandoff:
    """When and how long the MILP may work on open boxes of one case's search."""

    due: float                  # monotonic time from which boxes are handed over
    spent: float = 0.0          # seconds used by MILP calls so far
    calls: int = 0
    closed: int = 0
    enabled: bool = True

    @staticmethod
    def plan(graph: Graph, share: float, started: float, deadline: float) -> "MilpHandoff":
        """A hand-off starting after ``share`` of the time from ``started`` to ``deadline``
        (disabled when ``share >= 1`` or the network is not suitable)."""
        enabled = share < 1.0 and milp_unavailable(graph) is None
        return MilpHandoff(started + max(0.0, share) * (deadline - started), enabled=enabled)

    def turn(self, now: float) -> bool:
        """Whether the next open box should go to the MILP now (at most :data:`MILP_TIME_SHARE`
        of the time since the hand-off began is spent in MILP calls)."""
        return self.enabled and now >= self.due and self.spent <= MILP_TIME_SHARE * (now - self.due)

    def budget(self, now: float, deadline: float) -> float:
        """Seconds for the next call: half the time left, at most :data:`MILP_CALL_CAP`."""
        return max(0.0, min(MILP_CALL_CAP, 0.5 * (deadline - now)))

    def record(self, seconds: float, closed: bool, attempted: bool = True) -> None:
        self.spent += seconds
        self.calls += int(attempted)
        self.closed += int(closed)

    def summary(self) -> str:
        return f"MILP settled {self.closed} of {self.calls} open sub-boxes handed to it ({self.spent:.1f} s)"


def solve_box(s, lower, upper, handoff: MilpHandoff, deadline: float):
    """Run the MILP on one box ``(n,)`` of search ``s``; returns ``(closed, counterexample)``."""
    from verifier.engines.lp import milp_leaf

    now = time.monotonic()
    until = now + handoff.budget(now, deadline)
    out = milp_leaf(s.graph, s.case, s.case_index, s.runner, lower.double().cpu().numpy(),
                    upper.double().cpu().numpy(), until, tighten=False)
    handoff.record(time.monotonic() - now, out.status == "unsat")
    return out.status == "unsat", out.counterexample
