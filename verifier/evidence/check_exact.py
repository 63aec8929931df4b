"""Box leaves closed by the exact MILP: each box is decided again by a fresh MILP.

These leaves cannot be re-bounded by the checker's simple interval/CROWN path (that is why the
search handed them to the solver), so the check re-solves them: every unsafe disjunct must be
infeasible on the box. The result rests on the MILP solver (HiGHS by default) and on the
encoding of the network, not on the bound propagation that produced the other leaves; the
check item says so.
"""
from __future__ import annotations

import time

import numpy as np

SECONDS_PER_BOX = 20.0


def exact_item(graph, c: int, case, group: dict, data: dict) -> tuple[str, bool, str]:
    """``(name, ok, detail)`` for one group of MILP-closed boxes ``data['lower'/'upper']`` ``(L, n)``."""
    from verifier.engines.lp import milp_leaf
    from verifier.engines.onnx_runner import OnnxRunner

    runner = OnnxRunner(graph)
    lows, highs = np.asarray(data["lower"]), np.asarray(data["upper"])
    started, failures = time.monotonic(), []
    for i in range(len(lows)):
        res = milp_leaf(graph, case, c, runner, lows[i], highs[i], time.monotonic() + SECONDS_PER_BOX,
                        tighten=False)
        if res.status != "unsat":
            failures.append(f"box {i}: {res.status} ({res.reason})")
    name = f"case {c}: leaves {group['prefix']} re-decided by exact MILP"
    detail = (f"{len(lows)} boxes, every unsafe disjunct infeasible ({time.monotonic() - started:.2f} s; "
              "rests on the MILP solver, not on the re-bounding path)")
    return name, not failures, "; ".join(failures[:3]) if failures else detail
