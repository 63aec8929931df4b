"""Soundness of IBP, CROWN and α-CROWN against sampled and attacked points.

For each model (the shipped ones and a set of VNN-COMP benchmark nets) and a few random input
boxes near real data points, the bounds of every output and of random rows ``C·y`` must contain
onnxruntime's outputs at uniformly sampled points, random box corners and points found by a
PGD attack that maximises / minimises each output and row. α-CROWN must be at least as tight as
CROWN and CROWN at least as tight as IBP. Exactness on affine graphs, L2-ball regions, batch
consistency and small hand-built graphs holding every kind of op (two-variable Mul/Div, Softmax,
periodic activations, pooling, transposed convolution, residual Add) are checked too.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import helper

from conftest import MODELS_DIR, benchmark_path, ort_forward
import verifier
from verifier import api
from verifier.bounds.crown import intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region, concretize
from verifier.config import BoundsConfig

FAST_ALPHA = BoundsConfig(alpha_iterations=4)  # soundness does not depend on the iteration count
METHODS = ("ibp", "crown", "alpha-crown")


@dataclass
class Problem:
    """A model with a batch of input boxes ``(B, *input_shape)`` (float32)."""

    path: Path
    graph: object
    lower: torch.Tensor
    upper: torch.Tensor


# name → (family, onnx path in the family, number of boxes, samples per box)
BENCH_MODELS = {
    "mnist_fc_256x2": ("mnist_fc_2022", "onnx/mnist-net_256x2.onnx", 2, 1000),
    "acasxu_1_1": ("acasxu", "onnx/ACASXU_run2a_1_1_batch_2000.onnx", 2, 1000),
    "eran_sigmoid_6x200": ("eran_2021", "nets/ffnnSIGMOID__Point_6x200.onnx", 1, 1000),
    "verivital_avgpool": ("verivital_2021", "Convnet_avgpool.onnx", 1, 1000),
    "verivital_maxpool": ("verivital_2021", "Convnet_maxpool.onnx", 1, 1000),
    "oval21_cifar_base": ("oval21_2022", "onnx/cifar_base_kw.onnx", 1, 1000),
    "cifar10_resnet_2b": ("cifar10_resnet_2021", "onnx/resnet_2b.onnx", 1, 1000),
}
SLOW = {"cifar10_resnet_2b"}  # alpha-CROWN on the ResNet takes 5-30 s on a loaded 2-core machine
SHIPPED = {"digits_mlp": 0.03, "digits_cnn": 0.03, "digits_smooth": 0.05}  # name → L∞ radius
SHIPPED_BOXES = {"digits_mlp": 2, "digits_cnn": 1, "digits_smooth": 2}


def _norm(p: str) -> str:
    return str(Path(p.strip()))


def benchmark_problem(name: str) -> Problem:
    """Boxes of half the size of the model's first VNN-COMP instance region, centred at or
    near its centre (inside the region)."""
    family, onnx, n_boxes, _ = BENCH_MODELS[name]
    folder = benchmark_path(family)
    with open(folder / "instances.csv", newline="") as f:
        spec = next(row[1] for row in csv.reader(f) if row and _norm(row[0]) == _norm(onnx))
    graph = api.load_model(folder / onnx)
    region = api.load_property(folder / spec.strip(), graph).cases[0].region
    lo = torch.as_tensor(region.lower).reshape(1, -1)
    hi = torch.as_tensor(region.upper).reshape(1, -1)
    gen = torch.Generator().manual_seed(len(name))
    shift = 0.25 * (2 * torch.rand(n_boxes, lo.shape[1], generator=gen, dtype=torch.float64) - 1)
    shift[0] = 0.0
    c, h = (lo + hi) / 2 + shift * (hi - lo) / 2, (hi - lo) / 4
    lower, upper = torch.maximum(c - h, lo), torch.minimum(c + h, hi)
    shape = (n_boxes, *graph.input_shape)
    return Problem(folder / onnx, graph, lower.float().reshape(shape), upper.float().reshape(shape))


def shipped_problem(name: str, n_boxes: int = 2) -> Problem:
    """L∞ boxes of radius eps around test images (clipped to [0, 1])."""
    path = MODELS_DIR / f"{name}.onnx"
    graph = api.load_model(path)
    x = torch.as_tensor(np.load(MODELS_DIR / "digits_test.npz")["x"][:n_boxes])
    eps = SHIPPED[name]
    shape = (n_boxes, *graph.input_shape)
    return Problem(path, graph, (x - eps).clamp(0, 1).reshape(shape), (x + eps).clamp(0, 1).reshape(shape))


def pgd_points(graph, lower: torch.Tensor, upper: torch.Tensor, objectives: torch.Tensor,
               restarts: int = 1, steps: int = 20) -> torch.Tensor:
    """Points of the box ``lower/upper`` (one box, flat ``(n,)``) that maximise each row of
    ``objectives`` (``(K, n_outputs)``) by signed-gradient ascent: ``(K * restarts, n)``."""
    K, n = objectives.shape[0], lower.numel()
    gen = torch.Generator().manual_seed(K)
    obj = objectives.repeat_interleave(restarts, dim=0).float()
    x = lower + torch.rand(K * restarts, n, generator=gen) * (upper - lower)
    half = (upper - lower) / 2
    best_x, best_v = x.clone(), torch.full((K * restarts,), -torch.inf)
    for step in range(steps):
        x = x.detach().requires_grad_(True)
        v = (graph.forward_flat(x) * obj).sum(1)
        better = v.detach() > best_v
        best_x[better], best_v[better] = x.detach()[better], v.detach()[better]
        (grad,) = torch.autograd.grad(v.sum(), x)
        size = half * (0.5 * (1 - step / steps) + 0.02)
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lower), upper)
    corners = torch.where(grad.sign() > 0, upper, lower)  # the gradient's sign pattern as a vertex
    return torch.cat([best_x, x.detach(), corners])


def sample_points(graph, lower: torch.Tensor, upper: torch.Tensor, C: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Uniform samples, random corners and PGD extremisers of ±outputs and ±rows of ``C``:
    flat ``(S, n_inputs)`` float32 inside the box."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = lower.reshape(-1), upper.reshape(-1)
    uniform = lo + torch.rand(n, lo.numel(), generator=gen) * (hi - lo)
    corners = torch.where(torch.rand(200, lo.numel(), generator=gen) < 0.5, lo, hi)
    eye = torch.eye(graph.n_outputs)
    objectives = torch.cat([eye, -eye, C, -C])
    return torch.cat([uniform, corners, pgd_points(graph, lo, hi, objectives)])


def _assert_contains(name: str, what: str, lb: np.ndarray, ub: np.ndarray, values: np.ndarray) -> None:
    """``values`` ``(S, R)`` inside ``[lb, ub]`` ``(R,)`` up to float32 rounding."""
    tol = 2e-5 * (1 + np.abs(values))
    below = values < lb - tol
    above = values > ub + tol
    if below.any() or above.any():
        s, r = np.argwhere(below | above)[0]
        raise AssertionError(f"{name} {what}: row {r} value {values[s, r]!r} outside [{lb[r]!r}, {ub[r]!r}] "
                             f"({int(below.sum())} below, {int(above.sum())} above of {values.size})")


def _check_ordering(name: str, bounds: dict) -> None:
    """α-CROWN ⊆ CROWN ⊆ IBP, row by row (within 1e-5 relative)."""
    for tight, loose in (("alpha-crown", "crown"), ("crown", "ibp")):
        (lt, ut), (ll, ul) = bounds[tight], bounds[loose]
        slack = 1e-5 * (1 + np.abs(np.stack([ll, ul])).max(0))
        assert np.all(lt >= ll - slack), f"{name}: {tight} lower bound looser than {loose}"
        assert np.all(ut <= ul + slack), f"{name}: {tight} upper bound looser than {loose}"


def check_problem(name: str, prob: Problem, n_samples: int, ordering: bool = True) -> None:
    """Containment of sampled / attacked outputs in every method's bounds, and (``ordering``)
    α-CROWN ⊆ CROWN ⊆ IBP."""
    graph = prob.graph
    B = prob.lower.shape[0]
    gen = torch.Generator().manual_seed(3)
    C = torch.randn(3, graph.n_outputs, generator=gen)
    rows = torch.cat([torch.eye(graph.n_outputs), C])  # outputs and the random rows in one pass
    bounds = {m: verifier.compute_bounds(graph, prob.lower, prob.upper, method=m, C=rows, config=FAST_ALPHA)
              for m in METHODS}
    for m in ("ibp", "crown"):
        lb, ub = verifier.compute_bounds(graph, prob.lower, prob.upper, method=m)
        torch.testing.assert_close(lb, bounds[m][0][:, :graph.n_outputs], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ub, bounds[m][1][:, :graph.n_outputs], rtol=1e-5, atol=1e-5)
    for b in range(B):
        x = sample_points(graph, prob.lower[b], prob.upper[b], C, n_samples, seed=b)
        assert bool((x >= prob.lower[b].reshape(1, -1)).all() and (x <= prob.upper[b].reshape(1, -1)).all())
        y = ort_forward(prob.path, x.numpy())
        values = y @ rows.double().numpy().T
        per_box = {m: (lb[b].double().numpy(), ub[b].double().numpy()) for m, (lb, ub) in bounds.items()}
        for m, (lb, ub) in per_box.items():
            _assert_contains(name, f"box {b} {m}", lb, ub, values)
        if ordering:
            _check_ordering(f"{name} box {b}", per_box)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_bounds_contain_samples(name: str) -> None:
    check_problem(name, shipped_problem(name, SHIPPED_BOXES[name]), 1000)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(BENCH_MODELS)])
def test_benchmark_model_bounds_contain_samples(name: str) -> None:
    check_problem(name, benchmark_problem(name), BENCH_MODELS[name][3])


# ---- exactness on affine graphs ------------------------------------------------------------

def test_crown_is_exact_on_an_affine_graph(make_onnx) -> None:
    rng = np.random.default_rng(0)
    W1, b1 = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    W2, b2 = rng.normal(size=(4, 7)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], transB=1, alpha=0.5)]
    path = make_onnx(nodes, [("x", (1, 5))], [("y", (1, 4))], {"W1": W1, "b1": b1, "W2": W2, "b2": b2})
    graph = api.load_model(path)
    W = W1.astype(np.float64) @ (0.5 * W2.astype(np.float64).T)   # y = x W + c, independently of the library
    c = b1.astype(np.float64) @ (0.5 * W2.astype(np.float64).T) + b2
    lo = rng.uniform(-1, 0, size=5)
    hi = lo + rng.uniform(0.1, 2, size=5)
    argmin = np.where(W > 0, lo[:, None], hi[:, None]).T           # (4, 5): the minimising vertex per output
    argmax = np.where(W > 0, hi[:, None], lo[:, None]).T
    true_min = np.einsum("jn,nj->j", argmin, W) + c
    true_max = np.einsum("jn,nj->j", argmax, W) + c
    at_min = ort_forward(path, argmin.astype(np.float32))
    at_max = ort_forward(path, argmax.astype(np.float32))
    np.testing.assert_allclose(np.diag(at_min), true_min, atol=1e-4)   # attained at the vertex
    np.testing.assert_allclose(np.diag(at_max), true_max, atol=1e-4)
    lower, upper = torch.tensor(lo).reshape(1, 5).float(), torch.tensor(hi).reshape(1, 5).float()
    for method in ("crown", "alpha-crown"):
        lb, ub = verifier.compute_bounds(graph, lower, upper, method=method)
        np.testing.assert_allclose(lb[0].double().numpy(), true_min, atol=1e-4)
        np.testing.assert_allclose(ub[0].double().numpy(), true_max, atol=1e-4)
    lb, ub = verifier.compute_bounds(graph, lower, upper, method="ibp")
    assert np.all(lb[0].double().numpy() <= true_min + 1e-4) and np.all(ub[0].double().numpy() >= true_max - 1e-4)


# ---- L2 regions --------------------------------------------------------------------------

def _ball_points(center: torch.Tensor, radius: float, lo: torch.Tensor, hi: torch.Tensor, n: int,
                 gen: torch.Generator) -> torch.Tensor:
    """``n`` points of the ball (half on its sphere) clipped to the box (which holds the centre,
    so clipping keeps them in the ball): ``(n, d)`` float64."""
    d = center.numel()
    direction = torch.randn(n, d, generator=gen, dtype=torch.float64)
    direction /= direction.norm(dim=1, keepdim=True)
    r = radius * torch.rand(n, 1, generator=gen, dtype=torch.float64) ** (1.0 / d)
    r[: n // 2] = radius
    return torch.minimum(torch.maximum(center + r * direction, lo), hi)


def test_concretize_l2_closed_form() -> None:
    """With a huge box, min over the ball of A·x is A·c - r·||A||, attained at c - r·A/||A||."""
    gen = torch.Generator().manual_seed(0)
    d, R = 6, 4
    A = torch.randn(1, R, d, generator=gen, dtype=torch.float64)
    c = torch.randn(1, d, generator=gen, dtype=torch.float64)
    radius = 0.7
    region = Region(c - 1e6, c + 1e6, c, torch.tensor([radius], dtype=torch.float64))
    value = concretize(A, region)
    expected = (A[0] @ c[0]) - radius * A[0].norm(dim=1)
    torch.testing.assert_close(value[0], expected, rtol=1e-12, atol=1e-9)
    best = c - radius * A[0] / A[0].norm(dim=1, keepdim=True)          # (R, d) minimisers
    torch.testing.assert_close(torch.einsum("rd,rd->r", A[0], best), expected)
    small_box = Region(c - 0.1, c + 0.1, c, torch.tensor([radius], dtype=torch.float64))
    pts = _ball_points(c[0], radius, c[0] - 0.1, c[0] + 0.1, 4000, gen)
    assert torch.all(concretize(A, small_box)[0][None, :] <= pts @ A[0].T + 1e-12)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "digits_smooth"])
def test_l2_region_bounds_contain_ball_samples(name: str) -> None:
    path = MODELS_DIR / f"{name}.onnx"
    graph = api.load_model(path).to(dtype=torch.float64)
    x = torch.as_tensor(np.load(MODELS_DIR / "digits_test.npz")["x"][5], dtype=torch.float64)
    radius = 0.25
    lo, hi = (x - 0.2).clamp(0, 1), (x + 0.2).clamp(0, 1)
    shape = (1, *graph.input_full_shape)
    region = Region(lo.reshape(shape), hi.reshape(shape), x.reshape(1, -1), torch.tensor([radius], dtype=torch.float64))
    box_only = Region(lo.reshape(shape), hi.reshape(shape))
    eye = torch.eye(graph.n_outputs, dtype=torch.float64)
    C = torch.cat([eye, -eye]).unsqueeze(0)
    with torch.no_grad():
        lb_ball = spec_bounds(graph, C, intermediate_bounds(graph, region, BoundsConfig()), region)[0]
        lb_box = spec_bounds(graph, C, intermediate_bounds(graph, box_only, BoundsConfig()), box_only)[0]
    assert torch.all(lb_ball >= lb_box - 1e-9), "adding the ball loosened the box bounds"
    assert torch.any(lb_ball > lb_box + 1e-6), "the ball should tighten some bound (radius < box diagonal)"
    pts = _ball_points(x, radius, lo, hi, 2000, torch.Generator().manual_seed(1))
    assert torch.all((pts - x).norm(dim=1) <= radius + 1e-12)
    y = ort_forward(path, pts.float().numpy())
    n = graph.n_outputs
    _assert_contains(name, "L2 ball", lb_ball[:n].numpy(), -lb_ball[n:].numpy(), y)


# ---- batch consistency -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
@pytest.mark.parametrize("method", METHODS)
def test_batch_of_boxes_equals_one_at_a_time(name: str, method: str) -> None:
    prob = shipped_problem(name, n_boxes=3)
    C = torch.randn(4, prob.graph.n_outputs, generator=torch.Generator().manual_seed(5))
    lb, ub = verifier.compute_bounds(prob.graph, prob.lower, prob.upper, method=method, C=C, config=FAST_ALPHA)
    assert lb.shape == ub.shape == (3, 4)
    for b in range(3):
        lb1, ub1 = verifier.compute_bounds(prob.graph, prob.lower[b:b + 1], prob.upper[b:b + 1], method=method, C=C,
                                  config=FAST_ALPHA)
        torch.testing.assert_close(lb[b:b + 1], lb1, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ub[b:b + 1], ub1, rtol=1e-5, atol=1e-5)


# ---- hand-built graphs exercising every kind of op in one backward pass --------------------

def _mixed_nonlinear_graph(make_onnx) -> Path:
    """Two-variable Mul and Div, Softmax, S-shaped and periodic activations, Concat, Clip."""
    rng = np.random.default_rng(1)
    w = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    n = helper.make_node
    nodes = [n("Gemm", ["x", "W1", "b1"], ["g1"]), n("Sigmoid", ["g1"], ["a"]),
             n("Gemm", ["x", "W2"], ["g2"]), n("Tanh", ["g2"], ["b"]),
             n("Mul", ["a", "b"], ["m"]), n("Exp", ["b"], ["e"]), n("Add", ["e", "one"], ["e1"]),
             n("Div", ["a", "e1"], ["q"]), n("Softmax", ["m"], ["s"]), n("Sin", ["g1"], ["sn"]),
             n("Concat", ["s", "sn", "q"], ["c"], axis=1), n("Gemm", ["c", "W3", "b3"], ["g3"]),
             n("LeakyRelu", ["g3"], ["l"], alpha=0.1), n("Clip", ["l", "lo", "hi"], ["cl"]),
             n("Cos", ["cl"], ["co"]), n("Gemm", ["co", "W4"], ["y"])]
    inits = {"W1": w(6, 8), "b1": w(8), "W2": w(6, 8), "one": np.float32(1.0), "W3": w(24, 5), "b3": w(5),
             "lo": np.float32(-0.8), "hi": np.float32(1.2), "W4": w(5, 3)}
    return make_onnx(nodes, [("x", (1, 6))], [("y", (1, 3))], inits, name="mixed")


def _conv_family_graph(make_onnx) -> Path:
    """Conv, MaxPool, ConvTranspose, BatchNorm, Pad, AveragePool, Transpose, residual Add, Sub."""
    rng = np.random.default_rng(2)
    w = lambda *s: (0.5 * rng.normal(size=s)).astype(np.float32)  # noqa: E731
    n = helper.make_node
    nodes = [n("Conv", ["x", "K1", "c1"], ["h1"], pads=[1, 1, 1, 1]), n("Relu", ["h1"], ["r1"]),
             n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
             n("ConvTranspose", ["p1", "K2"], ["t1"], strides=[2, 2], pads=[1, 1, 2, 2], output_padding=[1, 1]),
             n("BatchNormalization", ["t1", "s", "bb", "mu", "var"], ["bn"]),
             n("Add", ["bn", "h1"], ["res"]), n("Relu", ["res"], ["r2"]),
             n("Pad", ["r2", "pads", "pv"], ["pd"]),
             n("AveragePool", ["pd"], ["ap"], kernel_shape=[3, 3], strides=[2, 2]),
             n("Transpose", ["ap"], ["tr"], perm=[0, 2, 3, 1]), n("Flatten", ["tr"], ["f"]),
             n("Sub", ["f", "mean"], ["z"]), n("Gemm", ["z", "W"], ["y"])]
    inits = {"K1": w(3, 2, 3, 3), "c1": w(3), "K2": w(3, 3, 3, 3), "s": w(3), "bb": w(3), "mu": w(3),
             "var": np.abs(w(3)) + 0.5, "pads": np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64),
             "pv": np.float32(0.3), "mean": w(12), "W": w(12, 4)}
    return make_onnx(nodes, [("x", (1, 2, 5, 5))], [("y", (1, 4))], inits, name="convs")


def _hand_built_problem(builder, half_width: float, make_onnx) -> Problem:
    path = builder(make_onnx)
    graph = api.load_model(path)
    gen = torch.Generator().manual_seed(int(100 * half_width))
    c = torch.randn(2, *graph.input_shape, generator=gen)
    return Problem(path, graph, c - half_width, c + half_width)


@pytest.mark.parametrize("builder", [_mixed_nonlinear_graph, _conv_family_graph], ids=["mixed", "convs"])
@pytest.mark.parametrize("half_width", [0.05, 0.5])
def test_hand_built_graph_bounds_contain_samples(builder, half_width: float, make_onnx) -> None:
    """Containment only; the ordering of the methods is checked below."""
    prob = _hand_built_problem(builder, half_width, make_onnx)
    check_problem(prob.path.stem, prob, 1000, ordering=False)


@pytest.mark.parametrize("half_width", [0.05, 0.5])
def test_hand_built_conv_graph_method_ordering(half_width: float, make_onnx) -> None:
    prob = _hand_built_problem(_conv_family_graph, half_width, make_onnx)
    bounds = {m: verifier.compute_bounds(prob.graph, prob.lower, prob.upper, method=m, config=FAST_ALPHA)
              for m in METHODS}
    for b in range(2):
        _check_ordering(f"convs box {b}", {m: (lb[b].double().numpy(), ub[b].double().numpy())
                                           for m, (lb, ub) in bounds.items()})


def test_crown_never_looser_than_ibp_on_the_mixed_graph(make_onnx) -> None:
    prob = _hand_built_problem(_mixed_nonlinear_graph, 0.05, make_onnx)
    bounds = {m: verifier.compute_bounds(prob.graph, prob.lower, prob.upper, method=m, config=FAST_ALPHA)
              for m in METHODS}
    for b in range(2):
        _check_ordering(f"mixed box {b}", {m: (lb[b].double().numpy(), ub[b].double().numpy())
                                           for m, (lb, ub) in bounds.items()})


# ---- neurons behind inactive ReLUs skipped in the backward products ------------------------

def _mostly_dead_graph(make_onnx) -> Path:
    """An MLP whose hidden ReLUs are mostly inactive on small boxes (strongly negative biases),
    with a bias broadcast from shape ``(1, m)``, a MatMul without bias and a residual Add of two
    ReLU branches, so compact coefficients meet a dense sum."""
    rng = np.random.default_rng(7)
    w = lambda *s: (rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32)  # noqa: E731
    bias = lambda m: np.where(rng.random(m) < 0.8, -3.0, 0.1).astype(np.float32)  # noqa: E731
    n = helper.make_node
    nodes = [n("Gemm", ["x", "W1", "b1"], ["g1"]), n("Relu", ["g1"], ["r1"]),
             n("Gemm", ["r1", "W2", "b2"], ["g2"]), n("Relu", ["g2"], ["r2"]),
             n("MatMul", ["r1", "W3"], ["g3"]), n("Add", ["g3", "b3"], ["g3b"]), n("Relu", ["g3b"], ["r3"]),
             n("Add", ["r2", "r3"], ["s"]), n("Gemm", ["s", "W4", "b4"], ["g4"]), n("Relu", ["g4"], ["r4"]),
             n("Gemm", ["r4", "W5"], ["y"])]
    inits = {"W1": w(20, 64), "b1": bias(64), "W2": w(64, 48), "b2": bias(48).reshape(1, 48),
             "W3": w(64, 48), "b3": bias(48), "W4": w(48, 40), "b4": bias(40), "W5": w(40, 5)}
    return make_onnx(nodes, [("x", (1, 20))], [("y", (1, 5))], inits, name="mostly_dead")


def test_skipping_dead_neurons_is_exact_and_sound(make_onnx, monkeypatch) -> None:
    """CROWN and α-CROWN with the dead-neuron skipping engaged (checked by a spy on the
    restricted products) contain onnxruntime's outputs at sampled and attacked points, and equal
    the bounds computed with the skipping switched off (the skipped coefficients are exact zeros,
    and so are the α gradients of dead neurons)."""
    from verifier.bounds import linear as bl
    from verifier.ops.linear import Linear

    path = _mostly_dead_graph(make_onnx)
    graph = api.load_model(path)
    gen = torch.Generator().manual_seed(11)
    center = torch.randn(3, *graph.input_shape, generator=gen)
    prob = Problem(path, graph, center - 0.1, center + 0.1)
    restricted = []
    original = Linear.backward

    def spy(self, A, in_shapes, cols=None):
        restricted.append(cols is not None and cols.numel() < self.W_rows.shape[0])
        return original(self, A, in_shapes, cols=cols)

    monkeypatch.setattr(Linear, "backward", spy)
    check_problem("mostly_dead", prob, 1000)
    assert any(restricted), "no backward product was restricted to live neurons"
    rows = torch.randn(4, graph.n_outputs, generator=gen)
    skipped = {m: verifier.compute_bounds(graph, prob.lower, prob.upper, method=m, C=rows, config=FAST_ALPHA)
               for m in ("crown", "alpha-crown")}
    monkeypatch.setattr(bl, "LIVE_FRACTION", -1.0)
    for m, bounds in skipped.items():
        dense = verifier.compute_bounds(graph, prob.lower, prob.upper, method=m, C=rows, config=FAST_ALPHA)
        for a, b in zip(bounds, dense):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
