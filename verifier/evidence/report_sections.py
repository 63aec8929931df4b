"""The question and evidence sections of a safety report (:mod:`verifier.evidence.report`).

The property (its file, or embedded in the sidecar, with a summary of its cases), a confirmed
counterexample, and the proof leaves grouped by (case, method, kind, multiplier shapes) with
their arrays stacked in the sidecar. Functions that store arrays add them to ``arrays``
(name → array) and return the JSON section.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from verifier.evidence.report_json import file_entry, jsonable

Arrays = dict[str, np.ndarray]


def property_summary(prop) -> dict[str, Any]:
    """Counts of cases, disjuncts and rows, and the input box of each case (all ranges when the
    input has at most 32 entries, else statistics of the widths)."""
    cases = []
    for case in prop.cases:
        lo, hi = case.region.lower, case.region.upper
        width = hi - lo
        entry = {"disjuncts": len(case.unsafe), "rows": [int(c.C.shape[0]) for c in case.unsafe],
                 "input_min": float(lo.min()), "input_max": float(hi.max()),
                 "width_min": float(width.min()), "width_max": float(width.max()),
                 "width_mean": float(width.mean()), "fixed_inputs": int((width == 0).sum()),
                 "l2_radius": case.region.l2_radius}
        if lo.size <= 32:
            entry["ranges"] = [[float(a), float(b)] for a, b in zip(lo, hi)]
        cases.append(entry)
    return {"n_inputs": prop.n_inputs, "n_outputs": prop.n_outputs, "n_cases": len(prop.cases),
            "cases": cases, "meta": jsonable(prop.meta)}


def embed_property(prop, arrays: Arrays) -> dict[str, Any]:
    """Store a property that has no file (a robustness query, say) in the sidecar."""
    layout = []
    for i, case in enumerate(prop.cases):
        r = case.region
        arrays[f"property.{i}.lower"], arrays[f"property.{i}.upper"] = r.lower, r.upper
        if r.l2_center is not None:
            arrays[f"property.{i}.l2_center"] = r.l2_center
        for k, conj in enumerate(case.unsafe):
            arrays[f"property.{i}.{k}.C"], arrays[f"property.{i}.{k}.d"] = conj.C, conj.d
        layout.append({"disjuncts": len(case.unsafe), "l2_radius": r.l2_radius})
    return {"kind": "embedded", "source": prop.source, "cases": layout,
            "n_inputs": prop.n_inputs, "n_outputs": prop.n_outputs}


def property_entry(prop, property_path, arrays: Arrays) -> dict[str, Any]:
    """The property: its file (path, SHA-256) or, without one, embedded in the sidecar."""
    entry = {"kind": "vnnlib", **file_entry(property_path)} if property_path else embed_property(prop, arrays)
    entry["summary"] = property_summary(prop)
    return entry


def counterexample_section(cex) -> dict[str, Any]:
    """The confirmed counterexample: float32 input (shape and flat values), onnxruntime output."""
    x = np.asarray(cex.x, dtype=np.float32)
    return {"kind": "counterexample", "case": int(cex.case_index), "disjunct": int(cex.disjunct_index),
            "margin": jsonable(cex.margin), "confirmed_by": cex.confirmed_by,
            "input_shape": list(x.shape), "x": jsonable(x.reshape(-1).astype(np.float64)),
            "y": jsonable(np.asarray(cex.y, dtype=np.float64).reshape(-1))}


def _leaf_kind(leaf) -> str:
    if leaf.splits:
        return "split" if leaf.lower is None else "mixed"
    return "box" if leaf.lower is not None else "region"


def _signature(leaf) -> tuple:
    mult = leaf.multipliers or {}
    shapes = tuple((kind, name, tuple(np.shape(v))) for kind in ("alpha", "beta", "lambda")
                   for name, v in sorted((mult.get(kind) or {}).items()))
    return leaf.case, leaf.method, _leaf_kind(leaf), shapes


def proof_section(leaves: list, arrays: Arrays) -> dict[str, Any]:
    """Leaves grouped by (case, method, kind, multiplier shapes); each group's arrays stacked in
    the sidecar under the prefix ``g<i>.``."""
    groups: dict[tuple, list] = {}
    for leaf in leaves:
        groups.setdefault(_signature(leaf), []).append(leaf)
    out = []
    for gi, (sig, members) in enumerate(groups.items()):
        case, method, kind, _ = sig
        p = f"g{gi}."
        bounds = np.array([float(lf.bound) for lf in members], dtype=np.float64)
        arrays[p + "bound"] = bounds
        entry = {"case": int(case), "method": method, "kind": kind, "count": len(members), "prefix": p,
                 "bound_min": jsonable(bounds.min()), "bound_max": jsonable(bounds.max())}
        if kind in ("box", "mixed"):
            arrays[p + "lower"] = np.stack([np.asarray(lf.lower, np.float64).reshape(-1) for lf in members])
            arrays[p + "upper"] = np.stack([np.asarray(lf.upper, np.float64).reshape(-1) for lf in members])
            if all(lf.path for lf in members):
                depth = max(len(lf.path) for lf in members)
                arrays[p + "path"] = np.array([list(lf.path) + [-1] * (depth - len(lf.path)) for lf in members],
                                              dtype=np.int64)
                entry["path"] = True
        if kind in ("split", "mixed"):
            entry["split_nodes"] = _store_splits(members, arrays, p)
        for mk in ("alpha", "beta", "lambda"):
            names = sorted(((members[0].multipliers or {}).get(mk) or {}).keys())
            entry[mk] = names
            for j, name in enumerate(names):
                arrays[f"{p}{mk}.{j}"] = np.stack([np.asarray(lf.multipliers[mk][name], np.float64)
                                                   for lf in members])
        out.append(entry)
    worst = min((float(lf.bound) for lf in leaves), default=math.inf)
    return {"kind": "proof", "n_leaves": len(leaves), "worst_leaf_bound": jsonable(worst), "groups": out}


def _store_splits(members: list, arrays: Arrays, p: str) -> list[str]:
    """Split lists as padded ``(L, S)`` arrays: node index (-1 pads), flat index, sign."""
    names = sorted({s[0] for lf in members for s in lf.splits})
    pos = {n: i for i, n in enumerate(names)}
    width = max(len(lf.splits) for lf in members)
    node = np.full((len(members), width), -1, dtype=np.int32)
    index = np.zeros((len(members), width), dtype=np.int64)
    sign = np.zeros((len(members), width), dtype=np.int8)
    for r, lf in enumerate(members):
        for c, (name, idx, s) in enumerate(lf.splits):
            node[r, c], index[r, c], sign[r, c] = pos[name], int(idx), int(s)
    arrays[p + "split_node"], arrays[p + "split_index"], arrays[p + "split_sign"] = node, index, sign
    return names


def layers_section(layers: dict, arrays: Arrays) -> dict[str, Any]:
    """The slopes behind layer-optimised intermediate bounds, by case (``{case: {value:
    LayerSlopes}}``): per case and value, the neuron indices ``L<c>.<v>.rows`` ``(r,)`` and the
    slopes ``L<c>.<v>.alpha.<j>`` ``(2r, *shape)`` of each activation before it. Empty when no
    case used them."""
    out = []
    for case, slopes in sorted(layers.items()):
        values = []
        for vi, (name, ls) in enumerate(slopes.items()):
            p = f"L{case}.{vi}."
            arrays[p + "rows"] = ls.rows.detach().cpu().numpy().astype(np.int64)
            acts = sorted(ls.alphas)
            for j, act in enumerate(acts):
                arrays[f"{p}alpha.{j}"] = ls.alphas[act].detach().double().cpu().numpy()
            values.append({"value": name, "prefix": p, "activations": acts})
        out.append({"case": int(case), "values": values})
    return {"intermediate": out} if out else {}
