"""Box leaves closed by the exact MILP: each box is decided again by a fresh MILP.

These leaves cannot be re-bounded by the checker's simple interval/CROWN path (that is why the
search handed them to the solver), so the check re-solves them: every unsafe disjunct must be
infeasible on the box. The big-M constants come from the checker's own outward-rounded bounds,
not from the search's. The result rests on the MILP solver (HiGHS by default) and on the
encoding of the network, not on the simple bounding path alone; the check item says so.
"""
from __future__ import annotations

import time

import numpy as np

SECONDS_PER_BOX = 20.0


def exact_item(sb, c: int, case, group: dict, data: dict) -> tuple[str, bool, str]:
    """``(name, ok, detail)`` for one group of MILP-closed boxes ``data['lower'/'upper']`` ``(L, n)``;
    the big-M constants come from the checker's own outward-rounded bounds (``sb``)."""
    from verifier.engines.lp import milp_leaf
    from verifier.evidence.check_leaves import case_inputs
    from verifier.engines.onnx_runner import OnnxRunner

    graph = sb.g
    runner = OnnxRunner(graph)
    lows, highs = np.asarray(data["lower"]), np.asarray(data["upper"])
    started, failures = time.monotonic(), []
    for i in range(len(lows)):
        lo, hi = np.maximum(lows[i], case.region.lower), np.minimum(highs[i], case.region.upper)
        own = sb.intermediate(case_inputs(sb, case, lo[None], hi[None]))  # the checker's rounded bounds
        res = milp_leaf(graph, case, c, runner, lo, hi, time.monotonic() + SECONDS_PER_BOX, tighten=False,
                        bounds=own)
        if res.status != "unsat":
            failures.append(f"box {i}: {res.status} ({res.reason})")
    name = f"case {c}: leaves {group['prefix']} re-decided by exact MILP"
    detail = (f"{len(lows)} boxes, every unsafe disjunct infeasible ({time.monotonic() - started:.2f} s; "
              "big-M constants from the checker's own bounds; rests on the MILP solver)")
    return name, not failures, "; ".join(failures[:3]) if failures else detail
