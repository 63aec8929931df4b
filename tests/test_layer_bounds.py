"""Intermediate bounds optimised layer by layer (:mod:`verifier.bounds.crown_layers`).

Oracles: the network evaluated at sampled points, box corners and points a gradient attack
pushes towards each bounded neuron's extremes must stay inside the bounds of every value; the
output rows at those points (onnxruntime) must stay above the α-CROWN bounds computed on the
layer bounds. The layer bounds are never looser than plain CROWN and the independent checker,
given the recorded slopes, recomputes bounds as tight as the verifier's (up to rounding).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import MODELS_DIR, benchmark_path, ort_forward
from verifier import api
from verifier.bounds.crown import alpha_spec_bounds, intermediate_bounds
from verifier.bounds.crown_layers import layer_optimised_bounds
from verifier.bounds.linear import Region
from verifier.config import BoundsConfig
from verifier.evidence.check_bounds import InputSet, SoundBounds
from verifier.ir.evaluate import evaluate

CONFIG = BoundsConfig(layer_alpha_iterations=10)
# name → (family, network, property whose first region is used); the sigmoid net has every
# neuron of every layer bounded (its values feed S-shaped activations, not only ReLUs)
BENCH = {"mnist_256x2": ("mnist_fc_2022", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_0_0.05.vnnlib"),
         "eran_sigmoid_6x200": ("eran_2021", "nets/ffnnSIGMOID__Point_6x200.onnx",
                                "specs/mnist/mnist_spec_idx_858_eps_0.01200.vnnlib")}


def _problem(name: str):
    """(onnx path, float64 graph, region of one L∞ ball around a real input)."""
    if name == "digits_mlp":
        path, eps = MODELS_DIR / "digits_mlp.onnx", 0.08
        x = np.load(MODELS_DIR / "digits_test.npz")["x"][3].reshape(-1)
        lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    else:
        family, net, spec = BENCH[name]
        path = benchmark_path(family, *net.split("/"))
        graph = api.load_model(path)
        region = api.load_property(benchmark_path(family, *spec.split("/")), graph).cases[0].region
        lo, hi = region.lower, region.upper
    graph = api.load_model(path).to(dtype=torch.float64)
    shape = (1, *graph.input_full_shape[1:])
    region = Region(torch.as_tensor(lo, dtype=torch.float64).reshape(shape),
                    torch.as_tensor(hi, dtype=torch.float64).reshape(shape))
    return path, graph, region


def _points(graph, region, bounds, slopes, n: int = 1500) -> torch.Tensor:
    """Uniform samples, random corners and, per optimised value, points pushed by signed
    gradient steps towards the lowest and highest value of a few bounded neurons: ``(m, n_in)``."""
    gen = torch.Generator().manual_seed(0)
    lo, hi = region.lower.reshape(1, -1), region.upper.reshape(1, -1)
    u = torch.rand(n, lo.shape[1], generator=gen, dtype=torch.float64)
    corners = (torch.rand(n // 3, lo.shape[1], generator=gen) < 0.5).to(torch.float64)
    pts = [lo + u * (hi - lo), lo + corners * (hi - lo)]
    for name, ls in slopes.items():
        for j in ls.rows[torch.randperm(ls.rows.numel(), generator=gen)[:6]]:
            for sign in (1.0, -1.0):
                x = (lo + torch.rand(16, lo.shape[1], generator=gen, dtype=torch.float64) * (hi - lo))
                for _ in range(30):
                    x.requires_grad_(True)
                    v = evaluate(graph, x.reshape(-1, *graph.input_full_shape[1:]))[name].reshape(16, -1)[:, j]
                    (g,) = torch.autograd.grad((sign * v).sum(), x)
                    x = torch.minimum(torch.maximum(x.detach() + 0.05 * (hi - lo) * g.sign(), lo), hi)
                pts.append(x.detach())
    return torch.cat(pts)


def _problem_names():
    return ["digits_mlp", *BENCH]


@pytest.mark.parametrize("name", _problem_names())
def test_layer_bounds_contain_every_value_and_beat_crown(name):
    path, graph, region = _problem(name)
    with torch.no_grad():
        crown = intermediate_bounds(graph, region, CONFIG)
    bounds, slopes = layer_optimised_bounds(graph, region, CONFIG, time.monotonic() + 120)
    assert slopes, "no intermediate value was optimised"
    x = _points(graph, region, bounds, slopes)
    with torch.no_grad():
        values = evaluate(graph, x.reshape(-1, *graph.input_full_shape[1:]))
    tighter = 0
    for v, (lo, hi) in bounds.items():
        got = values[v].reshape(x.shape[0], -1)
        lo, hi = lo.reshape(1, -1), hi.reshape(1, -1)
        assert bool((got >= lo - 1e-7).all() and (got <= hi + 1e-7).all()), f"value {v} escapes its bounds"
        c_lo, c_hi = (t.reshape(1, -1) for t in crown[v])
        assert bool((lo >= c_lo - 1e-9).all() and (hi <= c_hi + 1e-9).all()), f"value {v} looser than CROWN"
        tighter += int(((lo > c_lo + 1e-6) | (hi < c_hi - 1e-6)).sum())
    assert tighter > 0
    # the property rows on these bounds hold at every point (onnxruntime's outputs)
    C = torch.randn(1, 5, graph.n_outputs, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lb = alpha_spec_bounds(graph, C, bounds, region, CONFIG, time.monotonic() + 60)
    y = ort_forward(path, x.numpy().astype(np.float32))
    rows = y @ C[0].numpy().T
    assert np.all(rows >= lb[0].numpy() - 1e-4)


@pytest.mark.parametrize("name", _problem_names())
def test_checker_recomputes_the_layer_bounds_from_the_slopes(name):
    """The checker's sound float64 bounds with the recorded slopes match the verifier's (they
    may be looser only by its rounding allowance), and are never looser than its plain CROWN."""
    _, graph, region = _problem(name)
    bounds, slopes = layer_optimised_bounds(graph, region, CONFIG, time.monotonic() + 120)
    sb = SoundBounds(api.load_model(_problem(name)[0]))
    inputs = InputSet(region.lower, region.upper, None, None)
    record = {k: (ls.rows.numpy(), {a: s.numpy() for a, s in ls.alphas.items()}) for k, ls in slopes.items()}
    with torch.no_grad():
        plain = sb.intermediate(inputs)
        checked = sb.intermediate(inputs, layers=record)
    for v in slopes:
        lo, hi = bounds[v]
        c_lo, c_hi = checked[v]
        scale = 1e-6 * (1 + hi.abs().max())
        assert bool((c_lo >= lo - scale).all() and (c_hi <= hi + scale).all()), v
        assert bool((c_lo >= plain[v][0]).all() and (c_hi <= plain[v][1]).all()), v
