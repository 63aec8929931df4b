"""Every canonical op in ``verifier.ops.REGISTRY``, checked three ways against oracles:

(a) its interval bounds contain the forward output at thousands of points sampled in random
    boxes (corners included for small inputs);
(b) for activations, the relaxation lines from ``relax(lo, hi, alpha)`` bound the function on a
    dense grid of each of many random intervals (narrow, wide, one-signed, straddling zero);
(c) for affine ops, ``backward`` is the exact transpose of the linear part,
    ``<A, L(x)> == <backward(A), x>``, its constant is ``<A, f(0)>``, and the interval is the
    exact range (centre ± |Jacobian|·radius).

The parametrisation comes from the registry itself, so a new op without an instance here fails.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from verifier.ir.graph import Node
from verifier.ops import REGISTRY, Activation, Affine

F64 = torch.float64
CPU = torch.device("cpu")


@dataclass
class Instance:
    """One op instance: the node and the per-sample shapes of its inputs."""

    node: Node
    in_shapes: list[tuple[int, ...]]
    positive_inputs: tuple[int, ...] = ()  # inputs whose boxes must stay in (0.2, inf)


def _t(*shape: int, seed: int = 0, positive: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * seed + sum(shape) + len(shape))
    t = torch.randn(*shape, generator=g, dtype=F64)
    return t.abs() + 0.3 if positive else t


def node(op: str, out_shape: tuple, n_inputs: int = 1, attrs: dict | None = None, params: dict | None = None) -> Node:
    inputs = ("x",) if n_inputs == 1 else tuple(f"x{i}" for i in range(n_inputs))
    return Node("y", op, inputs, attrs or {}, params or {}, tuple(out_shape))


def _affine_instances() -> dict[str, list[Instance]]:
    conv = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    conv_g = {"stride": (2, 1), "padding": (0, 1), "dilation": (1, 2), "groups": 2}
    convt = {"stride": (2, 2), "padding": (0, 0), "dilation": (1, 1), "groups": 1, "output_padding": (1, 1)}
    return {
        "Linear": [Instance(node("Linear", (2, 3), params={"W": _t(5, 3), "b": _t(3, seed=1)}), [(2, 5)]),
                   Instance(node("Linear", (4,), params={"W": _t(6, 4)}), [(6,)])],
        "Conv": [Instance(node("Conv", (3, 5, 5), attrs=conv, params={"W": _t(3, 2, 3, 3), "b": _t(3)}), [(2, 5, 5)]),
                 Instance(node("Conv", (4, 3, 3), attrs=conv_g, params={"W": _t(4, 1, 2, 2)}), [(2, 6, 3)]),
                 Instance(node("Conv", (1, 2, 4), attrs={"stride": (1,), "padding": (0,), "dilation": (1,),
                                                          "groups": 1}, params={"W": _t(2, 3, 2), "b": _t(2)}),
                          [(1, 3, 5)])],
        "ConvTranspose": [Instance(node("ConvTranspose", (3, 8, 8), attrs=convt,
                                        params={"W": _t(2, 3, 3, 3), "b": _t(3)}), [(2, 3, 3)])],
        "Scale": [Instance(node("Scale", (3, 4), params={"a": _t(3, 1), "b": _t(4)}), [(3, 4)]),
                  Instance(node("Scale", (3, 4), params={"a": _t(3, 1)}), [(1, 4)]),
                  Instance(node("Scale", (2, 3), params={"b": _t(2, 3)}), [(2, 3)])],
        "Add": [Instance(node("Add", (3, 4), 2), [(3, 4), (1, 4)]),
                Instance(node("Add", (3, 4), 2), [(4,), (3, 4)])],
        "Reduce": [Instance(node("Reduce", (3, 1, 2), attrs={"axes": [2], "keepdims": True, "mean": False}),
                            [(3, 4, 2)]),
                   Instance(node("Reduce", (4,), attrs={"axes": [1, 3], "keepdims": False, "mean": True}),
                            [(3, 4, 2)])],
        "Reshape": [Instance(node("Reshape", (6, 4)), [(2, 3, 4)])],
        "Transpose": [Instance(node("Transpose", (4, 2, 3), attrs={"perm": [0, 3, 1, 2]}), [(2, 3, 4)])],
        "Select": [Instance(node("Select", (4, 4), attrs={"axis": 2},
                                 params={"index": torch.tensor([4, 0, 0, 2])}), [(4, 5)]),
                   Instance(node("Select", (2, 3), attrs={"axis": 1},
                                 params={"index": torch.tensor([1, 1])}), [(3, 3)])],
        "Concat": [Instance(node("Concat", (2, 4), 2, attrs={"axis": 2}), [(2, 3), (2, 1)]),
                   Instance(node("Concat", (3, 2), 3, attrs={"axis": 1}), [(1, 2), (1, 2), (1, 2)])],
        "Pad": [Instance(node("Pad", (2, 6, 4), attrs={"pads": [1, 0, 2, 1], "value": 0.5}), [(2, 3, 3)]),
                Instance(node("Pad", (2, 5), attrs={"pads": [2, 0], "value": 0.0}), [(2, 3)])],
    }


def _other_instances() -> dict[str, list[Instance]]:
    pool = {"kernel": (2, 2), "stride": (2, 2), "dilation": (1, 1), "pads": [0, 1, 0, 1]}
    pool_d = {"kernel": (2, 2), "stride": (1, 1), "dilation": (2, 2), "pads": [0, 0, 0, 0]}
    return {
        "Mul": [Instance(node("Mul", (3, 4), 2), [(3, 4), (3, 4)]), Instance(node("Mul", (2, 3), 2), [(2, 3), (1, 3)])],
        "Div": [Instance(node("Div", (3, 4), 2), [(3, 4), (3, 4)], positive_inputs=(1,)),
                Instance(node("Div", (2, 3), 2), [(2, 3), (3,)])],
        "Softmax": [Instance(node("Softmax", (2, 5), attrs={"axis": 2}), [(2, 5)]),
                    Instance(node("Softmax", (4, 2), attrs={"axis": 1}), [(4, 2)])],
        "MaxPool": [Instance(node("MaxPool", (2, 3, 3), attrs=pool), [(2, 5, 5)]),
                    Instance(node("MaxPool", (1, 3, 3), attrs=pool_d), [(1, 5, 5)])],
    }


def _activation_instances() -> dict[str, list[Instance]]:
    simple = {op: [Instance(node(op, (6,)), [(6,)])] for op in ("Relu", "Sigmoid", "Tanh", "Exp", "Sin", "Cos")}
    return {
        **simple,
        "LeakyRelu": [Instance(node("LeakyRelu", (6,), attrs={"alpha": a}), [(6,)]) for a in (0.0, 0.1, 0.5, 1.0)],
        "Clip": [Instance(node("Clip", (6,), attrs={"min": lo, "max": hi}), [(6,)])
                 for lo, hi in ((-0.5, 0.8), (-math.inf, 1.0), (0.0, math.inf), (0.3, 0.3))],
    }


INSTANCES: dict[str, list[Instance]] = {**_affine_instances(), **_other_instances(), **_activation_instances()}
OPS = sorted(REGISTRY)


def instances(name: str) -> list[Instance]:
    if name not in INSTANCES:
        pytest.fail(f"canonical op '{name}' is registered but has no test instance in {__file__}")
    return INSTANCES[name]


def make(inst: Instance):
    return REGISTRY[inst.node.op](inst.node, F64, CPU)


def test_every_registered_op_has_instances() -> None:
    assert set(INSTANCES) >= set(REGISTRY), sorted(set(REGISTRY) - set(INSTANCES))
    assert set(INSTANCES) <= set(REGISTRY), f"instances for unknown ops: {sorted(set(INSTANCES) - set(REGISTRY))}"


# ---- (a) interval containment -----------------------------------------------------------

def _random_boxes(inst: Instance, gen: torch.Generator, scale: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One box per input, each ``(1, *shape)``."""
    boxes = []
    for i, shape in enumerate(inst.in_shapes):
        c = scale * torch.randn(1, *shape, generator=gen, dtype=F64)
        r = scale * torch.rand(1, *shape, generator=gen, dtype=F64)
        if i in inst.positive_inputs:
            c = c.abs() + r + 0.2
        boxes.append((c - r, c + r))
    return boxes


def _samples(boxes, n: int, gen: torch.Generator) -> list[torch.Tensor]:
    """``n`` uniform points per input box plus every corner of the joint box when it has at most
    12 dimensions (else 256 random corners): each ``(S, *shape)``."""
    sizes = [lo[0].numel() for lo, _ in boxes]
    total = sum(sizes)
    if total <= 12:
        corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=total)), dtype=F64)
    else:
        corners = torch.randint(0, 2, (256, total), generator=gen).to(F64)
    u = torch.cat([torch.rand(n, total, generator=gen, dtype=F64), corners])
    out, start = [], 0
    for (lo, hi), size in zip(boxes, sizes):
        part = u[:, start:start + size].reshape(-1, *lo.shape[1:])
        out.append(lo + part * (hi - lo))
        start += size
    return out


@pytest.mark.parametrize("name", OPS)
def test_interval_contains_sampled_outputs(name: str) -> None:
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    for inst in instances(name):
        op = make(inst)
        for scale in (0.05, 1.0, 4.0):
            boxes = _random_boxes(inst, gen, scale)
            lo, hi = op.interval(*boxes)
            assert lo.shape == hi.shape == (1, *inst.node.out_shape)
            xs = _samples(boxes, 2000, gen)
            y = op.forward(*xs)
            assert y.shape[1:] == lo.shape[1:]
            tol = 1e-9 * (1 + y.abs())
            below = (y < lo - tol).sum().item()
            above = (y > hi + tol).sum().item()
            assert below == 0 and above == 0, f"{name} {inst.node.attrs}: {below} samples below, {above} above"


# ---- (b) relaxation lines ----------------------------------------------------------------

ACTIVATIONS = [n for n in OPS if issubclass(REGISTRY[n], Activation)]
AFFINES = [n for n in OPS if issubclass(REGISTRY[n], Affine)]


def _intervals(gen: torch.Generator, clip_points: tuple[float, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Many random intervals ``(K,)``: narrow, wide, negative, positive, straddling 0, and
    straddling or touching the op's kinks ``clip_points``."""
    def rand(k, a, b):
        return a + (b - a) * torch.rand(k, generator=gen, dtype=F64)

    k = 120
    lows, highs = [], []
    c = rand(k, -8, 8)
    w = 10 ** rand(k, -12, -4)
    lows.append(c - w / 2), highs.append(c + w / 2)                      # very narrow
    c, w = rand(k, -5, 5), rand(k, 10, 60)
    lows.append(c - w / 2), highs.append(c + w / 2)                      # very wide
    lo = rand(k, -20, 0)
    lows.append(lo), highs.append(lo + (-lo) * torch.rand(k, generator=gen, dtype=F64))   # all negative
    lo = rand(k, 0, 20)
    lows.append(lo), highs.append(lo + rand(k, 0, 5))                     # all positive
    lows.append(-rand(k, 0, 6)), highs.append(rand(k, 0, 6))              # straddling zero
    lows.append(-rand(k, 0, 1e-6)), highs.append(rand(k, 0, 1e-6))        # narrow around zero
    lows.append(torch.zeros(k, dtype=F64)), highs.append(rand(k, 0, 3))   # touching zero
    lows.append(-rand(k, 0, 3)), highs.append(torch.zeros(k, dtype=F64))
    for p in clip_points:
        lows.append(p - rand(k, 0, 2)), highs.append(p + rand(k, 0, 2))
        lows.append(torch.full((k,), p, dtype=F64)), highs.append(p + rand(k, 0, 2))
        lows.append(p - rand(k, 0, 2)), highs.append(torch.full((k,), p, dtype=F64))
    lo, hi = torch.cat(lows), torch.cat(highs)
    return torch.minimum(lo, hi), torch.maximum(lo, hi)


def _check_lines(op, lo, hi, alpha, what: str) -> None:
    lw, lb, uw, ub = op.relax(lo, hi, alpha)
    for t in (lw, lb, uw, ub):
        assert t.shape == lo.shape and torch.isfinite(t).all(), f"{what}: non-finite or misshaped lines"
    t = torch.linspace(0, 1, 2001, dtype=F64)
    x = torch.minimum(lo[:, None] + t * (hi - lo)[:, None], hi[:, None])
    x[:, -1] = hi
    f = op.fn(x)
    scale = 1 + f.abs().amax(dim=1, keepdim=True)
    tol = 1e-6 * scale
    low_gap = (lw[:, None] * x + lb[:, None]) - f      # must be <= 0
    up_gap = f - (uw[:, None] * x + ub[:, None])       # must be <= 0
    bad_low = (low_gap > tol).any(1)
    bad_up = (up_gap > tol).any(1)
    if bad_low.any() or bad_up.any():
        i = int(torch.nonzero(bad_low | bad_up)[0])
        a = None if alpha is None else float(alpha[i])
        raise AssertionError(f"{what}: line violates f on [{lo[i].item()!r}, {hi[i].item()!r}] alpha={a}: "
                             f"lower line above f by {low_gap[i].max().item():.3g}, f above upper line by "
                             f"{up_gap[i].max().item():.3g}; {int(bad_low.sum())} lower / {int(bad_up.sum())} "
                             f"upper violations of {len(lo)}")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_relaxation_lines_bound_the_function(name: str) -> None:
    gen = torch.Generator().manual_seed(sum(map(ord, name)) + 1)
    for inst in instances(name):
        op = make(inst)
        kinks = tuple(v for v in (inst.node.attrs.get("min"), inst.node.attrs.get("max"))
                      if v is not None and math.isfinite(v))
        lo, hi = _intervals(gen, kinks + ((math.pi / 2, -math.pi / 2) if name in ("Sin", "Cos") else ()))
        what = f"{name} {dict(inst.node.attrs)}"
        _check_lines(op, lo, hi, None, what)
        if op.alpha_shape_ok():
            for alpha in (torch.rand(lo.shape, generator=gen, dtype=F64), torch.zeros_like(lo), torch.ones_like(lo)):
                _check_lines(op, lo, hi, alpha, what + " (alpha)")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_relaxation_lines_float32(name: str) -> None:
    """The same in float32 (the default dtype), at a float32 tolerance."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)) + 2)
    for inst in instances(name):
        op = REGISTRY[name](inst.node, torch.float32, CPU)
        lo, hi = _intervals(gen)
        lo, hi = lo.float(), hi.float()
        lw, lb, uw, ub = op.relax(lo, hi, None)
        x = lo[:, None] + torch.linspace(0, 1, 2001) * (hi - lo)[:, None]
        x = torch.minimum(torch.maximum(x, lo[:, None]), hi[:, None]).double()
        f = op.fn(x)  # exact function (float64) against the float32 lines
        tol = 1e-5 * (1 + f.abs().amax(1, keepdim=True))
        assert ((lw.double()[:, None] * x + lb.double()[:, None]) - f <= tol).all(), name
        assert (f - (uw.double()[:, None] * x + ub.double()[:, None]) <= tol).all(), name


def test_activation_interval_is_tight_at_the_ends() -> None:
    """Monotone activations' intervals are the function values at the ends (no slack)."""
    lo, hi = torch.tensor([[-2.0, 0.5]], dtype=F64), torch.tensor([[1.0, 3.0]], dtype=F64)
    for name in ("Relu", "Sigmoid", "Tanh", "Exp"):
        op = make(instances(name)[0])
        l, u = op.interval((lo, hi))
        assert torch.equal(l, op.fn(lo)) and torch.equal(u, op.fn(hi))


# ---- (c) affine ops: exact transpose ----------------------------------------------------

@pytest.mark.parametrize("name", AFFINES)
def test_affine_backward_is_exact_transpose(name: str) -> None:
    gen = torch.Generator().manual_seed(sum(map(ord, name)) + 3)
    for inst in instances(name):
        op = make(inst)
        B, R = 2, 3
        xs = [torch.randn(B, *s, generator=gen, dtype=F64) for s in inst.in_shapes]
        zeros = [torch.zeros(1, *s, dtype=F64) for s in inst.in_shapes]
        f0 = op.forward(*zeros)
        Lx = op.forward(*xs) - f0                                   # the linear part, from forward alone
        A = torch.randn(B, R, *inst.node.out_shape, generator=gen, dtype=F64)
        A_ins, bias = op.backward(A, list(inst.in_shapes))
        assert len(A_ins) == len(xs)
        for A_in, s in zip(A_ins, inst.in_shapes):
            assert A_in.shape == (B, R, *s)
        lhs = torch.einsum("bro,bo->br", A.reshape(B, R, -1), Lx.reshape(B, -1))
        rhs = sum(torch.einsum("bri,bi->br", Ai.reshape(B, R, -1), x.reshape(B, -1)) for Ai, x in zip(A_ins, xs))
        torch.testing.assert_close(rhs, lhs, rtol=1e-10, atol=1e-10)
        expected_bias = torch.einsum("bro,o->br", A.reshape(B, R, -1), f0.reshape(-1))
        assert bias.shape == (B, R)
        torch.testing.assert_close(bias, expected_bias, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(op.linear(*xs), Lx, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", AFFINES)
def test_affine_interval_is_the_exact_range(name: str) -> None:
    """For an affine map the box image's bounds are ``f(c) ± |J| r`` and attained."""
    gen = torch.Generator().manual_seed(sum(map(ord, name)) + 4)
    for inst in instances(name):
        op = make(inst)
        boxes = _random_boxes(inst, gen, 1.0)
        centers = [(lo + hi) / 2 for lo, hi in boxes]
        radii = torch.cat([((hi - lo) / 2).reshape(-1) for lo, hi in boxes])
        sizes = [c.numel() for c in centers]

        def flat_forward(v: torch.Tensor) -> torch.Tensor:
            parts = torch.split(v, sizes)
            return op.forward(*[p.reshape(c.shape) for p, c in zip(parts, centers)]).reshape(-1)

        J = torch.autograd.functional.jacobian(flat_forward, torch.cat([c.reshape(-1) for c in centers]))
        mid = flat_forward(torch.cat([c.reshape(-1) for c in centers]))
        lo, hi = op.interval(*boxes)
        torch.testing.assert_close(lo.reshape(-1), mid - J.abs() @ radii, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(hi.reshape(-1), mid + J.abs() @ radii, rtol=1e-10, atol=1e-10)


def test_relu_upper_line_on_a_very_narrow_unstable_interval() -> None:
    lo = torch.tensor([-6.0e-8], dtype=F64)
    hi = torch.tensor([2.0e-8], dtype=F64)
    op = make(instances("Relu")[0])
    _lw, _lb, uw, ub = op.relax(lo, hi, None)
    upper_at_hi = (uw * hi + ub).item()
    assert upper_at_hi >= hi.item() * (1 - 1e-12), f"upper line {upper_at_hi!r} < relu(hi) = {hi.item()!r}"
