"""Leaf groups of an ``unsat`` proof read from the sidecar and validated for
:mod:`verifier.evidence.check`: array shapes, node names, bisection paths ``(L, P)``, row weights
``(L, R)``, α/β multipliers ``(L, R, *shape)`` and split lists turned into sign arrays
``(L, n)`` (:func:`_group_data`); and the box leaves of several groups stacked for
:func:`~verifier.evidence.check_tree.box_tree` (``_box_alphas``, ``_box_paths``,
``_box_lambdas``), with :func:`is_exact` telling the groups closed by the exact MILP.
"""
from __future__ import annotations

import numpy as np


def is_exact(group: dict) -> bool:
    """Whether a leaf group was closed by the exact MILP (re-decided by one, not re-bounded)."""
    return str(group.get("method", "")).endswith("/milp")


def _box_lambdas(box: list) -> np.ndarray | None:
    """Row weights of every box leaf stacked ``(L, R)`` (zeros where a group recorded none), or None."""
    if all(d.get("lambda") is None for _, d in box):
        return None
    R = next(d["lambda"].shape[1] for _, d in box if d.get("lambda") is not None)
    return np.concatenate([d["lambda"] if d.get("lambda") is not None else np.zeros((len(d["lower"]), R))
                           for _, d in box])


def _box_paths(box: list) -> np.ndarray | None:
    """The bisection paths of every box leaf stacked ``(L, P)`` (-1 padded), or None unless every
    group recorded them."""
    if any(d.get("path") is None for _, d in box):
        return None
    P = max(d["path"].shape[1] for _, d in box)
    return np.concatenate([np.pad(d["path"], ((0, 0), (0, P - d["path"].shape[1])), constant_values=-1)
                           for _, d in box])


def _box_alphas(box: list) -> tuple[dict | None, np.ndarray | None]:
    """The α slopes of box leaves from several groups stacked ``(L, R, *shape)`` (zeros where a
    group recorded none) and which leaves recorded them ``(L,)`` bool; ``(None, None)`` if none did."""
    keys = sorted({k for _, d in box for k in d["alpha"]})
    if not keys:
        return None, None
    sizes = [len(d["lower"]) for _, d in box]
    like = {k: next(d["alpha"][k] for _, d in box if k in d["alpha"]) for k in keys}
    stacked = {k: np.concatenate([d["alpha"][k] if k in d["alpha"] else np.zeros((n, *like[k].shape[1:]))
                                  for (_, d), n in zip(box, sizes)]) for k in keys}
    has = np.concatenate([np.full(n, bool(d["alpha"])) for (_, d), n in zip(box, sizes)])
    return stacked, has


def _group_data(g: dict, arrays: dict, graph, case) -> dict:
    """A leaf group's arrays, validated: shapes, names, split lists → sign arrays."""
    p, problems = g["prefix"], []
    bound = arrays[p + "bound"]
    L, R = bound.shape[0], sum(c.C.shape[0] for c in case.unsafe)
    d = {"bound": bound, "problems": problems, "splits": None, "signs": {}, "alpha": {}, "beta": {}}
    if g["kind"] == "box":
        d["lower"], d["upper"] = arrays[p + "lower"], arrays[p + "upper"]
        if d["lower"].shape != (L, graph.n_inputs) or d["upper"].shape != (L, graph.n_inputs):
            problems.append(f"leaf boxes have shape {d['lower'].shape}, expected {(L, graph.n_inputs)}")
        d["path"] = _path_data(g, arrays, graph, L, problems)
    elif g["kind"] == "split":
        _split_data(g, arrays, graph, d, L)
    elif g["kind"] != "region":
        problems.append(f"leaf kind {g['kind']!r} is not checkable")
    for mk in ("alpha", "beta"):
        for j, name in enumerate(g.get(mk) or []):
            arr = arrays[f"{p}{mk}.{j}"]
            known = name in graph.node_by_name and (mk == "beta" or graph.node_by_name[name].op in
                                                    ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Exp"))
            if not known or arr.shape != (L, R, *graph.shape_of(name)):
                problems.append(f"{mk} multiplier for {name!r} has shape {arr.shape} or names no suitable node")
            d[mk][name] = arr
    d["lambda"] = _lambda_data(g, arrays, L, R, problems)
    return d


def _lambda_data(g: dict, arrays: dict, L: int, R: int, problems: list) -> np.ndarray | None:
    """Row weights ``(L, R)`` of leaves closed by a combination of their rows, or None."""
    if not g.get("lambda"):
        return None
    lam = np.asarray(arrays.get(g["prefix"] + "lambda.0", np.zeros((0,))))
    if g["lambda"] != ["rows"] or lam.shape != (L, R) or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        problems.append(f"row weights have shape {lam.shape} (expected {(L, R)}) or are negative/non-finite")
        return None
    return lam


def _path_data(g: dict, arrays: dict, graph, L: int, problems: list) -> np.ndarray | None:
    """The bisection paths of box leaves ``(L, P)`` (dims, -1 padded), or None if not recorded."""
    if not g.get("path"):
        return None
    path = np.asarray(arrays.get(g["prefix"] + "path", np.zeros((0, 0))))
    if path.ndim != 2 or path.shape[0] != L or path.dtype.kind not in "iu" or \
            (path.size and (path.min() < -1 or path.max() >= graph.n_inputs)):
        problems.append(f"bisection paths have shape {path.shape} or name dimensions outside 0..{graph.n_inputs - 1}")
        return None
    return path


def _split_data(g: dict, arrays: dict, graph, d: dict, L: int) -> None:
    p, names = g["prefix"], g.get("split_nodes") or []
    node, index, sign = arrays[p + "split_node"], arrays[p + "split_index"], arrays[p + "split_sign"]
    sets: list[dict] = [{} for _ in range(L)]
    for act in names:
        if act not in graph.node_by_name or graph.node_by_name[act].op not in ("Relu", "LeakyRelu"):
            d["problems"].append(f"split on {act!r}, which is not a ReLU-like activation")
            return
        d["signs"][graph.node_by_name[act].inputs[0]] = np.zeros((L, _numel(graph.shape_of(act))), np.int8)
    for r, c in zip(*np.nonzero(node >= 0)):
        act, idx, s = names[int(node[r, c])], int(index[r, c]), int(sign[r, c])
        flat = d["signs"][graph.node_by_name[act].inputs[0]]
        if s not in (1, -1) or not 0 <= idx < flat.shape[1] or sets[r].get((act, idx), s) != s:
            d["problems"].append(f"leaf {r}: bad split ({act}, {idx}, {s})")
            continue
        sets[r][(act, idx)] = s
        flat[r, idx] = s
    d["splits"] = sets


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


_SLOPE_OPS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Exp")


def layer_slopes(evidence: dict, arrays: dict, graph, problems: list) -> dict[int, dict]:
    """The recorded slopes of layer-optimised intermediate bounds, validated: case → value name →
    ``(rows (r,) int64, {activation: slopes (2r, *shape)})``. Entries that do not fit the graph
    are reported in ``problems`` and dropped (only tighter bounds could come from them)."""
    out: dict[int, dict] = {}
    for entry in evidence.get("intermediate") or []:
        case = int(entry.get("case", -1))
        for v in entry.get("values") or []:
            name, p = v.get("value"), v.get("prefix", "")
            rows = np.asarray(arrays.get(p + "rows", np.zeros((0,))))
            if name not in graph.node_by_name or rows.ndim != 1 or rows.dtype.kind not in "iu":
                problems.append(f"layer slopes {p!r} name no value or carry no neuron indices")
                continue
            n = int(np.prod(graph.shape_of(name)))
            if rows.size == 0 or rows.min() < 0 or rows.max() >= n or np.unique(rows).size != rows.size:
                problems.append(f"layer slopes {p!r}: neuron indices out of range or repeated")
                continue
            alphas, ok = {}, True
            for j, act in enumerate(v.get("activations") or []):
                a = np.asarray(arrays.get(f"{p}alpha.{j}", np.zeros((0,))))
                node = graph.node_by_name.get(act)
                if (node is None or node.op not in _SLOPE_OPS or a.shape != (2 * rows.size, *graph.shape_of(act))
                        or not np.all(np.isfinite(a))):
                    problems.append(f"layer slopes {p!r}: slopes of {act!r} have shape {a.shape} or name no activation")
                    ok = False
                    break
                alphas[act] = a
            if ok:
                out.setdefault(case, {})[name] = (rows.astype(np.int64), alphas)
    return out
