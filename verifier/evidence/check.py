"""``verifier check``: re-derive a report's claim from the original files, independently.

Re-hashes the model, property and sidecar files; for ``sat`` re-runs the counterexample with
its own onnxruntime session on the original model file and checks (float64 / exact rational
arithmetic, no tolerance) that the float32 input lies in the re-parsed property's region and
that the output falls into the unsafe disjunct; for ``unsat`` checks that the leaves of every
case cover its region (box union or a complete ReLU split tree) and re-bounds every leaf, in
batches, with the separate sound float64 code path of :mod:`verifier.evidence.check_bounds`.
Smoothing and reachability reports get their arithmetic and witnesses re-checked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from verifier.errors import InputError
from verifier.evidence.check_exact import exact_item
from verifier.evidence.report import as_float, load_report, load_sidecar, sha256_file


@dataclass
class Item:
    """One checked statement."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class CheckOutcome:
    """Every item, and the time the check took next to the time the verification took."""

    items: list[Item] = field(default_factory=list)
    check_time: float = 0.0
    verify_time: float | None = None
    kind: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(i.ok for i in self.items)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Item(name, bool(ok), detail))
        return bool(ok)


# ---- files ----------------------------------------------------------------------------------
def resolve(entry: dict, report_path: Path, override: str | None, what: str) -> Path:
    """The file a report names: ``override``, else its absolute path, else its path relative
    to the report's folder or to the current folder."""
    candidates = [override] if override else [entry.get("abspath"), entry.get("path")]
    for c in candidates:
        if not c:
            continue
        for p in (Path(c), report_path.parent / c):
            if p.is_file():
                return p
    raise InputError(f"the {what} file named in the report was not found ({entry.get('path')})",
                     path=str(report_path))


def _check_hash(out: CheckOutcome, name: str, path: Path, expected: str | None) -> bool:
    actual = sha256_file(path)
    return out.add(f"{name} SHA-256", actual == expected,
                   f"{path}: {actual[:16]}… " + ("matches" if actual == expected
                                                else f"!= recorded {str(expected)[:16]}…"))


def ort_session(path: Path):
    """A fresh single-threaded CPU onnxruntime session and the input's declared shape."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in sess.get_inputs()[0].shape]
    return sess, shape


def ort_run(sess, shape: list[int], xs: np.ndarray) -> np.ndarray:
    """onnxruntime outputs ``(N, n_outputs)`` float64 for float32 inputs ``(N, n_inputs)``."""
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: np.asarray(x, np.float32).reshape(shape)})[0].reshape(-1)
                     for x in xs]).astype(np.float64)


def load_property(report: dict, report_path: Path, arrays, override: str | None, out: CheckOutcome):
    """Re-parse the property file (after its hash check) or rebuild an embedded one."""
    from verifier.spec.property import Case, Conjunction, InputRegion, Property
    from verifier.spec.vnnlib import parse_vnnlib

    entry = report["property"]
    if entry.get("kind") == "vnnlib":
        path = resolve(entry, report_path, override, "property")
        _check_hash(out, "property", path, entry.get("sha256"))
        return parse_vnnlib(path)
    if arrays is None:
        raise InputError("the report embeds its property but has no sidecar", path=str(report_path))
    cases = []
    for i, layout in enumerate(entry["cases"]):
        center = arrays.get(f"property.{i}.l2_center")
        region = InputRegion(arrays[f"property.{i}.lower"], arrays[f"property.{i}.upper"], center,
                             None if center is None else float(layout["l2_radius"]))
        conj = tuple(Conjunction(arrays[f"property.{i}.{k}.C"], arrays[f"property.{i}.{k}.d"])
                     for k in range(int(layout["disjuncts"])))
        cases.append(Case(region, conj))
    return Property(tuple(cases), int(entry["n_inputs"]), int(entry["n_outputs"]), source="embedded")


# ---- exact membership -----------------------------------------------------------------------
def in_region(region, x: np.ndarray) -> bool:
    """``x`` (float64, flat) in the box (float64 comparisons are exact) and in the L2 ball
    (exact rational arithmetic)."""
    if x.shape != region.lower.shape or not (np.all(x >= region.lower) and np.all(x <= region.upper)):
        return False
    if region.l2_center is None:
        return True
    total = sum((Fraction(float(a)) - Fraction(float(c))) ** 2 for a, c in zip(x, region.l2_center))
    return total <= Fraction(float(region.l2_radius)) ** 2


def violates(conj, y: np.ndarray) -> bool:
    """Whether every row of ``C y <= d`` holds for ``y``, in exact rational arithmetic."""
    if conj.C.shape[0] == 0:
        return True
    ys = [Fraction(float(v)) for v in y]
    for row, d in zip(conj.C, conj.d):
        nz = np.flatnonzero(row)
        if sum((Fraction(float(row[j])) * ys[j] for j in nz), Fraction(0)) > Fraction(float(d)):
            return False
    return True


def check_counterexample(ev: dict, prop, model_path: Path, out: CheckOutcome) -> None:
    """Re-run the witness with onnxruntime; check region membership and the violation."""
    x = np.array([as_float(v) for v in ev.get("x", [])], dtype=np.float64)
    out.add("counterexample input is finite float32", x.size > 0 and bool(np.all(np.isfinite(x)))
            and bool(np.all(x.astype(np.float32).astype(np.float64) == x)), f"{x.size} values")
    sess, shape = ort_session(model_path)
    if int(np.prod(shape)) != x.size or x.size != prop.n_inputs:
        out.add("counterexample size", False, f"{x.size} values; model input {shape}, property "
                f"{prop.n_inputs} inputs")
        return
    y = ort_run(sess, shape, x[None])[0]
    recorded = np.array([as_float(v) for v in ev.get("y", [])], dtype=np.float64)
    same = recorded.shape == y.shape and bool(np.all(np.abs(recorded - y) <= 1e-5 * (1 + np.abs(y))))
    out.add("recorded output agrees with onnxruntime", same, f"onnxruntime y = {np.array2string(y, precision=6)}")
    ci, di = int(ev.get("case", -1)), int(ev.get("disjunct", -1))
    hits = [(c, k) for c, case in enumerate(prop.cases) if in_region(case.region, x)
            for k, conj in enumerate(case.unsafe) if violates(conj, y)]
    recorded_ok = (ci, di) in hits
    out.add("input in the region (float64, no tolerance)",
            any(in_region(case.region, x) for case in prop.cases),
            f"recorded case {ci}" + ("" if 0 <= ci < len(prop.cases) and in_region(prop.cases[ci].region, x)
                                     else " does not contain it"))
    out.add("onnxruntime output violates the property (exact arithmetic)", bool(hits),
            f"case/disjunct {hits[0] if hits else None}" + ("" if recorded_ok or not hits else
                                                            f" (recorded {ci}/{di} does not hold)"))


# ---- the whole check ------------------------------------------------------------------------
def check_report(path: str, model: str | None = None, prop_override: str | None = None) -> CheckOutcome:
    """Check the report at ``path``; :class:`InputError` when it cannot be read at all."""
    started = time.monotonic()
    report_path = Path(path)
    report = load_report(report_path)
    out = CheckOutcome(kind=str(report.get("kind")))
    model_path = resolve(report.get("model") or {}, report_path, model, "model")
    _check_hash(out, "model", model_path, (report.get("model") or {}).get("sha256"))
    arrays = None
    if report.get("sidecar"):
        side = report_path.parent / report["sidecar"]["path"]
        if out.add("sidecar present", side.is_file(), str(side)) and \
                _check_hash(out, "sidecar", side, report["sidecar"].get("sha256")):
            arrays = load_sidecar(report_path, report)
    try:
        if out.kind == "verify":
            _check_verify(report, report_path, arrays, model_path, prop_override, out)
        elif out.kind == "smoothing":
            check_smoothing(report, out)
        elif out.kind == "reach":
            check_reach(report, arrays, model_path, out)
        else:
            out.add("report kind", False, f"unknown kind {out.kind!r}")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        out.add("report structure", False, f"missing or malformed field or array: {type(e).__name__}: {e}")
    out.check_time = time.monotonic() - started
    vt = (report.get("stats") or {}).get("time")
    out.verify_time = as_float(vt) if vt is not None else None
    return out


def _check_verify(report, report_path, arrays, model_path, prop_override, out: CheckOutcome) -> None:
    verdict, status = report.get("verdict"), report.get("status")
    pairs = {"sat": "falsified", "unsat": "verified", "unknown": "unknown", "timeout": "timeout",
             "error": "error"}
    out.add("verdict matches status", pairs.get(verdict) == status, f"verdict {verdict}, status {status}")
    prop = load_property(report, report_path, arrays, prop_override, out)
    ev = report.get("evidence") or {}
    if verdict == "sat":
        if out.add("sat verdict carries a counterexample", ev.get("kind") == "counterexample"):
            check_counterexample(ev, prop, model_path, out)
    elif verdict == "unsat":
        if out.add("unsat verdict carries a proof", ev.get("kind") == "proof" and arrays is not None,
                   f"evidence {ev.get('kind')!r} with {ev.get('n_leaves', 0)} leaves"):
            check_proof(report, arrays, prop, model_path, out)
    else:
        out.add("no claim to check", True, f"verdict {verdict}: {report.get('reason', '')}")


# ---- proofs ---------------------------------------------------------------------------------
def check_proof(report: dict, arrays: dict, prop, model_path: Path, out: CheckOutcome) -> None:
    """Coverage of every case by its leaves, and every leaf re-bounded (batched)."""
    import torch

    from verifier.evidence.check_bounds import NotCheckable, SoundBounds
    from verifier.ir.onnx_import import load_onnx

    margin = max(as_float((report.get("settings") or {}).get("proof_margin", 0.0)), 0.0)
    graph = load_onnx(model_path)
    if not out.add("model and property sizes agree", (graph.n_inputs, graph.n_outputs) ==
                   (prop.n_inputs, prop.n_outputs), f"model {graph.n_inputs}→{graph.n_outputs}, "
                   f"property {prop.n_inputs}→{prop.n_outputs}"):
        return
    try:
        sb = SoundBounds(graph)
    except NotCheckable as e:
        out.add("ops covered by the independent checker", False, str(e))
        return
    failed = sb.self_test()
    out.add("ops pass the self-test (affine adjoints, pooling lines)", not failed,
            ", ".join(failed) or f"{len(graph.nodes)} nodes")
    _check_samples(sb, prop, model_path, out)
    by_case: dict[int, list] = {}
    for g in report["evidence"].get("groups") or []:
        if out.add(f"leaf group {g['prefix']} names a case of the property", 0 <= int(g["case"]) < len(prop.cases),
                   f"case {g['case']}"):
            d = _group_data(g, arrays, sb.g, prop.cases[int(g["case"])])
            if out.add(f"leaves {g['prefix']} well formed", not d["problems"], "; ".join(d["problems"][:3])):
                by_case.setdefault(int(g["case"]), []).append((g, d))
    with torch.no_grad():
        for c, case in enumerate(prop.cases):
            _check_case(sb, c, case, by_case.get(c, []), margin, out)


def _check_case(sb, c: int, case, groups: list, margin: float, out: CheckOutcome) -> None:
    """One case: a whole-region leaf, a box cover or a complete split tree, every leaf bounded."""
    from verifier.evidence import check_leaves as lv

    kinds = {g["kind"] for g, _ in groups}
    if not out.add(f"case {c} has leaves", bool(groups), f"{sum(g['count'] for g, _ in groups)} leaves"):
        return
    for g, d in groups:
        if g["kind"] == "region":
            _leaf_item(out, g, lv.region_scores(sb, case, d["alpha"], margin).numpy(), margin)
    if "region" in kinds:
        out.add(f"case {c} covered", True, "a leaf bounds the whole region")
        return
    box = [(g, d) for g, d in groups if g["kind"] == "box"]
    if box:
        decided = np.concatenate([np.full(len(d["lower"]), is_exact(g)) for g, d in box])
        tree = lv.box_tree(sb, case, np.concatenate([d["lower"] for _, d in box]),
                           np.concatenate([d["upper"] for _, d in box]), margin, *_box_alphas(box), decided,
                           _box_paths(box), _box_lambdas(box))
        for g, d in box:
            if is_exact(g):
                out.add(*exact_item(sb.g, c, case, g, d))
        out.add(f"case {c} covered by its {sum(len(d['lower']) for _, d in box)} boxes", tree.covered, tree.detail)
        if tree.covered:
            out.add(f"case {c}: every box re-bounded above the margin {margin:g}", tree.failed_pieces == 0,
                    f"weakest score {tree.min_score:.6g}; {tree.failed_pieces} pieces at or below it")
    split = [(g, d) for g, d in groups if g["kind"] == "split"]
    if split:
        ok, note = lv.splits_cover([s for _, d in split for s in d["splits"]])
        out.add(f"case {c} covered by its split tree", ok, note)
        root = sb.intermediate(lv.case_inputs(sb, case))
        for g, d in split:
            _leaf_item(out, g, lv.split_scores(sb, case, root, d["signs"], d["alpha"], d["beta"], margin).numpy(),
                       margin)


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
    like = next(d["alpha"] for _, d in box if d["alpha"])
    stacked = {k: np.concatenate([d["alpha"][k] if k in d["alpha"] else np.zeros((n, *like[k].shape[1:]))
                                  for (_, d), n in zip(box, sizes)]) for k in keys}
    has = np.concatenate([np.full(n, bool(d["alpha"])) for (_, d), n in zip(box, sizes)])
    return stacked, has


def _leaf_item(out: CheckOutcome, g: dict, scores: np.ndarray, margin: float) -> None:
    bad = int(np.sum(~(scores > margin)))
    out.add(f"leaves {g['prefix']} (case {g['case']}, {g['method']}, {len(scores)}) re-bounded above "
            f"the margin {margin:g}", bad == 0,
            f"recomputed min {float(scores.min()):.6g} (recorded min {g.get('bound_min')}); {bad} at or below")


def _check_samples(sb, prop, model_path: Path, out: CheckOutcome, per_case: int = 4) -> None:
    """The imported graph against onnxruntime at each region's centre and random points."""
    import torch

    rng = np.random.default_rng(0)
    pts = []
    for case in prop.cases[:8]:
        lo, hi = case.region.lower, case.region.upper
        if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
            pts += [(lo + hi) / 2, *(lo + rng.random((per_case, lo.size)) * (hi - lo))]
    if not pts:
        return
    xs = np.array(pts).astype(np.float32)
    with torch.no_grad():
        ours = sb.g.forward_flat(torch.as_tensor(xs.astype(np.float64))).numpy()
    sess, shape = ort_session(model_path)
    ref = ort_run(sess, shape, xs)
    err = float(np.max(np.abs(ours - ref)) / (1.0 + np.max(np.abs(ref))))
    out.add("imported graph agrees with onnxruntime at sample points", err <= 1e-4,
            f"{len(xs)} points, max relative difference {err:.2e}")


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


# ---- smoothing and reachability -------------------------------------------------------------
def check_smoothing(report: dict, out: CheckOutcome) -> None:
    """Recompute the Clopper–Pearson bound and the radius from the counts (single input) and
    the radius from ``pA_lower`` (data-set rows). The sampling itself is not repeated."""
    from scipy.stats import beta, norm

    sec = report["smoothing"]
    one = sec.get("single")
    if one:
        pred, counts = int(one["prediction"]), [int(c) for c in one["counts"]]
        n, alpha, sigma = int(one["n"]), float(one["alpha"]), float(one["sigma"])
        if pred < 0:
            out.add("abstention claims nothing", float(one["radius"]) == 0.0, one.get("reason", ""))
        else:
            k = counts[pred]
            pa = float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0
            sel = one.get("selection_counts")
            out.add("counts add up to n", sum(counts) == n, f"{sum(counts)} of {n}")
            out.add("prediction is the top selection count", sel is None or int(np.argmax(sel)) == pred)
            out.add("pA lower bound recomputed (Clopper-Pearson)", abs(pa - float(one["pA_lower"])) <= 1e-9
                    and pa >= 0.5, f"{pa:.9g} (recorded {one['pA_lower']})")
            radius = sigma * float(norm.ppf(pa)) if pa >= 0.5 else 0.0
            out.add("radius = sigma * inverse normal CDF(pA)", float(one["radius"]) <= radius * (1 + 1e-9) + 1e-12,
                    f"{radius:.9g} (recorded {one['radius']})")
    rows = (sec.get("dataset") or {}).get("rows") or []
    if rows:
        bad = [r["index"] for r in rows if not _row_consistent(r, norm)]
        out.add("data-set rows: radius and correctness consistent", not bad, f"{len(rows)} rows; bad: {bad[:5]}")
    if not one and not rows:
        out.add("smoothing report has results", False)


def _row_consistent(r: dict, norm) -> bool:
    pred, pa, sigma, radius = int(r["prediction"]), float(r["pA_lower"]), float(r["sigma"]), float(r["radius"])
    expected = sigma * float(norm.ppf(pa)) if pred >= 0 and pa >= 0.5 else 0.0
    return radius <= expected * (1 + 1e-9) + 1e-12 and (r["correct"] == "1") == (pred == int(r["label"]))


def check_reach(report: dict, arrays, model_path: Path, out: CheckOutcome) -> None:
    """Witnesses inside the box, re-run with onnxruntime; the objective (when recorded as rows)
    at each witness must lie within the claimed range."""
    sec = report["reach"]
    if not out.add("reach report has its region", arrays is not None and "reach.lower" in arrays):
        return
    lo, hi = arrays["reach.lower"], arrays["reach.upper"]
    sess, shape = ort_session(model_path)
    for end in ("min", "max"):
        e = sec[end]
        lower, upper = as_float(e["lower"]), as_float(e["upper"])
        out.add(f"{end}: lower <= upper", lower <= upper, f"[{lower:.6g}, {upper:.6g}]")
        if e.get("witness") is None:
            continue
        w = np.array([as_float(v) for v in e["witness"]])
        out.add(f"{end} witness is a float32 point of the box", w.shape == lo.shape and bool(
            np.all(w.astype(np.float32) == w) and np.all(w >= lo) and np.all(w <= hi)))
        if "reach.C" in arrays:
            y = ort_run(sess, shape, w[None])[0]
            vals = arrays["reach.C"] @ y + arrays["reach.d"]
            o = float(vals.min() if sec.get("objective_kind") == "min" else vals.max())
            tol = 1e-4 * (1 + abs(o))
            inside = (o >= lower - tol) if end == "min" else (o <= upper + tol)
            out.add(f"{end} witness value (onnxruntime) consistent with the range", inside,
                    f"o(witness) = {o:.6g}, recorded {e.get('witness_value')}")
