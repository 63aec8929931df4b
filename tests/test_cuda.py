"""The CUDA paths: bounds, verification, evidence, smoothing and reachability on a GPU.

Oracles: onnxruntime (outputs at sampled points, counterexamples), the same computation on
the CPU (float64 bounds agree to rounding), published verdicts, the independent checker and
the smoothed linear classifier's closed-form radius. Every test skips on a machine without
CUDA, where the rest of the suite covers the same engines on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import verifier
from conftest import MODELS_DIR, SPECS_DIR, benchmark_path, ort_forward
from test_bab import NO_LAYERS, _acas, _assert_confirmed
from verifier.config import BabConfig, VerifyConfig
from verifier.evidence.check import check_report
from verifier.evidence.report import write_verify_report

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: these tests run the GPU paths only; the same engines and oracles "
           "are covered on the CPU by the rest of the suite")


def _boxes(model, eps: float, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` L∞ boxes of radius ``eps`` around shipped test digits, clipped to [0, 1]."""
    x = np.load(MODELS_DIR / "digits_test.npz")["x"][seed:seed + count].astype(np.float64)
    lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
    shape = (count, *model.input_shape)
    return torch.as_tensor(lo).reshape(shape), torch.as_tensor(hi).reshape(shape)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_bounds_on_cuda_agree_with_cpu_and_contain_onnxruntime_outputs(name):
    path = MODELS_DIR / f"{name}.onnx"
    cpu = verifier.load_model(path).to(dtype=torch.float64)
    gpu = cpu.to(device="cuda")
    lo, hi = _boxes(cpu, 0.02, 6)
    rng = np.random.default_rng(0)
    points = lo.numpy()[:, None] + rng.uniform(size=(6, 200, *lo.shape[1:])) * (hi - lo).numpy()[:, None]
    outputs = ort_forward(path, points.reshape(6 * 200, -1)).reshape(6, 200, -1)
    for method in ("crown", "alpha-crown"):
        lb_gpu, ub_gpu = (t.cpu().numpy() for t in verifier.compute_bounds(gpu, lo, hi, method=method))
        assert np.all(outputs >= lb_gpu[:, None] - 1e-5) and np.all(outputs <= ub_gpu[:, None] + 1e-5), method
        if method == "crown":
            lb_cpu, ub_cpu = (t.numpy() for t in verifier.compute_bounds(cpu, lo, hi, method=method))
            scale = max(1.0, float(np.abs(lb_cpu).max()), float(np.abs(ub_cpu).max()))
            assert np.abs(lb_gpu - lb_cpu).max() <= 1e-9 * scale and np.abs(ub_gpu - ub_cpu).max() <= 1e-9 * scale
            crown = (lb_gpu, ub_gpu)
    assert np.all(lb_gpu >= crown[0] - 1e-9) and np.all(ub_gpu <= crown[1] + 1e-9), "α-CROWN looser than CROWN"


def test_batched_bounds_on_cuda_equal_one_box_at_a_time():
    model = verifier.load_model(MODELS_DIR / "digits_mlp.onnx").to(device="cuda", dtype=torch.float64)
    lo, hi = _boxes(model, 0.03, 64)
    lb, ub = verifier.compute_bounds(model, lo, hi, method="crown")
    for i in (0, 17, 63):
        lb1, ub1 = verifier.compute_bounds(model, lo[i:i + 1], hi[i:i + 1], method="crown")
        assert torch.allclose(lb[i:i + 1], lb1, rtol=0, atol=1e-9) and torch.allclose(ub[i:i + 1], ub1, rtol=0, atol=1e-9)


def _mnist(net: str, prop: str):
    model = verifier.load_model(benchmark_path("mnist_fc_2022", "onnx", f"mnist-net_{net}.onnx"))
    return model, verifier.load_property(benchmark_path("mnist_fc_2022", "vnnlib", f"prop_{prop}.vnnlib"), model)


@pytest.mark.parametrize("load,args,settings,published", [
    (_acas, ("1_9", 1), {}, "unsat"),                                   # input split
    (_acas, ("1_2", 2), {}, "sat"),
    (_mnist, ("256x2", "4_0.03"), dict(bab=BabConfig(strategy="relu"), bounds=NO_LAYERS), "unsat"),  # ReLU split
    (_mnist, ("256x2", "2_0.03"), {}, "sat"),
    (_mnist, ("256x2", "4_0.03"), {}, "unsat"),                         # layer-optimised bounds first
])
def test_verify_on_cuda_gives_the_published_verdict(load, args, settings, published):
    model, prop = load(*args)
    result = verifier.verify(model, prop, timeout=60, device="cuda", **settings)
    assert result.verdict == published, result.reason
    if published == "sat":
        _assert_confirmed(model, prop, result)


def test_report_written_on_cuda_passes_the_independent_check(tmp_path):
    import time

    model_path, spec_path = MODELS_DIR / "digits_cnn.onnx", SPECS_DIR / "digits_cnn_eps0.01_idx0.vnnlib"
    graph = verifier.load_model(model_path)
    prop = verifier.load_property(spec_path, graph)
    config = VerifyConfig(timeout=60, device="cuda")
    started = time.time()
    result = verifier.verify(graph, prop, config=config)
    cpu = verifier.verify(graph, prop, timeout=60)
    assert result.verdict == cpu.verdict
    report = tmp_path / "cuda.json"
    write_verify_report(report, result, model_path, spec_path, config, graph, prop, started, time.time())
    out = check_report(str(report))
    assert out.items and all(i.ok for i in out.items), [i.name for i in out.items if not i.ok]


def _linear_classifier(tmp_path, w: np.ndarray, b: float):
    from test_smoothing import linear_classifier

    return verifier.load_model(linear_classifier(tmp_path / "lin.onnx", w, b))


def test_certify_on_cuda_respects_the_closed_form_and_is_reproducible(tmp_path):
    w = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    sigma = 0.5
    b = float(np.float32(sigma * np.linalg.norm(w.astype(np.float64))))
    model = _linear_classifier(tmp_path, w, b)
    x = np.zeros(4, np.float32)
    exact = abs(b) / float(np.linalg.norm(w.astype(np.float64)))
    radii = []
    for seed in range(10):
        r = verifier.certify(model, x, sigma, n=100_000, alpha=0.001, batch=50_000, seed=seed, device="cuda")
        assert r.prediction == 1
        radii.append(r.radius)
    # P(radius > exact) <= 0.001 per seed: two of ten exceeding has probability < 5e-5.
    assert sum(r > exact for r in radii) <= 1 and min(radii) >= 0.9 * exact
    again = verifier.certify(model, x, sigma, n=100_000, alpha=0.001, batch=50_000, seed=3, device="cuda")
    assert again.radius == radii[3]


def test_certify_on_cuda_abstains_on_the_hyperplane(tmp_path):
    model = _linear_classifier(tmp_path, np.array([0.5, -1.0, 2.0, 0.25], np.float32), 0.0)
    r = verifier.certify(model, np.zeros(4, np.float32), 0.5, n=20_000, alpha=0.001, batch=20_000, seed=0,
                         device="cuda")
    assert r.prediction == -1


def test_reach_on_cuda_contains_sampled_values():
    path = MODELS_DIR / "digits_mlp.onnx"
    model = verifier.load_model(path)
    x0 = np.load(MODELS_DIR / "digits_test.npz")["x"][3].astype(np.float64)
    lo, hi = np.clip(x0 - 0.004, 0, 1), np.clip(x0 + 0.004, 0, 1)
    res = verifier.reach(model, lo.reshape(model.input_shape), hi.reshape(model.input_shape), "Y_3 - Y_5",
                         tolerance=1e-3, timeout=10, device="cuda")
    rng = np.random.default_rng(0)
    y = ort_forward(path, (lo + rng.uniform(size=(500, 64)) * (hi - lo)).astype(np.float32))
    values = y[:, 3] - y[:, 5]
    assert res.min.lower <= values.min() + 1e-5 and res.max.upper >= values.max() - 1e-5


def test_certify_on_cuda_votes_agree_with_onnxruntime():
    """The classes counted on the GPU (indices tallied in bulk) are onnxruntime's classes of
    the same noisy inputs, drawn again from a generator with the same seed and batch sizes."""
    path = MODELS_DIR / "digits_smooth.onnx"
    model = verifier.load_model(path).to(device="cuda")
    x = torch.as_tensor(np.load(MODELS_DIR / "digits_test.npz")["x"][2], dtype=torch.float32, device="cuda")
    from verifier.engines.smoothing_sampling import sample_counts

    gen = torch.Generator(device="cuda").manual_seed(11)
    counts, drawn = sample_counts(model, x, 0.5, [3000], 1000, gen)
    gen = torch.Generator(device="cuda").manual_seed(11)
    noisy = torch.cat([torch.empty(1000, 64, device="cuda").normal_(0.0, 0.5, generator=gen) + x for _ in range(3)])
    classes = ort_forward(path, noisy.cpu().numpy()).argmax(axis=1)
    assert drawn == [3000]
    agree = np.bincount(classes, minlength=10)
    assert np.abs(counts[0].cpu().numpy() - agree).sum() <= 6   # float32 ties: a handful at most
