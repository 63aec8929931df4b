"""Branch and bound: verdicts against published ones, onnxruntime-confirmed counterexamples,
dense sampling on small random networks, determinism and deadlines."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from onnx import helper

import verifier
from verifier.config import BabConfig, BoundsConfig, VerifyConfig
from verifier.spec.vnnlib import parse_vnnlib_text

from conftest import benchmark_path, ort_forward

# Without the layer-optimised intermediate bounds, so that the mnist cases below reach ReLU splitting.
NO_LAYERS = BoundsConfig(layer_alpha_iterations=0)


def _acas(net: str, prop: int):
    model = verifier.load_model(benchmark_path("acasxu", "onnx", f"ACASXU_run2a_{net}_batch_2000.onnx"))
    return model, verifier.load_property(benchmark_path("acasxu", "vnnlib", f"prop_{prop}.vnnlib"), model)


def _assert_confirmed(model, prop, result) -> None:
    """The counterexample is in its region and onnxruntime's output on it is unsafe."""
    cex = result.counterexample
    case = prop.cases[cex.case_index]
    x = cex.x.reshape(-1).astype(np.float64)
    assert case.region.contains(x)
    y = ort_forward(model.onnx_path, cex.x.reshape(1, -1).astype(np.float32)).reshape(-1)
    assert case.unsafe[cex.disjunct_index].margin(y) <= 0.0


@pytest.mark.parametrize("net,prop", [("1_9", 1), ("3_3", 3)])
def test_input_split_proves_published_unsat(net, prop):
    model, p = _acas(net, prop)
    result = verifier.verify(model, p, timeout=60)
    assert result.verdict == "unsat", result.reason


@pytest.mark.parametrize("net,prop", [("1_2", 2), ("1_9", 3)])
def test_published_sat_found_and_confirmed(net, prop):
    model, p = _acas(net, prop)
    result = verifier.verify(model, p, timeout=60)
    assert result.verdict == "sat", result.reason
    _assert_confirmed(model, p, result)


def test_relu_split_mnist_published_verdicts():
    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"))
    unsat = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), model)
    sat = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_2_0.03.vnnlib"), model)
    assert verifier.verify(model, unsat, timeout=60, bab=BabConfig(strategy="relu"), bounds=NO_LAYERS).verdict == "unsat"
    found = verifier.verify(model, sat, timeout=60)
    assert found.verdict == "sat"
    _assert_confirmed(model, sat, found)


def _random_relu_net(make_onnx, seed: int, n_in: int = 3, hidden: int = 12):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(n_in, hidden)).astype(np.float32)
    b1 = rng.normal(size=hidden).astype(np.float32) * 0.5
    W2 = rng.normal(size=(hidden, hidden)).astype(np.float32) / np.sqrt(hidden)
    b2 = rng.normal(size=hidden).astype(np.float32) * 0.5
    W3 = rng.normal(size=(hidden, 2)).astype(np.float32) / np.sqrt(hidden)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W2", "b2"], ["h2"]), helper.make_node("Relu", ["h2"], ["a2"]),
             helper.make_node("MatMul", ["a2", "W3"], ["y"])]
    params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3}
    return make_onnx(nodes, [("x", [1, n_in])], [("y", [1, 2])],
                     {k: v.astype(np.float32) for k, v in params.items()}, name=f"net{seed}")


def _threshold_property(n_in: int, threshold: float) -> str:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(n_in)) + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    box = "".join(f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))\n" for i in range(n_in))
    return decl + box + f"(assert (>= (- Y_0 Y_1) {threshold!r}))\n"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("strategy", ["input", "relu"])
def test_verdicts_agree_with_dense_sampling(make_onnx, seed, strategy):
    """Threshold set just below the sampled maximum (sat) or above a safe margin over it (unsat
    unless the true maximum is higher, which a counterexample would then show)."""
    path = _random_relu_net(make_onnx, seed)
    model = verifier.load_model(path)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 41)] * 3), -1).reshape(-1, 3).astype(np.float32)
    y = model.forward_flat(torch.from_numpy(grid)).double().numpy()
    top = float((y[:, 0] - y[:, 1]).max())
    for threshold, expect_sat in ((top - 0.05, True), (top + 0.5, None)):
        prop = parse_vnnlib_text(_threshold_property(3, threshold))
        result = verifier.verify(model, prop, timeout=30, bab=BabConfig(strategy=strategy))
        if expect_sat:
            assert result.verdict == "sat"
            _assert_confirmed(model, prop, result)
        else:
            assert result.verdict in ("unsat", "sat")
            if result.verdict == "sat":
                _assert_confirmed(model, prop, result)


def test_same_seed_same_verdict_and_work():
    model, p = _acas("1_1", 1)
    a = verifier.verify(model, p, timeout=60, seed=3)
    b = verifier.verify(model, p, timeout=60, seed=3)
    assert a.verdict == b.verdict == "unsat"
    assert a.trail[-1].get("domains_bounded") == b.trail[-1].get("domains_bounded")


def test_deadline_honoured_with_open_domains():
    model, p = _acas("2_5", 1)
    start = time.monotonic()
    result = verifier.verify(model, p, timeout=3.0)
    assert time.monotonic() - start < 3.0 + 2.0
    assert result.verdict in ("timeout", "unsat")
    if result.verdict == "timeout":
        assert result.bounds.get("open_cases") == [0]
        assert result.bounds.get("best_global_bound") is not None


def test_relu_split_out_of_time_never_claims_a_proof():
    """With the deadline already passed, domains still open must not read as proven."""
    from verifier.config import VerifyConfig
    from verifier.engines.bab_relu import relu_split
    from verifier.engines.onnx_runner import OnnxRunner

    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"))
    prop = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), model)
    graph = model.to(dtype=torch.float64)
    out = relu_split(graph, prop.cases[0], 0, OnnxRunner(model), VerifyConfig(), time.monotonic(), lambda m: None)
    assert not out.proven
    assert out.open_domains > 0 and "time limit" in out.reason


def _failing_above(monkeypatch, module, name: str, size_of, limit: int) -> list[int]:
    """Make ``module.name`` raise torch's out-of-memory error on batches larger than ``limit``;
    returns the list of batch sizes it was called with."""
    real, sizes = getattr(module, name), []

    def wrapped(*args, **kw):
        n = size_of(*args)
        sizes.append(n)
        if n > limit:
            raise torch.OutOfMemoryError(f"simulated: {n} domains do not fit")
        return real(*args, **kw)

    monkeypatch.setattr(module, name, wrapped)
    return sizes


def test_input_split_bounds_batches_in_halves_when_memory_runs_out(monkeypatch):
    """Batches that do not fit are bounded in halves: same verdict, smaller batches seen."""
    import verifier.engines.bab_input as bi

    model, p = _acas("1_9", 1)
    sizes = _failing_above(monkeypatch, bi, "_strong_split", lambda s, parents: len(parents), 1)
    result = verifier.verify(model, p, timeout=60)
    assert result.verdict == "unsat", result.reason
    big = sizes.index(max(sizes))
    assert max(sizes) > 1 and sizes[big + 1] == max(sizes) // 2  # the failed batch came back halved


def test_relu_split_out_of_memory_on_one_domain_is_unknown_with_reason(monkeypatch):
    """When not even one sub-domain fits, the case stays open and the reason says why."""
    import verifier.engines.bab_relu as br

    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"))
    prop = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), model)
    _failing_above(monkeypatch, br, "_bound", lambda prob, states, *a: next(iter(states.values())).shape[0], 0)
    result = verifier.verify(model, prop, timeout=30, bab=BabConfig(strategy="relu"), bounds=NO_LAYERS)
    assert result.verdict == "unknown"
    assert "out of memory" in result.reason


def test_relu_split_halves_keep_the_verdict(monkeypatch):
    import verifier.engines.bab_relu as br

    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"))
    prop = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), model)
    sizes = _failing_above(monkeypatch, br, "_bound", lambda prob, states, *a: next(iter(states.values())).shape[0],
                           1)
    result = verifier.verify(model, prop, timeout=60, bab=BabConfig(strategy="relu"), bounds=NO_LAYERS)
    assert result.verdict == "unsat", result.reason
    big = sizes.index(max(sizes))
    assert max(sizes) > 1 and sizes[big + 1] == max(sizes) // 2


@pytest.mark.parametrize("seed", range(4))
def test_row_combination_bound_is_below_every_sampled_maximum(make_onnx, seed):
    """The bound from a convex combination of the rows' CROWN lines never exceeds
    ``max_i (C y - d)_i`` at any sampled point of the box (the quantity it bounds)."""
    from verifier.bounds.crown import intermediate_bounds, spec_bounds
    from verifier.bounds.linear import Region, Trace
    from verifier.config import BoundsConfig
    from verifier.engines.row_combination import combined_bounds, project_simplex

    model = verifier.load_model(_random_relu_net(make_onnx, 10 + seed)).to(dtype=torch.float64)
    rng = np.random.default_rng(seed)
    centre = rng.uniform(-0.5, 0.5, size=(2, 3))
    lo, hi = torch.as_tensor(centre - 0.4), torch.as_tensor(centre + 0.4)  # two boxes
    C = torch.as_tensor(rng.normal(size=(2, 3, 2)))
    d = torch.as_tensor(rng.normal(size=3) * 0.1)
    region = Region(lo, hi)
    trace = Trace()
    with torch.no_grad():
        lb = spec_bounds(model, C, intermediate_bounds(model, region, BoundsConfig()), region, trace=trace)
    best, lam = combined_bounds(trace.A_x.reshape(2, 3, -1), lb - d, trace.input_min, lo, hi,
                                torch.zeros(3, dtype=torch.long), 1)
    assert torch.allclose(lam.sum(1), torch.ones(2, dtype=lam.dtype)) and bool((lam >= 0).all())
    for b in range(2):
        x = lo[b] + torch.rand(20000, 3, dtype=torch.float64) * (hi[b] - lo[b])
        y = model.forward_flat(x)
        worst_max = float(((y @ C[b].T) - d).amax(dim=1).min())
        assert float(best[b, 0]) <= worst_max + 1e-9
    v = torch.as_tensor(rng.normal(size=(5, 4)))
    p = project_simplex(v)
    assert bool((p >= 0).all()) and torch.allclose(p.sum(1), torch.ones(5, dtype=p.dtype))
    assert torch.allclose(project_simplex(p), p)


# ---- the late sampling of open boxes (input split) -----------------------------------------

def _sliver_search(make_onnx, threshold: float, deadline: float, steps: int = 50):
    """A search on ``y = relu(x0) + 0.1 relu(x1)`` over ``[0, 1]²`` whose unsafe set ``y <= threshold``
    is a thin sliver against the face ``x0 = 0`` (for a small positive threshold)."""
    from verifier.config import AttackConfig
    from verifier.engines.bab_common import SplitOutcome
    from verifier.engines.bab_input import _Search
    from verifier.engines.confirm import UnsafeSet
    from verifier.engines.onnx_runner import OnnxRunner
    from verifier.engines.rows import RowSpec

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["r", "W"], ["y"])]
    path = make_onnx(nodes, [("x", [1, 2])], [("y", [1, 1])], {"W": np.array([[1.0], [0.1]], np.float32)},
                     name="sliver")
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
            "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
            f"(assert (<= Y_0 {threshold!r}))\n")
    model = verifier.load_model(path).to(dtype=torch.float64)
    case = parse_vnnlib_text(text, "sliver.vnnlib", 2, 1).cases[0]
    config = VerifyConfig(attack=AttackConfig(steps=steps))
    return _Search(model, RowSpec.of(case, 1, model.dtype, model.device),
                   UnsafeSet(case, 1, model.dtype, model.device), case, 0, OnnxRunner(verifier.load_model(path)),
                   config, SplitOutcome(case_index=0), deadline), path


def test_late_sampling_finds_a_sliver_counterexample_in_the_open_boxes(make_onnx):
    """Points with x0 below 5e-4 and x1 small are unsafe; the sampler draws inside the open boxes
    it is given, and what it reports is confirmed by onnxruntime (y recomputed here)."""
    from verifier.engines.bab_sampling import sample_open_boxes

    s, path = _sliver_search(make_onnx, 5e-4, time.monotonic() + 30)
    lower = torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[0.25, 1.0], [1.0, 1.0]], dtype=torch.float64)
    cex, drawn = sample_open_boxes(s, lower, upper, 0.0, seed=0)
    assert cex is not None and drawn > 0
    x = np.asarray(cex.x, np.float32).reshape(1, -1)
    assert 0.0 <= x[0, 0] <= 0.25 and 0.0 <= x[0, 1] <= 1.0
    assert float(ort_forward(path, x)[0, 0]) <= 5e-4
    # without the gradient steps (which may leave the boxes for the whole region), only the
    # sampled points count: none of them lies in the sliver when the boxes exclude it
    s, _ = _sliver_search(make_onnx, 5e-4, time.monotonic() + 30, steps=0)
    cex, _ = sample_open_boxes(s, lower[1:], upper[1:], 0.0, seed=0)
    assert cex is None


def test_late_sampling_reports_nothing_when_the_region_is_safe(make_onnx):
    from verifier.engines.bab_sampling import sample_open_boxes

    s, _ = _sliver_search(make_onnx, -1e-3, time.monotonic() + 30)
    cex, _ = sample_open_boxes(s, torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64),
                               0.0, seed=0)
    assert cex is None


@pytest.mark.slow
def test_acas_1_9_property_7_counterexample_found_and_confirmed():
    """Published sat; the witness lies in a sliver against a face of the region that gradient
    restarts miss and the late sampling of the open boxes finds (about 30 s here)."""
    model, p = _acas("1_9", 7)
    result = verifier.verify(model, p, timeout=116)
    assert result.verdict == "sat", result.reason
    _assert_confirmed(model, p, result)


@pytest.mark.parametrize("seed", [5, 6])
def test_refreshed_domain_bounds_hold_at_sampled_points_of_the_domain(make_onnx, seed):
    """Intermediate bounds recomputed under a domain's splits contain every pre-activation value at
    sampled inputs whose neurons take the split signs, and are never looser than the root's."""
    from verifier.bounds.crown import intermediate_bounds
    from verifier.bounds.linear import Region
    from verifier.engines import bab_relu
    from verifier.ir.evaluate import evaluate

    model = verifier.load_model(_random_relu_net(make_onnx, seed, n_in=3, hidden=12)).to(dtype=torch.float64)
    one = Region(-torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64))
    root = intermediate_bounds(model, one, BoundsConfig())
    relus = {n.name: n.inputs[0] for n in model.nodes if n.op == "Relu"}
    first_act, first_pre = next(iter(relus.items()))
    lo, hi = (t.reshape(-1) for t in root[first_pre])
    unstable = torch.nonzero((lo < 0) & (hi > 0)).flatten()[:2].tolist()
    assert len(unstable) == 2, "the random net should have unstable first-layer neurons"
    signs = [(a, b) for a in (1, -1) for b in (1, -1)]                     # four domains
    states = {act: torch.zeros(4, *root[pre][0].shape[1:], dtype=torch.int8) for act, pre in relus.items()}
    for d, (a, b) in enumerate(signs):
        flat = states[first_act].view(4, -1)
        flat[d, unstable[0]], flat[d, unstable[1]] = a, b
    prob = bab_relu._Problem(model, None, None, one, root, relus, None, 0, None)
    clamped = bab_relu._domain_bounds(prob, states)
    region = Region(one.lower.expand(4, 3), one.upper.expand(4, 3))
    refreshed, method = bab_relu._refreshed(prob, region, clamped, VerifyConfig(), time.monotonic() + 60)
    assert method == bab_relu.REFRESHED
    x = torch.rand(200_000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    values = {k: v.reshape(x.shape[0], -1) for k, v in evaluate(model, x.reshape(-1, 1, 3)).items()}
    z, tighter = values[first_pre], 0
    for d, (a, b) in enumerate(signs):
        inside = (a * z[:, unstable[0]] >= 0) & (b * z[:, unstable[1]] >= 0)
        assert int(inside.sum()) > 100
        for pre in relus.values():
            v = values[pre][inside]
            (rlo, rhi), (clo, chi) = ((t.reshape(4, -1)[d] for t in box) for box in (refreshed[pre], clamped[pre]))
            assert bool((v >= rlo - 1e-9).all() and (v <= rhi + 1e-9).all()), pre
            assert bool((rlo >= clo - 1e-12).all() and (rhi <= chi + 1e-12).all()), pre
            tighter += int(((rlo > clo + 1e-9) | (rhi < chi - 1e-9)).sum())
    assert tighter > 0, "the splits should tighten some later bound"


def test_domain_store_keeps_parents_multipliers_until_its_budget():
    """Open domains keep their α/β (bfloat16) for their children; the push that would pass the
    budget drops them all and says so, and the domains themselves are kept."""
    from verifier.engines.bab_relu import _Store

    def batch(n):
        states = {"r": torch.zeros(n, 4, dtype=torch.int8)}
        warm = {("alpha", "r"): torch.rand(n, 2, 4, dtype=torch.float64)}
        return states, torch.arange(n, dtype=torch.float64), torch.zeros(n, 2, dtype=torch.long), warm

    per_domain = 2 * 2 * 4                                  # bytes of one domain's α in bfloat16
    store = _Store(*batch(0)[:3], budget=5 * per_domain)
    states, score, choice, warm = batch(3)
    assert store.push(states, score, choice, warm)
    _, _, popped, kept = store.pop(2)
    assert popped.tolist() == [0.0, 1.0]
    expected = warm[("alpha", "r")][:2].to(torch.bfloat16)
    assert torch.equal(kept[("alpha", "r")], expected)
    assert store.push(*batch(4))                            # 1 + 4 domains: at the budget
    assert not store.push(*batch(1))                        # 6: past it
    assert store.warm is None and len(store) == 6
    assert store.push(*batch(2)) and store.warm is None     # stays cold
    assert store.pop(1)[3] is None


def test_warm_start_projects_parents_multipliers():
    """Children start from their parents' α (projected into [0, 1]) and β (>= 0); a parameter
    without a stored value, or of another shape, keeps its start."""
    from verifier.engines.bab_relu import _warm_started

    alphas = {"a": torch.full((2, 1, 3), 0.5), "b": torch.full((2, 1, 3), 0.5)}
    betas = {"p": torch.zeros(2, 1, 3)}
    warm = {("alpha", "a"): torch.tensor([[[-0.5, 0.25, 1.5]]]).expand(2, 1, 3),
            ("alpha", "b"): torch.ones(1, 1, 3),
            ("beta", "p"): torch.tensor([[[-1.0, 0.0, 3.0]]]).expand(2, 1, 3)}
    _warm_started(alphas, betas, warm)
    assert alphas["a"][0, 0].tolist() == [0.0, 0.25, 1.0]
    assert alphas["b"].eq(0.5).all()
    assert betas["p"][1, 0].tolist() == [0.0, 0.0, 3.0]


def test_relu_split_without_warm_start_proves_the_same():
    """The published unsat instance is proven with the α/β warm start and without it."""
    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"))
    prop = verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), model)
    for mb in (0, 1):
        result = verifier.verify(model, prop, timeout=60, bab=BabConfig(strategy="relu", warm_start_mb=mb),
                                 bounds=NO_LAYERS)
        assert result.verdict == "unsat", (mb, result.reason)


def test_contradictory_splits_are_found_empty_by_search_and_checker(make_onnx):
    """``h1 = x``, ``h2 = relu(h1) - 0.5`` on ``x ∈ [-1, 1]``: no input has ``h1 <= 0`` and
    ``h2 >= 0`` (dense sampling agrees), so that domain's refreshed bounds are empty, for the
    search and for the independent checker, and it holds vacuously; the feasible domains
    (``h1 >= 0``, either sign of ``h2``) are not called empty."""
    from verifier.bounds.crown import intermediate_bounds
    from verifier.bounds.linear import Region
    from verifier.engines import bab_relu
    from verifier.evidence import check_leaves as lv
    from verifier.evidence.check_bounds import SoundBounds
    from verifier.ir.onnx_import import load_onnx

    one = np.ones((1, 1), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"]), helper.make_node("Relu", ["h1"], ["a1"]),
             helper.make_node("Gemm", ["a1", "W1", "b2"], ["h2"]), helper.make_node("Relu", ["h2"], ["a2"]),
             helper.make_node("MatMul", ["a2", "W3"], ["y"])]
    path = make_onnx(nodes, [("x", [1, 1])], [("y", [1, 2])],
                     {"W1": one, "b1": np.zeros(1, np.float32), "b2": np.full(1, -0.5, np.float32),
                      "W3": np.array([[1.0, -1.0]], np.float32)}, name="contradiction")
    x = np.linspace(-1, 1, 100_001)
    assert not np.any((x <= 0) & (np.maximum(x, 0) - 0.5 >= 0))

    model = verifier.load_model(path).to(dtype=torch.float64)
    prop = parse_vnnlib_text(_threshold_property(1, 0.0))
    box = Region(-torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    root = intermediate_bounds(model, box, BoundsConfig())
    relus = {n.name: n.inputs[0] for n in model.nodes if n.op == "Relu"}
    (a1, p1), (a2, p2) = relus.items()
    signs = [(-1, 1), (1, 1), (1, -1)]                       # only the first is contradictory
    states = {a1: torch.tensor([[s[0]] for s in signs], dtype=torch.int8).reshape(3, 1, 1),
              a2: torch.tensor([[s[1]] for s in signs], dtype=torch.int8).reshape(3, 1, 1)}
    prob = bab_relu._Problem(model, None, None, box, root, relus, None, 0, None)
    region = Region(box.lower.expand(3, 1), box.upper.expand(3, 1))
    refreshed, method = bab_relu._refreshed(prob, region, bab_relu._domain_bounds(prob, states), VerifyConfig(),
                                            time.monotonic() + 60)
    assert method == bab_relu.REFRESHED
    assert bab_relu._empty(refreshed, 1e-6).tolist() == [True, False, False]

    sb = SoundBounds(load_onnx(path))
    case = prop.cases[0]
    sb_root = sb.intermediate(lv.case_inputs(sb, case))
    split_signs = {p1: np.array([[s[0]] for s in signs], np.int8), p2: np.array([[s[1]] for s in signs], np.int8)}
    scores = lv.split_scores(sb, case, sb_root, split_signs, {}, {}, 1e-6, refresh=True)
    assert scores[0] == np.inf and bool(torch.isfinite(scores[1:]).all())
