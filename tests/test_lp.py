"""LP bounds and exact MILP (verifier.engines.lp), checked against independent oracles:

- dense sampling with onnxruntime (an LP lower bound above a sampled value is a bug; a MILP
  optimum is attained by its own point, re-run with onnxruntime);
- CROWN with the same intermediate bounds (the triangle LP is at least as tight);
- exact minima by enumerating every ReLU activation pattern of tiny networks (one LP each);
- published verdicts of VNN-COMP benchmarks (../shared/benchmarks/ground_truth).
"""
from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper
from scipy.optimize import linprog

from conftest import benchmark_path, build_onnx, ort_forward
from verifier import api
from verifier.config import BoundsConfig, VerifyConfig
from verifier.engines.lp import lp_case, milp_case, milp_leaf, milp_minimum, run_lp_method
from verifier.engines.onnx_runner import OnnxRunner
from verifier.errors import InputError, UnsupportedError
from verifier.result import Status
from verifier.spec.property import Case, Conjunction, InputRegion, Property

F32 = np.float32


# ---- small networks built with onnx.helper -----------------------------------------------------
def _mlp(path: Path, seed: int, sizes=(3, 4, 4, 2)):
    """ReLU MLP ``x (1, n_in)`` → logits; returns the path and the weights ``[(W (in, out), b)]``."""
    rng = np.random.default_rng(seed)
    layers = [((rng.normal(size=(a, b)) / np.sqrt(a) * 1.5).astype(F32),
               (rng.normal(size=b) * 0.3).astype(F32)) for a, b in zip(sizes[:-1], sizes[1:])]
    nodes, inits, cur = [], {}, "x"
    for i, (W, b) in enumerate(layers):
        inits[f"W{i}"], inits[f"b{i}"] = (W.T.copy(), b) if i == 0 else (W, b)
        out = "y" if i == len(layers) - 1 else f"z{i}"
        if i == 0:
            nodes.append(helper.make_node("Gemm", ["x", "W0", "b0"], [out], transB=1))
        else:
            nodes += [helper.make_node("MatMul", [cur, f"W{i}"], [f"m{i}"]),
                      helper.make_node("Add", [f"m{i}", f"b{i}"], [out])]
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"]))
            cur = f"h{i}"
    build_onnx(path, nodes, [("x", [1, sizes[0]])], [("y", [1, sizes[-1]])], inits)
    return path, [(W.astype(np.float64), b.astype(np.float64)) for W, b in layers]


def _cnn(path: Path, seed: int) -> Path:
    """Asymmetric Pad + Conv → LeakyRelu → MaxPool → Flatten → Gemm → Relu → Gemm (3 outputs)."""
    rng = np.random.default_rng(seed)
    inits = {"Wc": rng.normal(size=(2, 1, 3, 3)) * 0.6, "bc": rng.normal(size=2) * 0.2,
             "W1": rng.normal(size=(6, 8)) * 0.5, "b1": rng.normal(size=6) * 0.2,
             "W2": rng.normal(size=(3, 6)) * 0.6, "b2": np.zeros(3)}
    inits = {k: v.astype(F32) for k, v in inits.items()}
    nodes = [helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], pads=[1, 0, 0, 1], strides=[1, 1]),
             helper.make_node("LeakyRelu", ["c"], ["a"], alpha=0.1),
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W1", "b1"], ["g"], transB=1),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
    return build_onnx(path, nodes, [("x", [1, 1, 6, 6])], [("y", [1, 3])], inits)


def _box(n: int, seed: int, half: float = 0.6):
    rng = np.random.default_rng(100 + seed)
    c = rng.normal(size=n).astype(F32)
    return (c - F32(half)).astype(F32), (c + F32(half)).astype(F32)


def _samples(lo, hi, n: int = 6000, seed: int = 0) -> np.ndarray:
    """Uniform samples of the box plus all its corners when there are few."""
    rng = np.random.default_rng(seed)
    pts = [rng.uniform(lo, hi, size=(n, len(lo)))]
    if len(lo) <= 8:
        pts.append(np.array(list(itertools.product(*zip(lo, hi)))))
    return np.concatenate(pts).astype(F32)


def _tol(v) -> np.ndarray:
    return 1e-4 * (1 + np.abs(v))


def _enumerated_min(layers, c: np.ndarray, lo, hi) -> float:
    """Exact ``min c·y`` over the box: one LP over x per ReLU activation pattern."""
    n_in = len(lo)
    widths = [W.shape[1] for W, _ in layers[:-1]]
    best = np.inf
    for pattern in itertools.product((0.0, 1.0), repeat=sum(widths)):
        A, a, A_ub, b_ub, pos = np.eye(n_in), np.zeros(n_in), [], [], 0
        for (W, b), h in zip(layers[:-1], widths):
            Z, z = W.T @ A, W.T @ a + b
            s = np.array(pattern[pos:pos + h])
            pos += h
            sign = np.where(s > 0, -1.0, 1.0)[:, None]        # active: z >= 0, inactive: z <= 0
            A_ub.append(sign * Z)
            b_ub.append(-(sign[:, 0] * z))
            A, a = Z * s[:, None], z * s
        W, b = layers[-1]
        res = linprog(c @ (W.T @ A), A_ub=np.concatenate(A_ub), b_ub=np.concatenate(b_ub),
                      bounds=list(zip(lo, hi)), method="highs")
        if res.status == 0:
            best = min(best, res.fun + c @ (W.T @ a + b))
    return float(best)


def _case(lo, hi, C, d, l2=None) -> Case:
    region = InputRegion(np.asarray(lo, np.float64), np.asarray(hi, np.float64),
                         None if l2 is None else np.asarray(l2[0], np.float64), None if l2 is None else l2[1])
    conj = Conjunction(np.atleast_2d(np.asarray(C, np.float64)), np.atleast_1d(np.asarray(d, np.float64)))
    return Case(region, (conj,))


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("lp_nets")
    mlps = [_mlp(d / f"mlp{s}.onnx", s) for s in range(3)]
    wide = _mlp(d / "wide.onnx", 7, sizes=(5, 12, 10, 4))
    return {"mlps": mlps, "wide": wide[0], "cnn": _cnn(d / "cnn.onnx", 0)}


# ---- LP bounds -------------------------------------------------------------------------------
def _lp_vs_crown_and_samples(path: Path, seed: int, n_rows: int = 3, tighten: bool = False):
    graph = api.load_model(path)
    lo, hi = _box(graph.n_inputs, seed)
    C = np.random.default_rng(seed).normal(size=(n_rows, graph.n_outputs))
    shape = (1, *graph.input_shape)
    lo_t, hi_t = torch.as_tensor(lo).reshape(shape), torch.as_tensor(hi).reshape(shape)
    if tighten:
        from verifier.engines.lp import lp_spec_bounds
        full = (1, *graph.input_full_shape)
        lb, ub = lp_spec_bounds(graph, lo_t.reshape(full), hi_t.reshape(full), torch.as_tensor(C)[None],
                                time.monotonic() + 60, tighten=True)
    else:
        lb, ub = api.compute_bounds(graph, lo_t, hi_t, method="lp", C=torch.as_tensor(C))
    g64 = graph.to(dtype=torch.float64)
    clb, cub = api.compute_bounds(g64, lo_t.double(), hi_t.double(), method="crown", C=torch.as_tensor(C))
    vals = ort_forward(path, _samples(lo, hi, seed=seed)) @ C.T
    lb, ub, clb, cub = (t[0].double().numpy() for t in (lb, ub, clb, cub))
    assert np.all(lb <= vals.min(0) + _tol(vals.min(0))), (lb, vals.min(0))
    assert np.all(ub >= vals.max(0) - _tol(vals.max(0))), (ub, vals.max(0))
    assert np.all(lb >= clb - 1e-6 * (1 + np.abs(clb))), (lb, clb)
    assert np.all(ub <= cub + 1e-6 * (1 + np.abs(cub))), (ub, cub)
    return (lb - clb).sum() + (cub - ub).sum(), lb, ub


def test_lp_bounds_between_crown_and_samples(nets):
    gains = [_lp_vs_crown_and_samples(p, s)[0] for s, (p, _) in enumerate(nets["mlps"])]
    gains.append(_lp_vs_crown_and_samples(nets["wide"], 5)[0])
    gains.append(_lp_vs_crown_and_samples(nets["cnn"], 1)[0])
    assert max(gains) > 1e-3, "the LP was never tighter than CROWN: it cannot have been solved"


def test_lp_tightening_sound_and_no_looser(nets):
    _, lb0, ub0 = _lp_vs_crown_and_samples(nets["wide"], 3)
    _, lb1, ub1 = _lp_vs_crown_and_samples(nets["wide"], 3, tighten=True)
    assert np.all(lb1 >= lb0 - 1e-6) and np.all(ub1 <= ub0 + 1e-6)


def test_lp_bounds_for_a_batch_of_boxes(nets):
    path = nets["wide"]
    graph = api.load_model(path)
    boxes = [_box(graph.n_inputs, s, half=0.4) for s in (11, 12)]
    lo = torch.as_tensor(np.stack([b[0] for b in boxes]))
    hi = torch.as_tensor(np.stack([b[1] for b in boxes]))
    lb, ub = api.compute_bounds(graph, lo, hi, method="lp")
    assert lb.shape == ub.shape == (2, graph.n_outputs)
    for i, (a, b) in enumerate(boxes):
        ys = ort_forward(path, _samples(a, b, n=3000))
        assert np.all(lb[i].numpy() <= ys.min(0) + _tol(ys.min(0)))
        assert np.all(ub[i].numpy() >= ys.max(0) - _tol(ys.max(0)))


def test_lp_bounds_with_another_solver(nets):
    from verifier.engines.lp import lp_spec_bounds

    path, _ = nets["mlps"][0]
    graph = api.load_model(path)
    lo, hi = _box(graph.n_inputs, 0)
    full = (1, *graph.input_full_shape)
    C = torch.eye(graph.n_outputs)[None]
    lb, ub = lp_spec_bounds(graph, torch.as_tensor(lo).reshape(full), torch.as_tensor(hi).reshape(full), C,
                            time.monotonic() + 30, solver="CLARABEL")
    ys = ort_forward(path, _samples(lo, hi))
    assert np.all(lb[0].numpy() <= ys.min(0) + _tol(ys.min(0)))
    assert np.all(ub[0].numpy() >= ys.max(0) - _tol(ys.max(0)))


# ---- exact affine maps -----------------------------------------------------------------------
def test_affine_maps_reproduce_every_affine_op():
    """``M x + offset`` read off by :func:`affine_map` equals the op's forward pass for every
    affine op instance of the registry test (Conv, ConvTranspose, Pad, Select, Concat, ...)."""
    from test_ops_registry import INSTANCES
    from verifier.engines.lp_ops import affine_map
    from verifier.ops import Affine, make_op

    seen = set()
    for name, instances in INSTANCES.items():
        for inst in instances:
            op = make_op(inst.node, torch.float64, torch.device("cpu"))
            if not isinstance(op, Affine):
                continue
            seen.add(name)
            mats, offset = affine_map(op, inst.in_shapes)
            g = torch.Generator().manual_seed(3)
            xs = [torch.randn(1, *s, generator=g, dtype=torch.float64) for s in inst.in_shapes]
            want = op.forward(*xs).reshape(-1).numpy()
            got = sum(M @ x.reshape(-1).numpy() for M, x in zip(mats, xs)) + offset
            assert np.allclose(got, want, atol=1e-10), name
    assert {"Linear", "Conv", "ConvTranspose", "Pad", "Select", "Concat", "Transpose"} <= seen


# ---- MILP optima -----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_milp_minimum_equals_enumeration(nets, seed):
    path, layers = nets["mlps"][seed]
    graph = api.load_model(path)
    lo, hi = _box(graph.n_inputs, seed, half=1.0)
    for c in np.random.default_rng(seed).normal(size=(2, graph.n_outputs)):
        status, value, x = milp_minimum(graph, lo, hi, c, time.monotonic() + 30)
        assert status == "optimal"
        exact = _enumerated_min(layers, c, lo.astype(np.float64), hi.astype(np.float64))
        assert abs(value - exact) <= 1e-5 * (1 + abs(exact)), (value, exact)
        attained = float(ort_forward(path, x[None])[0] @ c)
        assert abs(attained - value) <= _tol(value), (attained, value)


@pytest.mark.parametrize("which", ["wide", "cnn"])
def test_milp_minimum_below_samples_and_attained(nets, which):
    path = nets[which]
    graph = api.load_model(path)
    lo, hi = _box(graph.n_inputs, 4, half=0.5)
    ys = ort_forward(path, _samples(lo, hi, n=4000))
    for c in np.random.default_rng(4).normal(size=(2, graph.n_outputs)):
        status, value, x = milp_minimum(graph, lo, hi, c, time.monotonic() + 60)
        assert status == "optimal"
        assert value <= (ys @ c).min() + _tol(value)
        assert np.all(x >= lo - 1e-7) and np.all(x <= hi + 1e-7)
        attained = float(ort_forward(path, x[None])[0] @ c)
        assert abs(attained - value) <= _tol(value), (attained, value)


@pytest.mark.parametrize("seed", [0, 1])
def test_milp_verdicts_around_enumerated_minimum(nets, seed):
    """``c·y <= d`` is unsat just below the exact minimum and sat (confirmed) just above it."""
    path, layers = nets["mlps"][seed]
    graph = api.load_model(path)
    runner = OnnxRunner(graph)
    lo, hi = _box(graph.n_inputs, seed, half=1.0)
    c = np.random.default_rng(10 + seed).normal(size=graph.n_outputs)
    exact = _enumerated_min(layers, c, lo.astype(np.float64), hi.astype(np.float64))
    below = milp_case(graph, _case(lo, hi, c, exact - 0.02), 0, runner, time.monotonic() + 30)
    assert below.status == "unsat", below.reason
    above = milp_case(graph, _case(lo, hi, c, exact + 0.02), 0, runner, time.monotonic() + 30)
    assert above.status == "sat", above.reason
    cex = above.counterexample
    assert float(ort_forward(path, cex.x[None])[0] @ c) <= exact + 0.02
    assert np.all(cex.x.reshape(-1) >= lo) and np.all(cex.x.reshape(-1) <= hi)


def test_milp_leaf_on_sub_boxes(nets):
    """On each half of the box the leaf verdict follows that half's exact minimum."""
    path, layers = nets["mlps"][2]
    graph = api.load_model(path)
    runner = OnnxRunner(graph)
    lo, hi = _box(graph.n_inputs, 2, half=1.0)
    c = np.array([1.0, -1.0])
    d = _enumerated_min(layers, c, lo.astype(np.float64), hi.astype(np.float64)) + 0.01
    case = _case(lo, hi, c, d)
    mid = (lo + hi) / 2
    first = np.arange(len(lo)) == 0
    for a, b in [(lo, np.where(first, mid, hi)), (np.where(first, mid, lo), hi)]:
        exact_half = _enumerated_min(layers, c, a.astype(np.float64), b.astype(np.float64))
        out = milp_leaf(graph, case, 0, runner, torch.as_tensor(a), b, time.monotonic() + 30)
        if abs(exact_half - d) > 1e-3:
            assert out.status == ("sat" if exact_half < d else "unsat"), (exact_half, d, out.reason)
        if out.status == "sat":
            x = out.counterexample.x.reshape(-1)
            assert np.all(x >= a) and np.all(x <= b)


def test_lp_case_proves_loose_property_and_not_a_false_one(nets):
    path, layers = nets["mlps"][1]
    graph = api.load_model(path)
    runner = OnnxRunner(graph)
    lo, hi = _box(graph.n_inputs, 1, half=0.3)
    c = np.array([1.0, 0.5])
    exact = _enumerated_min(layers, c, lo.astype(np.float64), hi.astype(np.float64))
    far = lp_case(graph, _case(lo, hi, c, exact - 5.0), 0, runner, time.monotonic() + 30)
    assert far.status == "unsat", far.reason
    near = lp_case(graph, _case(lo, hi, c, exact + 0.01), 0, runner, time.monotonic() + 30)
    assert near.status != "unsat"
    prop = Property((_case(lo, hi, c, exact - 5.0),), graph.n_inputs, graph.n_outputs)
    config = VerifyConfig(bounds=BoundsConfig(method="lp"))
    result = run_lp_method(graph, prop, config, runner, time.monotonic() + 30)
    assert result.status is Status.VERIFIED and result.certificate.method == "lp"


def test_l2_ball_cases_are_sound(nets):
    """With an L2 ball the MILP works on a polyhedron around it: far-off unsafe sets are
    proven, a set hit by a sample inside the ball is never declared unsat."""
    path, layers = nets["mlps"][0]
    graph = api.load_model(path)
    runner = OnnxRunner(graph)
    lo, hi = _box(graph.n_inputs, 0, half=1.0)
    center, radius = (lo + hi) / 2, 0.5
    pts = _samples(lo, hi, n=6000)
    inside = pts[np.linalg.norm(pts - center, axis=1) <= radius]
    c = np.array([1.0, 0.0])
    vals = ort_forward(path, inside) @ c
    exact_box = _enumerated_min(layers, c, lo.astype(np.float64), hi.astype(np.float64))
    ball = (center, radius)
    for fn in (milp_case, lp_case):
        proven = fn(graph, _case(lo, hi, c, exact_box - 1.0, ball), 0, runner, time.monotonic() + 30)
        assert proven.status == "unsat", proven.reason
        hit = fn(graph, _case(lo, hi, c, vals.min() + 0.05, ball), 0, runner, time.monotonic() + 30)
        assert hit.status != "unsat"
        if hit.status == "sat":
            assert np.linalg.norm(hit.counterexample.x.reshape(-1) - center) <= radius


# ---- errors, solvers, time limits --------------------------------------------------------------
def test_unsupported_op_is_named(tmp_path):
    W = np.eye(2, dtype=F32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])]
    path = build_onnx(tmp_path / "sig.onnx", nodes, [("x", [1, 2])], [("y", [1, 2])], {"W": W})
    graph = api.load_model(path)
    lo, hi = np.zeros(2), np.ones(2)
    with pytest.raises(UnsupportedError, match=r"not encodable: op Sigmoid at node"):
        milp_case(graph, _case(lo, hi, [1.0, 0.0], 0.0), 0, OnnxRunner(graph), time.monotonic() + 10)
    with pytest.raises(UnsupportedError, match=r"not encodable: op Sigmoid"):
        api.compute_bounds(graph, torch.zeros(1, 2), torch.ones(1, 2), method="lp")


def test_solver_choice_and_deadline(nets):
    path, _ = nets["mlps"][0]
    graph = api.load_model(path)
    runner = OnnxRunner(graph)
    lo, hi = _box(graph.n_inputs, 0)
    case = _case(lo, hi, [1.0, 0.0], 0.0)
    with pytest.raises(InputError, match="not installed"):
        milp_case(graph, case, 0, runner, time.monotonic() + 10, solver="NO_SUCH_SOLVER")
    with pytest.raises(InputError, match="mixed-integer"):
        milp_case(graph, case, 0, runner, time.monotonic() + 10, solver="CLARABEL")
    late = milp_case(graph, case, 0, runner, time.monotonic() - 1.0)
    assert late.status == "unknown" and "time limit" in late.reason
    prop = Property((case,), graph.n_inputs, graph.n_outputs)
    result = run_lp_method(graph, prop, VerifyConfig(), runner, time.monotonic() - 1.0, method="milp")
    assert result.status is Status.TIMEOUT


# ---- published verdicts ------------------------------------------------------------------------
def _truth(family: str) -> dict[tuple[str, str], str]:
    path = benchmark_path("ground_truth", f"{family}.csv")
    with open(path, newline="") as f:
        return {(r["onnx"], r["vnnlib"]): r["final_ground_truth"] for r in csv.DictReader(f)}


def _milp_verdict(family: str, onnx_file: str, vnnlib_file: str, timeout: float):
    """``run_lp_method(method="milp")`` on one instance; a counterexample is re-checked here
    with onnxruntime against the parsed property."""
    model_path = benchmark_path(family, onnx_file)
    graph = api.load_model(model_path)
    prop = api.load_property(benchmark_path(family, vnnlib_file), graph)
    result = run_lp_method(graph, prop, VerifyConfig(), OnnxRunner(graph), time.monotonic() + timeout,
                           method="milp")
    if result.status is Status.FALSIFIED:
        x = result.counterexample.x.reshape(1, -1)
        y = ort_forward(model_path, x)[0]
        assert prop.violated_by(x[0].astype(np.float64), y) is not None
    if result.status is Status.VERIFIED:
        assert result.certificate.kind == "sound" and result.certificate.method == "milp"
    return result


_WORD = {Status.VERIFIED: "unsat", Status.FALSIFIED: "sat"}

TEST_2022 = [("test_nano.onnx", "test_nano.vnnlib"), ("test_tiny.onnx", "test_tiny.vnnlib"),
             ("test_small.onnx", "test_small.vnnlib"), ("test_sat.onnx", "test_prop.vnnlib"),
             ("test_unsat.onnx", "test_prop.vnnlib")]

# Instances whose MILP finishes in a few seconds here (the verdict in the comment is for the
# reader; the tests read it from the csv).
ACAS = [("onnx/ACASXU_run2a_4_8_batch_2000.onnx", "vnnlib/prop_3.vnnlib"),   # unsat
        ("onnx/ACASXU_run2a_5_7_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),   # unsat
        ("onnx/ACASXU_run2a_1_7_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),   # sat
        ("onnx/ACASXU_run2a_1_8_batch_2000.onnx", "vnnlib/prop_3.vnnlib")]   # sat
RL = [("onnx/cartpole.onnx", "vnnlib/cartpole_case_unsafe_0.vnnlib"),              # unsat
      ("onnx/cartpole.onnx", "vnnlib/cartpole_case_safe_99.vnnlib"),               # sat
      ("onnx/lunarlander.onnx", "vnnlib/lunarlander_case_safe_52.vnnlib"),         # unsat
      ("onnx/lunarlander.onnx", "vnnlib/lunarlander_case_unsafe_95.vnnlib"),       # sat
      ("onnx/dubinsrejoin.onnx", "vnnlib/dubinsrejoin_case_unsafe_83.vnnlib"),     # unsat
      ("onnx/dubinsrejoin.onnx", "vnnlib/dubinsrejoin_case_unsafe_89.vnnlib")]     # sat
REACH_SLOW = [("onnx/gcas.onnx", "vnnlib/gcas_3.vnnlib"),                       # unsat, ~7-15 s
              ("onnx/gcas.onnx", "vnnlib/gcas_7.vnnlib"),                       # unsat
              ("onnx/gcas.onnx", "vnnlib/gcas_9.vnnlib")]                       # sat, ~15 s
REACH_SAT = [("onnx/vdp.onnx", "vnnlib/vdp_6.vnnlib"), ("onnx/robot.onnx", "vnnlib/robot_2.vnnlib"),
             ("onnx/gcas.onnx", "vnnlib/gcas_1.vnnlib")]


@pytest.mark.parametrize("files", TEST_2022, ids=lambda f: f[0])
def test_milp_agrees_on_test_2022(files):
    truth = _truth("test_2022")[files]
    assert _WORD.get(_milp_verdict("test_2022", *files, timeout=60).status) == truth


SAMPLE = [("acasxu", f) for f in ACAS] + [("rl_benchmarks_2022", f) for f in RL]


@pytest.mark.parametrize("family,files", SAMPLE,
                         ids=lambda v: v if isinstance(v, str) else v[1].split("/")[-1])
def test_milp_agrees_on_benchmark_sample(family, files):
    truth = _truth(family)[files]
    assert truth in ("sat", "unsat")
    result = _milp_verdict(family, *files, timeout=60)
    assert _WORD.get(result.status) == truth, result.reason


@pytest.mark.slow
@pytest.mark.parametrize("files", REACH_SLOW, ids=lambda f: f[1].split("/")[-1])
def test_milp_agrees_on_reach_prob_density(files):
    truth = _truth("reach_prob_density_2022")[files]
    result = _milp_verdict("reach_prob_density_2022", *files, timeout=120)
    assert _WORD.get(result.status) == truth, result.reason


@pytest.mark.parametrize("files", REACH_SAT, ids=lambda f: f[1].split("/")[-1])
def test_milp_never_proves_a_sat_instance(files):
    """On instances with a published valid witness, a short MILP ends sat or unknown/timeout."""
    assert _truth("reach_prob_density_2022")[files] == "sat"
    result = _milp_verdict("reach_prob_density_2022", *files, timeout=3)
    assert result.status is not Status.VERIFIED
