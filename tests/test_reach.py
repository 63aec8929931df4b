"""Guaranteed output ranges (Lipschitz branch and bound): checked against onnxruntime on
sampled and gradient-attacked inputs, exact MILP optima (cvxpy + HiGHS, written here) on small
random ReLU networks, autograd gradients of an independent torch re-implementation, and a
closed-form network whose Lipschitz constant hides in a tiny region."""
from __future__ import annotations

import time

import cvxpy as cp
import numpy as np
import pytest
import torch
from onnx import helper

import verifier
from verifier.bounds.linear import Region
from verifier.cli import main
from verifier.engines.lipschitz import JacobianBounds, crown_row_bounds
from verifier.engines.reach import ReachConfig, parse_objective, reach_check, reach_range
from verifier.errors import InputError, UnsupportedError

from conftest import MODELS_DIR, SPECS_DIR, benchmark_path, ort_forward

SLACK = 1e-5  # float32 (onnxruntime) against the float64 bounds, relative to the value scale


# ---- helpers ---------------------------------------------------------------------------------
def _mlp_onnx(make_onnx, weights, act: str = "Relu", attrs: dict | None = None, name: str = "mlp"):
    """``x -> (Gemm -> act)* -> Gemm`` from ``[(W, b), ...]`` (float32 in the file)."""
    nodes, inits, prev = [], {}, "x"
    for i, (W, b) in enumerate(weights):
        inits[f"W{i}"], inits[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [out]))
        if i < len(weights) - 1:
            nodes.append(helper.make_node(act, [out], [f"a{i}"], **(attrs or {})))
            prev = f"a{i}"
    n_in, n_out = weights[0][0].shape[0], weights[-1][0].shape[1]
    return make_onnx(nodes, [("x", [1, n_in])], [("y", [1, n_out])], inits, name=name)


def _random_weights(seed: int, sizes: list[int]):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(a, b)) / np.sqrt(a), rng.normal(size=b) * 0.5)
            for a, b in zip(sizes[:-1], sizes[1:])]


def _f32(weights):
    """The weights as the ONNX file stores them (float32), in float64 for the oracles."""
    return [(W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for W, b in weights]


def _objective_values(text: str, y: np.ndarray) -> np.ndarray:
    """Independent evaluation of the objective strings used in these tests: ``(N,)``."""
    table = {"Y_0": lambda y: y[:, 0], "Y_1 - Y_0": lambda y: y[:, 1] - y[:, 0],
             "max(Y)": lambda y: y.max(1), "min(Y)": lambda y: y.min(1),
             "2*Y_2 + Y_1 - 0.5": lambda y: 2 * y[:, 2] + y[:, 1] - 0.5}
    return table[text](y)


def _attack_points(model, objective: str, lo: np.ndarray, hi: np.ndarray, n: int = 64, steps: int = 30,
                   seed: int = 0) -> np.ndarray:
    """Candidate extreme points: signed-gradient descent and ascent on the objective (gradients
    from the model graph; the values that count are onnxruntime's, taken by the caller)."""
    obj = parse_objective(objective, model.n_outputs)
    g = model.to(dtype=torch.float64)
    lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
    gen = torch.Generator().manual_seed(seed)
    found = []
    for sign in (1.0, -1.0):
        x = lo_t + torch.rand(n, lo.size, generator=gen, dtype=torch.float64) * (hi_t - lo_t)
        for s in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad((sign * obj.value(g.forward_flat(x))).sum(), x)
            x = torch.clamp(x.detach() - 0.2 * (1 - s / steps) * (hi_t - lo_t) * torch.sign(grad), lo_t, hi_t)
        found.append(x.numpy())
    return np.concatenate(found)


def _assert_range_contains(res, values: np.ndarray) -> None:
    scale = SLACK * (1 + np.abs(values).max())
    assert res.min.lower <= values.min() + scale, (res.min.lower, values.min())
    assert res.max.upper >= values.max() - scale, (res.max.upper, values.max())


def _assert_witnesses(res, model, objective: str, lo: np.ndarray, hi: np.ndarray) -> None:
    """Witnesses lie in the box and onnxruntime's objective there is the reported inner end."""
    for end, inner in ((res.min, res.min.upper), (res.max, res.max.lower)):
        x = end.witness.reshape(1, -1)
        assert x.dtype == np.float32 and np.all(x >= lo) and np.all(x <= hi)
        value = float(_objective_values(objective, ort_forward(model.onnx_path, x))[0])
        assert value == pytest.approx(inner, rel=SLACK, abs=SLACK)
        assert end.witness_value == pytest.approx(value, rel=1e-6, abs=1e-9)
        assert end.lower <= end.upper
        if end.converged:
            assert end.upper - end.lower <= res.tolerance * (1 + 1e-9)


# ---- objectives --------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("Y_0", lambda y: y[0]), ("Y_1 - Y_0", lambda y: y[1] - y[0]), ("2*Y_3 + Y_1", lambda y: 2 * y[3] + y[1]),
    ("max(Y)", lambda y: y.max()), ("min(Y)", lambda y: y.min()), ("max(Y_0, Y_2)", lambda y: max(y[0], y[2])),
    ("-0.5*Y_4 + 3 - Y_2*2", lambda y: -0.5 * y[4] + 3 - 2 * y[2]),
    ("min(Y_0 - Y_1, 1e-1*Y_3)", lambda y: min(y[0] - y[1], 0.1 * y[3]))])
def test_objective_strings_evaluate_as_written(text, expected):
    y = np.random.default_rng(1).normal(size=(20, 5))
    got = parse_objective(text, 5).value(torch.as_tensor(y)).numpy()
    assert np.allclose(got, [expected(row) for row in y], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text,needle", [("", "empty"), ("Y_7", "out of range"), ("Y_0 +", "cannot read"),
                                         ("max(Y", "cannot read"), ("Y_0 Y_1", "Y_1"), ("Y_0 * Y_1", "cannot read"),
                                         ("max()", "empty"), ("1e999*Y_0", "not finite"), ("sin(Y_0)", "cannot read")])
def test_bad_objectives_are_input_errors(text, needle):
    with pytest.raises(InputError, match=needle):
        parse_objective(text, 5)
    with pytest.raises(InputError):
        parse_objective(np.ones(4), 5)


# ---- interval Jacobians ------------------------------------------------------------------------
ACTIVATIONS = [("Relu", {}, torch.relu), ("LeakyRelu", {"alpha": 0.1}, lambda x: torch.where(x >= 0, x, float(np.float32(0.1)) * x)),
               ("Sigmoid", {}, torch.sigmoid), ("Tanh", {}, torch.tanh), ("Exp", {}, torch.exp),
               ("Sin", {}, torch.sin), ("Cos", {}, torch.cos)]


def _torch_gradients(weights, fn, C: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Autograd gradients of ``C · y`` ``(R, N, n)`` of an independent torch re-implementation."""
    xt = torch.as_tensor(x).requires_grad_(True)
    h = xt
    for i, (W, b) in enumerate(weights):
        h = h @ torch.as_tensor(W) + torch.as_tensor(b)
        if i < len(weights) - 1:
            h = fn(h)
    rows = h @ torch.as_tensor(C).T
    return np.stack([torch.autograd.grad(rows[:, r].sum(), xt, retain_graph=True)[0].numpy()
                     for r in range(C.shape[0])])


@pytest.mark.parametrize("act,attrs,fn", ACTIVATIONS + [("Clip", None, lambda x: torch.clamp(x, -0.3, 0.5))],
                         ids=[a[0] for a in ACTIVATIONS] + ["Clip"])
def test_jacobian_bounds_contain_autograd_gradients(make_onnx, act, attrs, fn):
    weights = _random_weights(3, [3, 10, 8, 2])
    if act == "Clip":  # opset 13 Clip takes its limits as inputs
        path = _clip_mlp(make_onnx, weights)
    else:
        path = _mlp_onnx(make_onnx, weights, act, attrs, name=act)
    g = verifier.load_model(path).to(dtype=torch.float64)
    rng = np.random.default_rng(0)
    centre, radius = rng.uniform(-1, 1, size=(6, 3)), np.array([0.5, 0.2, 0.05, 0.01, 1e-3, 0.0])[:, None]
    lo, hi = centre - radius, centre + radius
    C = np.array([[1.0, 0.0], [-1.0, 2.0]])
    G_lo, G_hi = _gradient_intervals(g, C, lo, hi)
    assert np.all(np.isfinite(G_lo)) and np.all(np.isfinite(G_hi))
    for b in range(len(lo)):
        x = lo[b] + rng.uniform(size=(300, 3)) * (hi[b] - lo[b])
        grads = _torch_gradients(_f32(weights), fn, C, x)  # (R, N, n)
        tol = 1e-9 * (1 + np.abs(grads).max())
        assert np.all(grads >= G_lo[b][:, None] - tol) and np.all(grads <= G_hi[b][:, None] + tol), b
    point = _torch_gradients(_f32(weights), fn, C, centre[-1:])[:, 0]  # a point box: exact gradient
    assert np.allclose(G_lo[-1], point, atol=1e-9) and np.allclose(G_hi[-1], point, atol=1e-9)


@pytest.mark.parametrize("act,attrs,fn", ACTIVATIONS + [("Clip", None, lambda x: torch.clamp(x, -0.3, 0.5))],
                         ids=[a[0] for a in ACTIVATIONS] + ["Clip"])
def test_one_neuron_gradient_interval_is_the_exact_derivative_range(make_onnx, act, attrs, fn):
    """``y = v·act(w·x + b)`` on 1-D boxes: the interval is exactly ``v·w·f'([lo, hi])``, so it
    must contain every sampled gradient and be reached by dense samples at both ends."""
    weights = [(np.array([[1.5]]), np.array([0.2])), (np.array([[-0.7]]), np.array([0.1]))]
    path = _clip_mlp(make_onnx, weights, n_in=1) if act == "Clip" else _mlp_onnx(make_onnx, weights, act, attrs)
    g = verifier.load_model(path).to(dtype=torch.float64)
    lo = np.array([[-1.0], [-0.4], [0.3], [-3.0], [-0.15], [2.0]])
    hi = np.array([[1.0], [-0.1], [2.5], [3.0], [-0.12], [2.0001]])
    G_lo, G_hi = _gradient_intervals(g, np.ones((1, 1)), lo, hi)
    for b in range(len(lo)):
        x = np.linspace(lo[b, 0], hi[b, 0], 20001)[:, None]
        grads = _torch_gradients(_f32(weights), fn, np.ones((1, 1)), x)[0, :, 0]
        scale = 1e-3 * (1 + np.abs(grads).max())
        assert G_lo[b, 0, 0] <= grads.min() + 1e-12 and G_hi[b, 0, 0] >= grads.max() - 1e-12, b
        assert G_lo[b, 0, 0] >= grads.min() - scale and G_hi[b, 0, 0] <= grads.max() + scale, b


def _clip_mlp(make_onnx, weights, n_in: int = 3):
    nodes, inits = [], {"lo": np.array(-0.3, np.float32), "hi": np.array(0.5, np.float32)}
    prev = "x"
    for i, (W, b) in enumerate(weights):
        inits[f"W{i}"], inits[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"b{i}"], [out]))
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Clip", [out, "lo", "hi"], [f"a{i}"]))
            prev = f"a{i}"
    return make_onnx(nodes, [("x", [1, n_in])], [("y", [1, weights[-1][0].shape[1]])], inits, name="clip")


def _gradient_intervals(g, C: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    B = lo.shape[0]
    region = Region(torch.as_tensor(lo).reshape(B, *g.input_full_shape),
                    torch.as_tensor(hi).reshape(B, *g.input_full_shape))
    Ct = torch.as_tensor(C)[None].expand(B, -1, -1)
    _, bounds = crown_row_bounds(g, Ct, region)
    G_lo, G_hi = JacobianBounds(g)(Ct, bounds)
    return G_lo.numpy(), G_hi.numpy()


@pytest.mark.parametrize("op", ["Softmax", "Mul"])
def test_ops_without_derivative_rule_are_unsupported(make_onnx, op):
    W = np.ones((3, 3), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"])]
    nodes.append(helper.make_node("Softmax", ["h"], ["y"], axis=-1) if op == "Softmax"
                 else helper.make_node("Mul", ["h", "h"], ["y"]))
    model = verifier.load_model(make_onnx(nodes, [("x", [1, 3])], [("y", [1, 3])], {"W": W}))
    with pytest.raises(UnsupportedError, match=op):
        reach_range(model, np.zeros(3), np.ones(3), "Y_0", timeout=5)


# ---- ranges against exact optima -----------------------------------------------------------------
def _milp_extremes(weights, lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """Exact min and max of ``c · y`` of a ReLU MLP over a box (big-M MILP, HiGHS)."""
    out = []
    for sense in (cp.Minimize, cp.Maximize):
        x = cp.Variable(lo.size)
        cons, h, l_h, u_h = [x >= lo, x <= hi], x, lo, hi
        for i, (W, b) in enumerate(weights):
            z = h @ W + b
            Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
            l_z, u_z = l_h @ Wp + u_h @ Wn + b, u_h @ Wp + l_h @ Wn + b
            if i == len(weights) - 1:
                break
            a, d = cp.Variable(W.shape[1]), cp.Variable(W.shape[1], boolean=True)
            cons += [a >= z, a >= 0, a <= z - cp.multiply(l_z, 1 - d), a <= cp.multiply(np.maximum(u_z, 0), d)]
            h, l_h, u_h = a, np.maximum(l_z, 0), np.maximum(u_z, 0)
        prob = cp.Problem(sense(z @ c), cons)
        prob.solve(solver=cp.HIGHS, mip_rel_gap=0.0, mip_abs_gap=0.0)
        assert prob.status == cp.OPTIMAL
        out.append(float(prob.value))
    return out[0], out[1]


@pytest.mark.parametrize("seed,n_in,objective,tol", [(0, 2, "Y_0", 1e-3), (1, 3, "Y_1 - Y_0", 1e-3),
                                                     (2, 3, "Y_0", 1e-6), (3, 2, "Y_1 - Y_0", 1e-6)])
def test_range_matches_exact_milp_optimum(make_onnx, seed, n_in, objective, tol):
    weights = _random_weights(seed, [n_in, 12, 10, 2])
    model = verifier.load_model(_mlp_onnx(make_onnx, weights, name=f"r{seed}"))
    lo, hi = -np.ones(n_in), np.ones(n_in)
    c = np.array([1.0, 0.0]) if objective == "Y_0" else np.array([-1.0, 1.0])
    true_min, true_max = _milp_extremes(_f32(weights), lo, hi, c)
    res = reach_range(model, lo, hi, objective, tolerance=tol, timeout=30)
    assert res.min.converged and res.max.converged
    for end, opt in ((res.min, true_min), (res.max, true_max)):
        assert end.lower <= opt + 1e-7 and end.upper >= opt - 1e-7
        assert end.upper - end.lower <= tol
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 61 if n_in == 2 else 21)] * n_in), -1).reshape(-1, n_in)
    values = _objective_values(objective, ort_forward(model.onnx_path, grid.astype(np.float32)))
    assert values.min() >= true_min - SLACK and values.max() <= true_max + SLACK  # the MILP oracle itself
    _assert_range_contains(res, values)
    _assert_witnesses(res, model, objective, lo, hi)


def test_max_and_min_objectives_against_milp(make_onnx):
    weights = _random_weights(5, [2, 10, 8, 3])
    model = verifier.load_model(_mlp_onnx(make_onnx, weights, name="three"))
    lo, hi = -np.ones(2), np.ones(2)
    per_output = [_milp_extremes(_f32(weights), lo, hi, np.eye(3)[j]) for j in range(3)]
    res_max = reach_range(model, lo, hi, "max(Y)", tolerance=1e-3, timeout=30)
    res_min = reach_range(model, lo, hi, "min(Y)", tolerance=1e-3, timeout=30)
    # max over the box of max(Y) and min over the box of min(Y) are exact from per-output optima
    assert res_max.max.lower - 1e-7 <= max(u for _, u in per_output) <= res_max.max.upper + 1e-7
    assert res_min.min.lower - 1e-7 <= min(m for m, _ in per_output) <= res_min.min.upper + 1e-7
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 81)] * 2), -1).reshape(-1, 2)
    y = ort_forward(model.onnx_path, grid.astype(np.float32))
    _assert_range_contains(res_max, y.max(1))
    _assert_range_contains(res_min, y.min(1))
    assert res_max.min.upper - res_max.min.lower <= 1e-3 and y.max(1).min() >= res_max.min.lower - SLACK
    _assert_witnesses(res_max, model, "max(Y)", lo, hi)


@pytest.mark.parametrize("act", ["Tanh", "Sigmoid", "Sin"])
def test_smooth_network_range_against_dense_grid(make_onnx, act):
    """Every grid value lies in the range, and a converged end is within the tolerance of the
    best grid value (the true optimum is at least as extreme as any grid value)."""
    weights = _random_weights(11, [2, 10, 10, 1])
    model = verifier.load_model(_mlp_onnx(make_onnx, weights, act, name=act))
    lo, hi, tol = -np.ones(2), np.ones(2), 1e-3
    res = reach_range(model, lo, hi, "Y_0", tolerance=tol, timeout=30)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 201)] * 2), -1).reshape(-1, 2)
    values = ort_forward(model.onnx_path, grid.astype(np.float32))[:, 0]
    _assert_range_contains(res, values)
    assert res.min.converged and res.max.converged
    assert res.min.upper <= values.min() + tol + SLACK and res.max.lower >= values.max() - tol - SLACK
    _assert_witnesses(res, model, "Y_0", lo, hi)


# ---- shipped and benchmark models ----------------------------------------------------------------
@pytest.mark.parametrize("name,objective", [("digits_mlp", "Y_1 - Y_0"), ("digits_cnn", "2*Y_2 + Y_1 - 0.5")])
def test_digits_range_contains_sampled_and_attacked_values(name, objective):
    model = verifier.load_model(MODELS_DIR / f"{name}.onnx")
    x0 = np.load(MODELS_DIR / "digits_test.npz")["x"][3].astype(np.float64)
    lo, hi = np.clip(x0 - 0.004, 0, 1), np.clip(x0 + 0.004, 0, 1)
    res = reach_range(model, lo.reshape(model.input_shape), hi.reshape(model.input_shape), objective,
                      tolerance=1e-3, timeout=8)
    rng = np.random.default_rng(0)
    pts = np.concatenate([lo + rng.uniform(size=(300, 64)) * (hi - lo), _attack_points(model, objective, lo, hi)])
    _assert_range_contains(res, _objective_values(objective, ort_forward(model.onnx_path, pts.astype(np.float32))))
    _assert_witnesses(res, model, objective, lo, hi)


def test_acasxu_property1_box_range_contains_samples_attacks_and_corners():
    path = benchmark_path("acasxu", "onnx", "ACASXU_run2a_1_1_batch_2000.onnx")
    model = verifier.load_model(path)
    region = verifier.load_property(benchmark_path("acasxu", "vnnlib", "prop_1.vnnlib"), model).cases[0].region
    lo, hi = region.lower, region.upper
    res = reach_range(model, lo, hi, "Y_0", tolerance=1e-3, relative=True, timeout=120)
    assert res.min.converged and res.max.converged
    rng = np.random.default_rng(1)
    corners = lo + (hi - lo) * np.array(np.meshgrid(*[[0, 1]] * 5)).reshape(5, -1).T
    pts = np.concatenate([lo + rng.uniform(size=(2000, 5)) * (hi - lo), corners, _attack_points(model, "Y_0", lo, hi)])
    values = _objective_values("Y_0", ort_forward(path, pts.astype(np.float32)))
    _assert_range_contains(res, values)
    _assert_witnesses(res, model, "Y_0", lo, hi)
    width = res.max.upper - res.min.lower
    assert res.min.gap <= 1e-3 * width and res.max.gap <= 1e-3 * width
    assert res.lipschitz > 0 and np.isfinite(res.lipschitz)


# ---- sound bounds against a sampled Lipschitz estimate ------------------------------------------
def test_sampled_lipschitz_estimate_misses_a_narrow_dip_and_ours_does_not(make_onnx):
    """``f(x) = 0.1·x_0 - K·relu(δ - |x_0 - a|)`` on [0, 1]²: slope 0.1 except on a dip of width
    2δ and depth K·δ = 1. DeepGO-style: estimate L as the largest gradient norm at random
    samples, then bound the minimum by ``f(centre) - L·radius`` over a grid of cells."""
    a, delta, K = 0.6180339887, 1e-4, 1e4
    W0 = np.array([[1.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    b0 = np.array([-a, a, 0.0])
    W1 = np.array([[-1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    b1 = np.array([delta, 0.0])
    W2 = np.array([[-K], [0.1]])
    weights = [(W0, b0), (W1, b1), (W2, np.zeros(1))]
    model = verifier.load_model(_mlp_onnx(make_onnx, weights, name="dip"))

    def f(x):
        return 0.1 * x[:, 0] - K * np.maximum(delta - np.abs(x[:, 0] - a), 0.0)

    true_min = 0.1 * a - K * delta
    rng = np.random.default_rng(0)
    samples = rng.uniform(size=(200, 2))
    assert np.all(np.abs(samples[:, 0] - a) > 2 * delta)  # the premise: no sample hits the dip
    step = 1e-7
    grads = np.stack([(f(samples + step * e) - f(samples - step * e)) / (2 * step) for e in np.eye(2)], 1)
    L_est = np.abs(grads).sum(1).max()
    cells = (np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2) + 0.5) / 10
    estimate_lower = float((f(cells) - L_est * 0.05).min())  # cells of ℓ∞ radius 0.05
    assert estimate_lower > true_min + 0.5  # the sampled estimate "proves" a wrong bound

    res = reach_range(model, np.zeros(2), np.ones(2), "Y_0", tolerance=1e-3, timeout=30)
    assert res.min.lower <= true_min + 1e-6
    assert res.min.converged and res.min.upper <= true_min + 1e-3  # and it finds the dip
    assert res.lipschitz >= K  # the sound constant sees the dip's slope


# ---- safety questions, API, CLI, deadline --------------------------------------------------------
def test_reach_check_verified_and_falsified_against_milp(make_onnx):
    weights = _random_weights(7, [3, 10, 10, 2])
    model = verifier.load_model(_mlp_onnx(make_onnx, weights, name="chk"))
    lo, hi = -np.ones(3), np.ones(3)
    _, true_max = _milp_extremes(_f32(weights), lo, hi, np.array([1.0, 0.0]))
    safe = reach_check(model, (lo, hi), "Y_0", true_max + 0.01, timeout=30)
    assert safe.status.value == "verified" and safe.certificate.kind == "sound"
    bad = reach_check(model, (lo, hi), "Y_0", true_max - 0.01, timeout=30)
    assert bad.status.value == "falsified"
    x = bad.counterexample.x.reshape(1, -1)
    assert np.all(x >= lo) and np.all(x <= hi)
    assert ort_forward(model.onnx_path, x)[0, 0] > true_max - 0.01


def test_api_reach_shapes_and_errors():
    model = verifier.load_model(MODELS_DIR / "digits_cnn.onnx")
    x0 = np.load(MODELS_DIR / "digits_test.npz")["x"][0].reshape(model.input_shape).astype(np.float64)
    res = verifier.reach(model, x0 - 0.002, x0 + 0.002, "Y_0", tolerance=1e-2, timeout=20)
    assert res.min.witness.shape == tuple(model.input_shape) and res.min.lower <= res.max.upper
    with pytest.raises(InputError, match="inputs"):
        verifier.reach(model, np.zeros(3), np.ones(3), "Y_0")
    with pytest.raises(InputError, match="exceeds"):
        verifier.reach(model, x0 + 0.1, x0, "Y_0")
    with pytest.raises(InputError, match="unknown reach setting"):
        verifier.reach(model, x0, x0, "Y_0", bogus=1)


def test_deadline_honoured_when_the_tolerance_cannot_be_met():
    model = verifier.load_model(MODELS_DIR / "digits_mlp.onnx")
    x0 = np.load(MODELS_DIR / "digits_test.npz")["x"][5].astype(np.float64)
    start = time.monotonic()
    res = reach_range(model, np.clip(x0 - 0.05, 0, 1), np.clip(x0 + 0.05, 0, 1), "Y_0", tolerance=0.0,
                      timeout=3.0, config=ReachConfig(batch=8))
    elapsed = time.monotonic() - start
    assert elapsed < 3.0 + 5.0  # generous: root bounding and the onnxruntime re-runs come on top
    assert res.min.history[-1][0] < 3.0 + 2.0 and res.min.lower <= res.min.upper


def test_cli_reach_prints_ranges_and_plots(tmp_path, capsys):
    spec = SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"
    png = tmp_path / "bounds.png"
    rc = main(["reach", str(MODELS_DIR / "digits_mlp.onnx"), "--region", str(spec), "--objective", "Y_1 - Y_0",
               "--timeout", "20", "--plot", str(png), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "min in [" in out and "max in [" in out and "witness" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc = main(["reach", str(MODELS_DIR / "digits_mlp.onnx"), "--region", str(spec), "--objective", "Y_1 -", "--quiet"])
    assert rc == 3 and "objective" in capsys.readouterr().err
