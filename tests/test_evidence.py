"""Safety evidence: JSON reports, the independent checker and the human-readable reports.

Oracles: onnxruntime (counterexamples, witnesses), dense sampling and exact rational minima
(for the checker's own bounds), published verdicts (the benchmark instances), and tampering:
every kind of broken evidence must fail the check.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from conftest import MODELS_DIR, SPECS_DIR, benchmark_path, build_onnx, ort_forward
from verifier import api
from verifier.config import BoundsConfig, VerifyConfig
from verifier.evidence import check_leaves as lv
from verifier.evidence.check import check_report
from verifier.evidence.check_bounds import InputSet, SoundBounds
from verifier.evidence.report import (SCHEMA, build_report_reach, build_report_smoothing, load_report,
                                      sha256_file, sidecar_path, write_report, write_verify_report)
from verifier.evidence.render import render_files
from verifier.spec.robustness import robustness_property


# ---- making reports -------------------------------------------------------------------------
def make_report(folder: Path, name: str, model, spec=None, prop=None, timeout: float = 60.0,
                bounds: BoundsConfig | None = None) -> Path:
    """Verify ``model`` against ``spec`` (a file) or ``prop`` (embedded) and write the report."""
    graph = api.load_model(model)
    prop = prop if prop is not None else api.load_property(spec, graph)
    config = VerifyConfig(timeout=timeout, bounds=bounds or BoundsConfig())
    started = time.time()
    result = api.verify(graph, prop, config=config)
    path = folder / f"{name}.json"
    write_verify_report(path, result, model, spec, config, graph, prop, started, time.time())
    return path


def acas_report(folder: Path, name: str, net: str, prop: int) -> Path:
    """Report of ACAS Xu network ``net`` (e.g. ``"1_9"``) on property ``prop``."""
    return make_report(folder, name, benchmark_path("acasxu", "onnx", f"ACASXU_run2a_{net}_batch_2000.onnx"),
                       benchmark_path("acasxu", "vnnlib", f"prop_{prop}.vnnlib"))


def failed(path: Path, **kw) -> list[str]:
    """Names of the failing check items (empty: the report passes)."""
    out = check_report(str(path), **kw)
    assert out.items, "a check with no items"
    return [i.name for i in out.items if not i.ok]


def copy_report(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst_dir / src.name)
    if sidecar_path(src).exists():
        shutil.copy(sidecar_path(src), sidecar_path(dst_dir / src.name))
    return dst_dir / src.name


def edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def edit_sidecar(path: Path, fn) -> None:
    """Change the sidecar's arrays and record its new hash (so only the content is wrong)."""
    side = sidecar_path(path)
    with np.load(side) as z:
        arrays = {k: z[k] for k in z.files}
    fn(arrays)
    np.savez(side, **arrays)
    edit_json(path, lambda d: d["sidecar"].update(sha256=sha256_file(side)))


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """Reports built lazily, once per module: name → path."""
    folder = tmp_path_factory.mktemp("reports")
    cache: dict[str, Path] = {}
    x = np.load(MODELS_DIR / "digits_test.npz")
    makers = {
        "mlp_sat": lambda: make_report(folder, "mlp_sat", MODELS_DIR / "digits_mlp.onnx",
                                       SPECS_DIR / "digits_mlp_eps0.3_idx3.vnnlib"),
        "mlp_unsat": lambda: make_report(folder, "mlp_unsat", MODELS_DIR / "digits_mlp.onnx",
                                         SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"),
        "cnn_sat": lambda: make_report(folder, "cnn_sat", MODELS_DIR / "digits_cnn.onnx",
                                       SPECS_DIR / "digits_cnn_eps0.3_idx3.vnnlib"),
        "cnn_alpha": lambda: make_report(folder, "cnn_alpha", MODELS_DIR / "digits_cnn.onnx", prop=robustness_property(
            x["x"][5], 0.09, int(x["y"][5]), 10, lower=0.0, upper=1.0)),
        "test_sat": lambda: make_report(folder, "test_sat", benchmark_path("test_2022", "test_sat.onnx"),
                                        benchmark_path("test_2022", "test_prop.vnnlib")),
        "test_unsat": lambda: make_report(folder, "test_unsat", benchmark_path("test_2022", "test_unsat.onnx"),
                                          benchmark_path("test_2022", "test_prop.vnnlib")),
        "acas": lambda: acas_report(folder, "acas", "1_9", 1),
        "acas_deep": lambda: acas_report(folder, "acas_deep", "1_2", 3),
        "acas_mixed": lambda: acas_report(folder, "acas_mixed", "3_7", 1),  # CROWN and α leaves in one cover
        "acas_combined": lambda: acas_report(folder, "acas_combined", "1_1", 3),  # leaves closed by row weights
        "mnist": lambda: make_report(folder, "mnist", benchmark_path("mnist_fc_2022", "onnx", "mnist-net_256x2.onnx"),
                                     benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), timeout=120,
                                     bounds=BoundsConfig(layer_alpha_iterations=0)),  # a plain split tree
        # closed by α-CROWN once the intermediate layers are optimised (no branching)
        "mnist_layers": lambda: make_report(folder, "mnist_layers", benchmark_path("mnist_fc_2022", "onnx",
                                                                                   "mnist-net_256x2.onnx"),
                                            benchmark_path("mnist_fc_2022", "vnnlib", "prop_4_0.03.vnnlib"), timeout=120),
        # a split tree whose root bounds are the layer-optimised ones
        "mnist_layers_split": lambda: make_report(folder, "mnist_layers_split", benchmark_path(
            "mnist_fc_2022", "onnx", "mnist-net_256x4.onnx"), benchmark_path("mnist_fc_2022", "vnnlib",
                                                                              "prop_3_0.05.vnnlib"), timeout=120),
    }

    class Lazy(dict):
        def __missing__(self, key):
            cache[key] = makers[key]()
            self[key] = cache[key]
            return cache[key]

    return Lazy()


EXPECTED = {"mlp_sat": "sat", "mlp_unsat": "unsat", "cnn_sat": "sat", "cnn_alpha": "unsat", "test_sat": "sat",
            "test_unsat": "unsat", "acas": "unsat", "acas_deep": "unsat", "acas_mixed": "unsat",
            "acas_combined": "unsat",
            "mnist": "unsat", "mnist_layers": "unsat", "mnist_layers_split": "unsat"}
LEAF_KIND = {"mlp_unsat": "region", "cnn_alpha": "region", "test_unsat": "region", "acas": "box", "acas_deep": "box",
             "acas_mixed": "box", "acas_combined": "box", "mnist": "split", "mnist_layers": "region",
             "mnist_layers_split": "split"}


# ---- honest reports pass --------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXPECTED))
def test_honest_report_passes_check(reports, name):
    path = reports[name]
    report = load_report(path)
    assert report["schema"] == SCHEMA and report["verdict"] == EXPECTED[name]
    assert report["model"]["sha256"] == sha256_file(report["model"]["abspath"])
    assert report["settings"]["proof_margin"] > 0 and "bab" in report["settings"]
    assert failed(path) == []
    if EXPECTED[name] == "unsat":
        kinds = {g["kind"] for g in report["evidence"]["groups"]}
        assert kinds == {LEAF_KIND[name]}
    else:  # the witness, re-run here with onnxruntime: the recorded output is its output
        ev = report["evidence"]
        y = ort_forward(report["model"]["abspath"], np.array([ev["x"]]))[0]
        np.testing.assert_allclose(ev["y"], y, rtol=1e-6, atol=1e-6)


def test_alpha_leaf_records_slopes(reports):
    report = load_report(reports["cnn_alpha"])
    (group,) = report["evidence"]["groups"]
    assert group["method"] == "alpha-crown" and group["alpha"]
    assert report["property"]["kind"] == "embedded"  # a robustness query has no file


def test_box_leaves_closed_by_crown_and_by_alpha_check_together(reports):
    """Boxes closed by plain CROWN and boxes closed with recorded α slopes, in one cover: each
    is re-bounded with what it recorded."""
    report = load_report(reports["acas_mixed"])
    methods = {g["method"] for g in report["evidence"]["groups"]}
    assert methods == {"bab-input/crown", "bab-input/alpha-crown"}
    assert failed(reports["acas_mixed"]) == []


def _combined_group(path: Path) -> dict:
    report = load_report(path)
    return next(g for g in report["evidence"]["groups"] if g["method"] == "bab-input/crown-combined")


def test_boxes_closed_by_a_combination_of_rows_pass_check(reports):
    """Boxes where no single row of the conjunction is positive, closed by a weighted sum of
    the rows' linear bounds, are re-bounded by the checker with the recorded weights."""
    group = _combined_group(reports["acas_combined"])
    assert group["lambda"] == ["rows"] and group["count"] > 0
    with np.load(sidecar_path(reports["acas_combined"])) as z:
        lam = z[group["prefix"] + "lambda.0"]
    assert np.all(lam >= 0) and np.allclose(lam.sum(1), 1.0)
    assert failed(reports["acas_combined"]) == []


def test_row_weights_negative_or_moved_fail(reports, tmp_path):
    group = _combined_group(reports["acas_combined"])
    key = group["prefix"] + "lambda.0"
    negative = copy_report(reports["acas_combined"], tmp_path / "neg")
    edit_sidecar(negative, lambda a: a.__setitem__(key, -a[key]))
    assert any("well formed" in n for n in failed(negative))
    one_row = copy_report(reports["acas_combined"], tmp_path / "one")

    def to_first_row(a):  # all weight on one row: that row alone does not close these boxes
        lam = np.zeros_like(a[key])
        lam[:, 0] = 1.0
        a[key] = lam
    edit_sidecar(one_row, to_first_row)
    assert any("re-bounded above the margin" in n for n in failed(one_row))


# ---- tampering fails ------------------------------------------------------------------------
def _changed_model(src: str, dst: Path, scale: float) -> Path:
    model = onnx.load(src)
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    w.flat[0] = w.flat[0] * scale + 0.5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    return dst


def test_changed_weight_fails_hash(reports, tmp_path):
    path = reports["acas"]
    copy = _changed_model(load_report(path)["model"]["abspath"], tmp_path / "m.onnx", 1.0)
    assert "model SHA-256" in failed(path, model=str(copy))


def test_changed_model_with_matching_hash_fails_the_counterexample(reports, tmp_path):
    path = copy_report(reports["mlp_sat"], tmp_path / "r")
    model = onnx.load(str(MODELS_DIR / "digits_mlp.onnx"))
    bias = [t for t in model.graph.initializer if len(t.dims) == 1][-1]  # the output layer's bias
    b = numpy_helper.to_array(bias).copy()
    b[int(np.load(MODELS_DIR / "digits_test.npz")["y"][3])] += 1000.0  # the true label wins everywhere
    bias.CopyFrom(numpy_helper.from_array(b, bias.name))
    onnx.save(model, str(tmp_path / "m.onnx"))
    edit_json(path, lambda d: d["model"].update(abspath=str(tmp_path / "m.onnx"), path="m.onnx",
                                                sha256=sha256_file(tmp_path / "m.onnx")))
    assert "onnxruntime output violates the property (exact arithmetic)" in failed(path)


@pytest.mark.parametrize("name", ["mlp_unsat", "acas"])
def test_flipped_verdict_fails(reports, tmp_path, name):
    path = copy_report(reports[name], tmp_path / "r")
    edit_json(path, lambda d: d.update(verdict="sat"))
    assert {"verdict matches status", "sat verdict carries a counterexample"} <= set(failed(path))


def test_flipped_sat_verdict_fails(reports, tmp_path):
    path = copy_report(reports["mlp_sat"], tmp_path / "r")
    edit_json(path, lambda d: d.update(verdict="unsat", status="verified"))
    assert "unsat verdict carries a proof" in failed(path)


@pytest.mark.parametrize("name", ["acas", "mnist"])
def test_dropped_leaf_fails_coverage(reports, tmp_path, name):
    path = copy_report(reports[name], tmp_path / "r")
    report = load_report(path)
    groups = report["evidence"]["groups"]
    gi = max(range(len(groups)), key=lambda i: groups[i]["count"])  # the largest group of leaves
    g = groups[gi]
    p = g["prefix"]

    def drop(arrays):
        for k in list(arrays):
            if k.startswith(p):
                arrays[k] = arrays[k][1:]

    edit_sidecar(path, drop)
    edit_json(path, lambda d: d["evidence"]["groups"][gi].update(count=g["count"] - 1))
    assert [f for f in failed(path) if "covered" in f], "a dropped leaf must break coverage"


def test_counterexample_moved_out_of_the_box_fails(reports, tmp_path):
    path = copy_report(reports["test_sat"], tmp_path / "r")
    report = load_report(path)
    upper = api.load_property(report["property"]["abspath"]).cases[0].region.upper
    x = list(report["evidence"]["x"])
    x[0] = float(np.nextafter(np.float32(upper[0]), np.float32(np.inf)))  # one float32 step outside
    edit_json(path, lambda d: d["evidence"].update(x=x))
    assert "input in the region (float64, no tolerance)" in failed(path)


@pytest.mark.parametrize("name,kind", [("mnist", "beta"), ("cnn_alpha", "alpha")])
def test_changed_multiplier_fails_bound(reports, tmp_path, name, kind):
    path = copy_report(reports[name], tmp_path / "r")
    g = load_report(path)["evidence"]["groups"][0]
    assert g[kind], f"the {name} leaves carry {kind} multipliers"

    def spoil(arrays):
        for j in range(len(g[kind])):
            a = arrays[f"{g['prefix']}{kind}.{j}"]
            arrays[f"{g['prefix']}{kind}.{j}"] = (1.0 - a) if kind == "alpha" else a + 50.0

    edit_sidecar(path, spoil)
    bad = failed(path)
    assert bad and all("re-bounded above the margin" in f for f in bad), bad


@pytest.mark.parametrize("name", ["acas", "mlp_sat"])
def test_corrupted_sidecar_fails(reports, tmp_path, name):
    path = copy_report(reports[name], tmp_path / "r")
    side = sidecar_path(path)
    data = bytearray(side.read_bytes())
    data[len(data) // 2] ^= 0xFF
    side.write_bytes(bytes(data))
    assert "sidecar SHA-256" in failed(path)


def test_leaf_bounds_recorded_too_high_are_not_trusted(reports, tmp_path):
    """The recorded bounds are claims; a leaf box grown past what was proven fails its bound."""
    path = copy_report(reports["acas"], tmp_path / "r")
    g = load_report(path)["evidence"]["groups"][0]

    def grow(arrays):
        lo, hi = arrays[g["prefix"] + "lower"], arrays[g["prefix"] + "upper"]
        k = int(np.argmin(arrays[g["prefix"] + "bound"]))
        lo[k], hi[k] = lo.min(0), hi.max(0)  # one leaf now claims the whole region
        arrays[g["prefix"] + "bound"][:] = 10.0

    edit_sidecar(path, grow)
    assert [f for f in failed(path) if "re-bounded" in f]


# ---- the checker's own bounds against independent oracles ------------------------------------
@pytest.mark.parametrize("model", ["digits_mlp.onnx", "digits_cnn.onnx"])
def test_sound_bounds_below_sampled_outputs(model):
    graph = api.load_model(MODELS_DIR / model)
    sb = SoundBounds(graph)
    assert sb.self_test() == []
    gen = torch.Generator().manual_seed(1)
    c = torch.rand(3, graph.n_inputs, generator=gen, dtype=torch.float64)
    lo, hi = (c - 0.03).reshape(3, *graph.input_full_shape), (c + 0.03).reshape(3, *graph.input_full_shape)
    C = torch.randn(3, 4, graph.n_outputs, generator=gen, dtype=torch.float64)
    inputs = InputSet(lo, hi)
    bounds = sb.intermediate(inputs)
    alphas = {n.name: torch.rand(3, 4, *n.out_shape, generator=gen, dtype=torch.float64)
              for n in graph.nodes if n.op == "Relu"}
    xs = (lo.reshape(3, 1, -1) + torch.rand(3, 2000, graph.n_inputs, generator=gen, dtype=torch.float64)
          * (hi - lo).reshape(3, 1, -1)).float().double()
    ys = torch.as_tensor(ort_forward(MODELS_DIR / model, xs.reshape(-1, graph.n_inputs).numpy())).reshape(3, 2000, -1)
    sampled = torch.einsum("bro,bso->brs", C, ys).amin(-1)
    for lb in (sb.rows_lower(C, bounds, inputs), sb.rows_lower(C, bounds, inputs, alphas),
               sb.interval_rows_lower(C, bounds)):
        assert bool((lb <= sampled + 1e-4).all())  # onnxruntime computes in float32


def test_sound_bounds_through_max_pooling_below_sampled_outputs(tmp_path):
    rng = np.random.default_rng(3)
    h = onnx.helper
    nodes = [h.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["r"]),
             h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("Flatten", ["p"], ["f"]), h.make_node("Gemm", ["f", "V", "b"], ["y"])]
    inits = {"W": rng.normal(size=(3, 1, 3, 3)).astype(np.float32), "V": rng.normal(size=(48, 4)).astype(np.float32),
             "b": rng.normal(size=4).astype(np.float32)}
    path = build_onnx(tmp_path / "pool.onnx", nodes, [("x", [1, 1, 8, 8])], [("y", [1, 4])], inits)
    graph = api.load_model(path)
    sb = SoundBounds(graph)
    assert sb.self_test() == []
    c = torch.as_tensor(rng.random((2, 64)))
    lo, hi = (c - 0.1).reshape(2, 1, 1, 8, 8), (c + 0.1).reshape(2, 1, 1, 8, 8)
    C = torch.as_tensor(rng.normal(size=(2, 3, 4)))
    inputs = InputSet(lo, hi)
    lb = sb.rows_lower(C, sb.intermediate(inputs), inputs)
    xs = (lo.reshape(2, 1, -1) + torch.as_tensor(rng.random((2, 3000, 64))) * 0.2).float().double()
    ys = torch.as_tensor(ort_forward(path, xs.reshape(-1, 64).numpy())).reshape(2, 3000, 4)
    assert bool((lb <= torch.einsum("bro,bso->brs", C, ys).amin(-1) + 1e-4).all())


def test_split_bounds_below_sampled_points_in_the_split_domain():
    """Random splits and β >= 0: the bound holds for every sampled input satisfying the splits."""
    graph = api.load_model(MODELS_DIR / "digits_mlp.onnx")
    sb = SoundBounds(graph)
    g64 = graph.to(dtype=torch.float64)
    relus = [n for n in graph.nodes if n.op == "Relu"]
    gen = torch.Generator().manual_seed(2)
    c = torch.as_tensor(np.load(MODELS_DIR / "digits_test.npz")["x"][0], dtype=torch.float64).reshape(1, 64)
    C = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    case = _FakeCase(c - 0.1, c + 0.1, C)
    root = sb.intermediate(lv.case_inputs(sb, case))
    xs = c + 0.1 * torch.sign(torch.randn(20000, 64, generator=gen, dtype=torch.float64))  # box corners
    from verifier.ir.evaluate import evaluate

    values = evaluate(g64, xs.reshape(-1, *graph.input_full_shape))
    pre = relus[0].inputs[0]
    z = values[pre].reshape(len(xs), -1)
    frac = (z > 0).double().mean(0)  # neurons whose sign varies over the samples: split two of them
    unstable = torch.argsort((frac - 0.5).abs())[:2]
    assert bool(((frac[unstable] > 0.05) & (frac[unstable] < 0.95)).all())
    y_all = values[graph.output_name].reshape(len(xs), -1)
    for s0 in (1, -1):
        for s1 in (1, -1):
            signs = np.zeros((1, z.shape[1]), dtype=np.int8)
            signs[0, unstable[0]], signs[0, unstable[1]] = s0, s1
            keep = (z[:, unstable[0]] * s0 >= 0) & (z[:, unstable[1]] * s1 >= 0)
            beta = 3 * torch.rand(1, 4, *graph.shape_of(pre), generator=gen, dtype=torch.float64)
            score = lv.split_scores(sb, case, root, {pre: signs}, {}, {pre: beta.numpy()})
            assert keep.sum() > 10
            exact_min = (y_all[keep] @ C.T).amin(0).max()  # one disjunct with 4 rows: the best row
            assert float(score[0]) <= float(exact_min) + 1e-9


class _FakeCase:
    """One case with a single disjunct ``C y <= 0`` over a box."""

    def __init__(self, lo, hi, C):
        from verifier.spec.property import Conjunction, InputRegion

        self.region = InputRegion(lo.numpy().reshape(-1), hi.numpy().reshape(-1))
        self.unsafe = (Conjunction(C.numpy(), np.zeros(C.shape[0])),)


def test_rounding_cannot_lift_a_bound_above_the_exact_minimum(tmp_path):
    """A linear model with heavy cancellation: the bound stays below the exact rational minimum."""
    w = np.array([[1e8], [-1e8], [1.0], [3e-9], [-7.0]], dtype=np.float32)
    b = np.array([0.1], dtype=np.float32)
    path = build_onnx(tmp_path / "lin.onnx", [onnx.helper.make_node("Gemm", ["x", "W", "b"], ["y"])],
                      [("x", [1, 5])], [("y", [1, 1])], {"W": w, "b": b})
    sb = SoundBounds(api.load_model(path))
    lo = np.array([0.3, 0.3, -1.0, 0.0, 0.1])
    hi = np.array([0.3 + 2 ** -20, 0.3 + 2 ** -20, 1.0, 1.0, 0.2])
    inputs = InputSet(torch.as_tensor(lo).reshape(1, 1, 5), torch.as_tensor(hi).reshape(1, 1, 5))
    lb = sb.rows_lower(torch.ones(1, 1, 1, dtype=torch.float64), sb.intermediate(inputs), inputs)
    exact = Fraction(float(b[0])) + sum(min(Fraction(float(wi)) * Fraction(float(a)),
                                            Fraction(float(wi)) * Fraction(float(c)))
                                        for wi, a, c in zip(w[:, 0], lo, hi))
    assert Fraction(float(lb[0, 0])) <= exact
    assert float(exact) - float(lb[0, 0]) < 1e-3


# ---- coverage -------------------------------------------------------------------------------
def test_splits_cover_needs_every_sibling():
    a, b = ("r", 0), ("r", 1)
    assert lv.splits_cover([{a: 1}, {a: -1, b: 1}, {a: -1, b: -1}])[0]
    assert not lv.splits_cover([{a: 1}, {a: -1, b: 1}])[0]
    assert not lv.splits_cover([{a: 1, b: 1}, {a: -1, b: -1}])[0]
    assert lv.splits_cover([{}])[0]


# ---- smoothing and reach reports ------------------------------------------------------------
def test_smoothing_report_checks_and_tampering_fails(tmp_path):
    graph = api.load_model(MODELS_DIR / "digits_smooth.onnx")
    data = np.load(MODELS_DIR / "digits_test.npz")
    res = api.certify(graph, data["x"][0], 0.25, n0=50, n=2000, alpha=0.01, batch=500)
    assert res.prediction >= 0
    path = write_report(tmp_path / "s.json", *build_report_smoothing(MODELS_DIR / "digits_smooth.onnx", result=res,
                                                                    graph=graph))
    assert failed(path) == []
    render_files(str(path), str(tmp_path / "s.html"), str(tmp_path / "s.md"))
    edit_json(path, lambda d: d["smoothing"]["single"].update(radius=d["smoothing"]["single"]["radius"] * 1.5))
    assert "radius = sigma * inverse normal CDF(pA)" in failed(path)


def test_reach_report_witnesses_rerun(tmp_path):
    model = MODELS_DIR / "digits_mlp.onnx"
    graph = api.load_model(model)
    x = np.load(MODELS_DIR / "digits_test.npz")["x"][0].astype(np.float64)
    lo, hi = np.clip(x - 0.01, 0, 1), np.clip(x + 0.01, 0, 1)
    lb, ub = api.compute_bounds(graph, torch.as_tensor(lo).reshape(1, -1), torch.as_tensor(hi).reshape(1, -1),
                                method="ibp")
    w = ((lo + hi) / 2).astype(np.float32)
    y0 = float(ort_forward(model, w[None])[0, 0])
    end = {"lower": float(lb[0, 0]), "upper": float(ub[0, 0]), "witness": w, "witness_value": y0,
           "converged": False, "history": [(0.0, float(lb[0, 0]), y0), (1.0, float(lb[0, 0]) + 0.1, y0)]}
    reach = {"objective": "Y_0", "objective_kind": "max", "objective_C": np.eye(10)[:1], "objective_d": [0.0],
             "tolerance": 1e-3, "relative": False, "lower": lo, "upper": hi, "lipschitz": 1.0, "time": 1.0,
             "boxes": 1, "min": end, "max": dict(end, lower=y0, upper=float(ub[0, 0]))}
    path = write_report(tmp_path / "r.json", *build_report_reach(model, reach, graph))
    assert failed(path) == []
    render_files(str(path), str(tmp_path / "r.html"))
    edit_json(path, lambda d: d["reach"]["max"].update(upper=y0 - 1.0, lower=y0 - 2.0))
    assert "max witness value (onnxruntime) consistent with the range" in failed(path)


# ---- human reports --------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.external, self.stack_ok = [], [], [], True

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag == "script":
            self.external.append("script")


@pytest.mark.parametrize("name,min_imgs", [("acas", 2), ("mnist", 1), ("cnn_sat", 1), ("mlp_unsat", 0)])
def test_html_report_is_self_contained(reports, tmp_path, name, min_imgs):
    import base64

    html_path, md_path = tmp_path / f"{name}.html", tmp_path / f"{name}.md"
    render_files(str(reports[name]), str(html_path), str(md_path))
    page = _Page()
    page.feed(html_path.read_text())
    assert page.external == [] and "h1" in page.tags and "table" in page.tags
    assert len(page.imgs) >= min_imgs
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    md = md_path.read_text()
    assert md.startswith("# Safety report") and EXPECTED[name] in md


def test_html_opens_in_headless_chromium(reports, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH, so the page cannot be opened in a headless browser here; "
                    "test_html_report_is_self_contained still checks the page's structure")
    html_path = tmp_path / "acas.html"
    render_files(str(reports["acas"]), str(html_path))
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--enable-logging=stderr", "--v=0", "--dump-dom", html_path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "Safety report" in proc.stdout and proc.stdout.count("<img") >= 2
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []


# ---- command line ---------------------------------------------------------------------------
def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the ``verifier`` command in-process: (exit code, stdout, stderr)."""
    from verifier.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_verify_report_check_and_render(tmp_path, capsys):
    rep = tmp_path / "out" / "r.json"
    code, out, _ = _cli(capsys, "verify", str(MODELS_DIR / "digits_mlp.onnx"),
                        str(SPECS_DIR / "digits_mlp_eps0.01_idx1.vnnlib"), "--report", str(rep), "--quiet")
    assert code == 0 and out.splitlines()[0] == "unsat"
    assert rep.is_file() and sidecar_path(rep).is_file()
    code, out, _ = _cli(capsys, "check", str(rep), "--json", str(tmp_path / "c.json"))
    assert code == 0 and "OK:" in out and "ratio" in out
    assert json.loads((tmp_path / "c.json").read_text())["ok"] is True
    code, _, _ = _cli(capsys, "report", str(rep), "--html", str(tmp_path / "r.html"), "--md", str(tmp_path / "r.md"))
    assert code == 0 and (tmp_path / "r.html").stat().st_size > 1000
    edit_json(rep, lambda d: d.update(verdict="sat"))
    code, out, _ = _cli(capsys, "check", str(rep))
    assert code == 1 and "FAIL" in out
    code, _, err = _cli(capsys, "check", str(tmp_path / "missing.json"))
    assert code == 3 and "input error" in err
    code, _, err = _cli(capsys, "report", str(rep))
    assert code == 3 and "--html" in err


def test_cli_exit_code_in_a_subprocess(reports, tmp_path):
    path = copy_report(reports["mlp_sat"], tmp_path / "r")
    edit_json(path, lambda d: d["evidence"].update(x=d["evidence"]["x"][:-1]))  # one input value short
    bad = subprocess.run([sys.executable, "-m", "verifier.cli", "check", str(path)], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_bench_writes_one_report_per_row(tmp_path):
    p = subprocess.run([sys.executable, "-m", "verifier.cli", "bench", str(SPECS_DIR), "--limit", "2", "--reports",
                        str(tmp_path / "reps"), "--results", str(tmp_path / "b.csv"), "--quiet"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    made = sorted(f.name for f in (tmp_path / "reps").glob("*.json"))
    assert made == ["models_digits_mlp__digits_mlp_eps0.01_idx0.json",
                    "models_digits_mlp__digits_mlp_eps0.01_idx1.json"]
    for f in made:
        assert failed(tmp_path / "reps" / f) == []


def test_milp_closed_boxes_are_redecided_by_check(make_onnx, tmp_path):
    """Input-split boxes handed to the exact MILP are recorded as such and decided again by
    `check`; the rest of the cover is re-bounded as usual."""
    from test_bab import _random_relu_net, _threshold_property

    from verifier.config import BabConfig
    from verifier.spec.vnnlib import parse_vnnlib_text

    path = _random_relu_net(make_onnx, 2)
    graph = api.load_model(path)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 41)] * 3), -1).reshape(-1, 3).astype(np.float32)
    y = ort_forward(path, grid)
    prop = parse_vnnlib_text(_threshold_property(3, float((y[:, 0] - y[:, 1]).max()) + 0.05))
    config = VerifyConfig(timeout=30, bab=BabConfig(strategy="input", milp_after=0.0))
    started = time.time()
    result = api.verify(graph, prop, config=config)
    assert result.verdict == "unsat", result.reason
    report = tmp_path / "milp.json"
    write_verify_report(report, result, path, None, config, graph, prop, started, time.time())
    methods = {g["method"] for g in load_report(report)["evidence"]["groups"]}
    assert "bab-input/milp" in methods
    out = check_report(str(report))
    assert [i.name for i in out.items if not i.ok] == []
    assert any("re-decided by exact MILP" in i.name for i in out.items)


def test_box_leaves_record_bisection_paths_and_bad_paths_fail(reports, tmp_path):
    """Each input-split box records the halvings that produced it: replaying them from the
    region's box gives exactly the leaf; a path naming a non-existent input fails the check."""
    path = reports["acas"]
    report = load_report(path)
    (group,) = [g for g in report["evidence"]["groups"] if g.get("path")][:1]
    with np.load(sidecar_path(path)) as z:
        paths, lows, highs = z[group["prefix"] + "path"], z[group["prefix"] + "lower"], z[group["prefix"] + "upper"]
    prop = api.load_property(report["property"]["abspath"])
    region = prop.cases[group["case"]].region
    for dims, lo_leaf, hi_leaf in zip(paths[:20], lows[:20], highs[:20]):
        lo, hi = np.array(region.lower, dtype=np.float64), np.array(region.upper, dtype=np.float64)
        for j in dims[dims >= 0]:
            mid = (lo[j] + hi[j]) / 2
            if lo_leaf[j] >= mid:
                lo[j] = mid
            else:
                hi[j] = mid
        np.testing.assert_array_equal(lo, lo_leaf)
        np.testing.assert_array_equal(hi, hi_leaf)
    bad = copy_report(path, tmp_path / "bad")
    edit_sidecar(bad, lambda a: a.__setitem__(group["prefix"] + "path", np.full_like(paths, 7)))
    assert any("well formed" in name for name in failed(bad))


# ---- intermediate bounds optimised layer by layer ------------------------------------------
@pytest.mark.parametrize("name", ["mnist_layers", "mnist_layers_split"])
def test_layer_slopes_are_recorded_and_needed(reports, tmp_path, name):
    """Proofs that rest on layer-optimised intermediate bounds record the slopes; the checker
    recomputes those bounds from them, and without them the same leaves no longer check."""
    report = load_report(reports[name])
    (entry,) = report["evidence"]["intermediate"]
    assert entry["case"] == 0 and entry["values"]
    items = {i.name: i.ok for i in check_report(str(reports[name])).items}
    assert items["intermediate-layer slopes well formed"] is True
    stripped = copy_report(reports[name], tmp_path / "stripped")
    edit_json(stripped, lambda d: d["evidence"].pop("intermediate"))
    assert any("re-bounded above the margin" in item for item in failed(stripped))


def test_split_leaves_bounded_under_their_splits_are_rechecked_so(reports, tmp_path):
    """ReLU-split leaves whose intermediate bounds were recomputed under their splits say so
    (method ``...+refresh``) and the checker recomputes them; read as leaves bounded from the
    root's clamped bounds, the same multipliers no longer close them all."""
    path = reports["mnist_layers_split"]
    methods = {g["method"] for g in load_report(path)["evidence"]["groups"]}
    assert methods == {"bab-relu/beta-crown+refresh"}
    relabelled = copy_report(path, tmp_path / "relabelled")
    edit_json(relabelled, lambda d: [g.update(method="bab-relu/beta-crown") for g in d["evidence"]["groups"]])
    assert any("re-bounded above the margin" in item for item in failed(relabelled))


def test_malformed_layer_slopes_fail_cleanly(reports, tmp_path):
    """Neuron indices out of range are reported as a failed item, not a crash."""
    bad = copy_report(reports["mnist_layers"], tmp_path / "bad")
    prefix = load_report(bad)["evidence"]["intermediate"][0]["values"][0]["prefix"]
    edit_sidecar(bad, lambda a: a.__setitem__(prefix + "rows", a[prefix + "rows"] + 10_000))
    assert "intermediate-layer slopes well formed" in failed(bad)
