"""``verifier check``: re-derive a report's claim from the original files, independently.

Re-hashes the model, property and sidecar files; for ``sat`` re-runs the counterexample with
its own onnxruntime session on the original model file and checks (float64 / exact rational
arithmetic, no tolerance) that the float32 input lies in the re-parsed property's region and
that the output falls into the unsafe disjunct; for ``unsat`` checks that the leaves of every
case cover its region (box union or a complete ReLU split tree) and re-bounds every leaf, in
batches, with the separate sound float64 code path of :mod:`verifier.evidence.check_bounds`.
Smoothing and reachability reports get their arithmetic and witnesses re-checked.

This module holds the outcome types, the file and onnxruntime helpers, the counterexample check
and the proof's case coverage. The leaf groups are parsed and validated in
:mod:`verifier.evidence.check_groups`, scored in :mod:`verifier.evidence.check_leaves` (box
covers: :mod:`verifier.evidence.check_tree`); smoothing and reachability reports are checked in
:mod:`verifier.evidence.check_smoothing_reach` (imported on use: it imports this module; its
``check_smoothing`` and ``check_reach`` are re-exported here lazily).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from verifier.errors import InputError
from verifier.evidence.check_exact import exact_item
from verifier.evidence.check_groups import _box_alphas, _box_lambdas, _box_paths, _group_data, is_exact, layer_slopes
from verifier.evidence.report import as_float, load_report, load_sidecar, sha256_file

_SMOOTHING_REACH_NAMES = frozenset({"check_smoothing", "check_reach"})


def __getattr__(name: str):
    """Lazy re-exports of :mod:`verifier.evidence.check_smoothing_reach` (imported on first use:
    it imports this module, so a top-level import here would be circular)."""
    if name in _SMOOTHING_REACH_NAMES:
        from verifier.evidence import check_smoothing_reach

        return getattr(check_smoothing_reach, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    from verifier.evidence.check_smoothing_reach import check_reach, check_smoothing

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
    problems: list[str] = []
    layers = layer_slopes(report["evidence"], arrays, sb.g, problems)
    if report["evidence"].get("intermediate"):
        out.add("intermediate-layer slopes well formed", not problems, "; ".join(problems[:3]) or
                f"{sum(len(v) for v in layers.values())} optimised values")
    by_case: dict[int, list] = {}
    for g in report["evidence"].get("groups") or []:
        if out.add(f"leaf group {g['prefix']} names a case of the property", 0 <= int(g["case"]) < len(prop.cases),
                   f"case {g['case']}"):
            d = _group_data(g, arrays, sb.g, prop.cases[int(g["case"])])
            if out.add(f"leaves {g['prefix']} well formed", not d["problems"], "; ".join(d["problems"][:3])):
                by_case.setdefault(int(g["case"]), []).append((g, d))
    with torch.no_grad():
        for c, case in enumerate(prop.cases):
            _check_case(sb, c, case, by_case.get(c, []), margin, out, layers.get(c))


def _check_case(sb, c: int, case, groups: list, margin: float, out: CheckOutcome, layers=None) -> None:
    """One case: a whole-region leaf, a box cover or a complete split tree, every leaf bounded.
    ``layers``: the case's intermediate-layer slopes, used wherever the whole region is bounded."""
    from verifier.evidence import check_leaves as lv
    from verifier.evidence.check_tree import box_tree

    kinds = {g["kind"] for g, _ in groups}
    if not out.add(f"case {c} has leaves", bool(groups), f"{sum(g['count'] for g, _ in groups)} leaves"):
        return
    for g, d in groups:
        if g["kind"] == "region":
            _leaf_item(out, g, lv.region_scores(sb, case, d["alpha"], margin, layers).numpy(), margin)
    if "region" in kinds:
        out.add(f"case {c} covered", True, "a leaf bounds the whole region")
        return
    box = [(g, d) for g, d in groups if g["kind"] == "box"]
    if box:
        decided = np.concatenate([np.full(len(d["lower"]), is_exact(g)) for g, d in box])
        tree = box_tree(sb, case, np.concatenate([d["lower"] for _, d in box]),
                           np.concatenate([d["upper"] for _, d in box]), margin, *_box_alphas(box), decided,
                           _box_paths(box), _box_lambdas(box))
        for g, d in box:
            if is_exact(g):
                out.add(*exact_item(sb, c, case, g, d))
        out.add(f"case {c} covered by its {sum(len(d['lower']) for _, d in box)} boxes", tree.covered, tree.detail)
        if tree.covered:
            out.add(f"case {c}: every box re-bounded above the margin {margin:g}", tree.failed_pieces == 0,
                    f"weakest score {tree.min_score:.6g}; {tree.failed_pieces} pieces at or below it")
    split = [(g, d) for g, d in groups if g["kind"] == "split"]
    if split:
        ok, note = lv.splits_cover([s for _, d in split for s in d["splits"]])
        out.add(f"case {c} covered by its split tree", ok, note)
        root = sb.intermediate(lv.case_inputs(sb, case), layers=layers)
        for g, d in split:
            refresh = g["method"].endswith("+refresh")
            _leaf_item(out, g, lv.split_scores(sb, case, root, d["signs"], d["alpha"], d["beta"], margin,
                                               refresh).numpy(), margin)


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
