"""Randomized smoothing: closed forms on linear classifiers, onnxruntime votes, the CLI."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import beta, norm

from verifier import api
from verifier.cli import main
from verifier.engines import smoothing
from verifier.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SMOOTH = ROOT / "models" / "digits_smooth.onnx"
DATA = ROOT / "models" / "digits_test.npz"
SIGMA = 0.5
W = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)


def linear_classifier(path: Path, w: np.ndarray, b: float) -> Path:
    """ONNX model x (1, d) -> logits [0, w·x + b]: class 1 exactly when w·x + b > 0."""
    d = len(w)
    weight = np.zeros((d, 2), np.float32)
    weight[:, 1] = w
    bias = np.array([0.0, b], np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["logits"])]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, d])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
                              initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def exact_radius(x: np.ndarray, b: float) -> float:
    """Distance to the hyperplane w·x + b = 0: the smoothed linear classifier's exact radius."""
    w64 = W.astype(np.float64)
    return abs(float(w64 @ x.astype(np.float64)) + float(np.float32(b))) / float(np.linalg.norm(w64))


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A linear model whose bias puts x = 0 at distance SIGMA from the hyperplane (pA = Φ(1))."""
    b = float(np.float32(SIGMA * np.linalg.norm(W.astype(np.float64))))
    path = linear_classifier(tmp_path_factory.mktemp("lin") / "lin.onnx", W, b)
    return api.load_model(path), b


@pytest.fixture(scope="module")
def through_origin(tmp_path_factory):
    return api.load_model(linear_classifier(tmp_path_factory.mktemp("lin0") / "lin0.onnx", W, 0.0))


def test_radius_never_exceeds_the_exact_one_and_is_tight(linear):
    model, b = linear
    x = np.zeros(len(W), np.float32)
    exact = exact_radius(x, b)
    assert exact == pytest.approx(SIGMA, rel=1e-6)
    radii = []
    for seed in range(50):
        r = api.certify(model, x, SIGMA, n0=100, n=100_000, alpha=0.001, batch=50_000, seed=seed)
        assert r.prediction == 1
        radii.append(r.radius)
    radii = np.array(radii)
    # P(radius > exact) <= alpha = 0.001 per seed; 3 or more of 50 has probability < 3e-5.
    assert int((radii > exact).sum()) <= 2
    assert radii.min() >= 0.9 * exact


def test_exceedance_frequency_is_within_alpha(linear):
    """With a large alpha the failure frequency is measurable: it must stay <= alpha (a point
    estimate instead of a lower bound would exceed about half the time)."""
    model, b = linear
    x = np.full(len(W), 0.1, np.float32)
    exact = exact_radius(x, b)
    alpha, seeds = 0.1, 300
    over = sum(api.certify(model, x, SIGMA, n0=50, n=1000, alpha=alpha, batch=1000, seed=1000 + s).radius > exact
               for s in range(seeds))
    assert over / seeds <= alpha + 3.5 * np.sqrt(alpha * (1 - alpha) / seeds)


def test_cap_when_every_sample_agrees(linear):
    model, b = linear
    n, alpha = 100_000, 0.001
    x = (W / np.linalg.norm(W) * 20 * SIGMA).astype(np.float32)   # 20 sigma away: no sample flips
    r = api.certify(model, x, SIGMA, n=n, alpha=alpha, batch=25_000, seed=3)
    assert r.prediction == 1 and int(r.counts[1]) == n and int(r.counts[0]) == 0
    assert r.pA_lower == pytest.approx(alpha ** (1.0 / n), rel=1e-12)
    assert r.radius == pytest.approx(SIGMA * norm.ppf(alpha ** (1.0 / n)), rel=1e-9)
    assert r.radius < exact_radius(x, b)


def test_class_zero_side_and_certificate(linear):
    model, b = linear
    x = (-W / np.linalg.norm(W) * 2.0 * SIGMA).astype(np.float32)   # margin -1 sigma·‖w‖
    exact = exact_radius(x, b)
    r = api.certify(model, x, SIGMA, n=100_000, batch=25_000, seed=11)
    assert r.prediction == 0 and 0.9 * exact <= r.radius <= exact
    k = int(r.counts[0])
    assert r.pA_lower == pytest.approx(beta.ppf(0.001, k, 100_000 - k + 1), rel=1e-9)
    cert = r.certificate
    assert cert.kind == "probabilistic" and cert.method == "randomized smoothing"
    for key, value in (("n0", 100), ("n", 100_000), ("alpha", 0.001), ("sigma", SIGMA)):
        assert cert.data[key] == value
    assert cert.data["confidence"] == pytest.approx(0.999)
    assert "smoothed classifier g" in cert.data["classifier"] and "not the network f" in cert.data["classifier"]


def test_abstains_on_the_hyperplane(through_origin):
    x = np.zeros(len(W), np.float32)
    for seed in range(5):
        r = api.certify(through_origin, x, SIGMA, n=20_000, batch=20_000, seed=seed)
        assert r.prediction == -1 and r.radius == 0.0 and r.pA_lower < 0.5
        assert r.certificate.kind == "probabilistic" and r.certificate.data["prediction"] == -1
        p = api.predict(through_origin, x, SIGMA, n=20_000, alpha=0.001, batch=20_000, seed=seed)
        assert p.prediction == -1 and p.p_value > 0.001


def test_predict_far_from_the_hyperplane(through_origin):
    x = (W / np.linalg.norm(W) * 0.5 * SIGMA).astype(np.float32)   # P(class 1) = Φ(0.5) ≈ 0.69
    p = api.predict(through_origin, x, SIGMA, n=20_000, alpha=0.001, batch=20_000, seed=1)
    assert p.prediction == 1 and p.p_value < 1e-10 and p.counts.sum() == 20_000


@pytest.mark.parametrize("kwargs", [dict(sigma=0.0), dict(sigma=-1.0), dict(alpha=0.0), dict(alpha=1.0),
                                    dict(n0=0), dict(n=0), dict(batch=0), dict(x=np.zeros(5, np.float32)),
                                    dict(x=np.full(4, np.nan, np.float32))])
def test_bad_arguments_are_input_errors(through_origin, kwargs):
    args = dict(x=np.zeros(len(W), np.float32), sigma=SIGMA, n=10)
    args.update(kwargs)
    with pytest.raises(InputError):
        api.certify(through_origin, args.pop("x"), args.pop("sigma"), **args)


def test_deadline_gives_an_abstention(through_origin):
    x = (W / np.linalg.norm(W) * 20 * SIGMA).astype(np.float32)
    r = api.certify(through_origin, x, SIGMA, n=100_000, batch=100, timeout=0.0)
    assert r.prediction == -1 and r.radius == 0.0 and "timeout" in r.reason


@pytest.mark.parametrize("fold", [False, True])
def test_overlap_does_not_change_the_counts(fold):
    """Noise on a second thread draws the same noise in the same order: same counts per seed
    (a determinism test of two code paths; the oracles for the counts are elsewhere)."""
    model = api.load_model(SMOOTH)
    x = np.load(DATA)["x"][1]
    for seed in (0, 5):
        a = smoothing.certify(model, x, 0.5, n0=70, n=2_500, batch=300, seed=seed, overlap=True, fold=fold)
        b = smoothing.certify(model, x, 0.5, n0=70, n=2_500, batch=300, seed=seed, overlap=False, fold=fold)
        assert a.stats["overlap"] and not b.stats["overlap"] and a.stats["fold"] == b.stats["fold"] == fold
        assert np.array_equal(a.selection_counts, b.selection_counts) and np.array_equal(a.counts, b.counts)
        assert (a.prediction, a.radius, a.pA_lower) == (b.prediction, b.radius, b.pA_lower)
        p = smoothing.predict(model, x, 0.5, n=1_234, batch=500, seed=seed, overlap=True, fold=fold)
        q = smoothing.predict(model, x, 0.5, n=1_234, batch=500, seed=seed, overlap=False, fold=fold)
        assert np.array_equal(p.counts, q.counts) and p.counts.sum() == 1_234


def test_overlap_deadline_gives_an_abstention(through_origin):
    x = (W / np.linalg.norm(W) * 20 * SIGMA).astype(np.float32)
    r = smoothing.certify(through_origin, x, SIGMA, n=100_000, batch=100, timeout=0.0, overlap=True)
    assert r.prediction == -1 and "timeout" in r.reason and r.stats["samples"] < 100_100


@pytest.mark.parametrize("margin", [0.0, 0.3, 1.0])
def test_folded_noise_has_the_closed_form_law(through_origin, margin):
    """Folding the first Linear (4 -> 2, rank 1) into the noise: P(class 1) must still be
    Φ(w·x / (sigma ‖w‖)), the exact law of the linear classifier under input noise."""
    assert smoothing.foldable(through_origin)
    x = (W / np.linalg.norm(W) * margin * SIGMA).astype(np.float32)
    n = 200_000
    r = smoothing.certify(through_origin, x, SIGMA, n0=10, n=n, batch=50_000, seed=21, fold=True)
    assert r.stats["fold"] and r.counts.sum() == n
    p = norm.cdf(margin)
    assert abs(int(r.counts[1]) - n * p) <= 5 * np.sqrt(n * p * (1 - p))


def test_folded_noise_agrees_with_onnxruntime_in_law():
    """digits_smooth (first layer Linear 64 -> 32): class frequencies of the folded sampler
    against onnxruntime's votes on input-space noise (independent samples), chi-square test."""
    from scipy.stats import chi2_contingency

    model = api.load_model(SMOOTH)
    x = np.load(DATA)["x"][3]
    n = 4_000
    r = smoothing.predict(model, x, 0.5, n=n, batch=1_000, seed=3, fold=True)
    assert r.stats["fold"]
    votes = ort_counts(x, 0.5, [n], torch.Generator().manual_seed(4))
    table = np.array([r.counts, votes])
    table = table[:, table.sum(axis=0) > 0]
    assert chi2_contingency(table).pvalue > 1e-4


# ---- digits_smooth against onnxruntime on the same noise ------------------------------------------

def ort_counts(x: np.ndarray, sigma: float, sizes: list[int], gen: torch.Generator) -> np.ndarray:
    """Class counts of onnxruntime's argmax on x + noise, the noise regenerated by the documented
    protocol (one generator, batches of the given sizes, ``normal_(0, sigma)`` then ``+ x``)."""
    sess = ort.InferenceSession(str(SMOOTH), providers=["CPUExecutionProvider"])
    counts = np.zeros(10, np.int64)
    for m in sizes:
        noisy = (torch.empty(m, 64).normal_(0.0, sigma, generator=gen) + torch.from_numpy(x)).numpy()
        for row in noisy:
            counts[int(sess.run(None, {"x": row.reshape(1, 64).astype(np.float32)})[0].argmax())] += 1
    return counts


def test_digits_smooth_agrees_with_onnxruntime_votes():
    model = api.load_model(SMOOTH)
    x = np.load(DATA)["x"][0]
    r = api.certify(model, x, 0.25, n0=64, n=300, alpha=0.001, batch=128, seed=7)
    gen = torch.Generator().manual_seed(7)
    sel = ort_counts(x, 0.25, [64], gen)
    est = ort_counts(x, 0.25, [128, 128, 44], gen)
    assert np.abs(sel - r.selection_counts).sum() <= 2 and np.abs(est - r.counts).sum() <= 2
    top = int(np.argmax(sel))
    assert r.prediction == (top if beta.ppf(0.001, est[top], 300 - est[top] + 1) >= 0.5 else -1)
    assert r.prediction == int(np.load(DATA)["y"][0])
    p = api.predict(model, x, 0.25, n=300, alpha=0.001, batch=128, seed=5)
    votes = ort_counts(x, 0.25, [128, 128, 44], torch.Generator().manual_seed(5))
    assert p.prediction == int(np.argmax(votes)) and np.abs(votes - p.counts).sum() <= 2


# ---- the CLI ------------------------------------------------------------------------------------

def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def certify_cli(*args: str) -> int:
    return main(["certify", str(SMOOTH), "--sigma", "0.25", "--n0", "32", "--n", "400", "--quiet", *args])


def test_cli_rows_resume_plot_and_reproducibility(tmp_path, capsys):
    d = np.load(DATA)
    data = tmp_path / "six.npz"
    np.savez(data, x=d["x"][:6], y=d["y"][:6])
    out, png = tmp_path / "rows.csv", tmp_path / "acc.png"
    assert certify_cli("--data", str(data), "--limit", "4", "--results", str(out), "--plot", str(png)) == 0
    first = read_rows(out)
    assert [int(r["index"]) for r in first] == [0, 1, 2, 3]
    for r in first:
        assert int(r["label"]) == int(d["y"][int(r["index"])])
        assert r["correct"] == str(int(r["prediction"] == r["label"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "average certified radius" in capsys.readouterr().out
    with open(out, "a") as f:
        f.write("4,9,9,0.3")                        # a row torn by a crash mid-write
    assert certify_cli("--data", str(data), "--results", str(out), "--resume") == 0
    resumed = read_rows(out)
    assert [int(r["index"]) for r in resumed] == [0, 1, 2, 3, 4, 5]
    assert resumed[:4] == first
    again = tmp_path / "again.csv"
    assert certify_cli("--data", str(data), "--results", str(again)) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(read_rows(again)) == strip(resumed)
    other = tmp_path / "other.csv"
    assert certify_cli("--data", str(data), "--results", str(other), "--seed", "1") == 0
    assert [r["pA_lower"] for r in read_rows(other)] != [r["pA_lower"] for r in resumed]


def test_cli_single_input(tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.load(DATA)["x"][2].reshape(1, 64))
    assert certify_cli("--input", str(x)) == 0
    text = capsys.readouterr().out
    assert "prediction: 5" in text and "radius (l2):" in text and "probabilistic" in text


def _bad_files(tmp: Path) -> dict[str, Path]:
    np.savez(tmp / "no_y.npz", x=np.zeros((3, 64), np.float32))
    np.savez(tmp / "wide.npz", x=np.zeros((3, 65), np.float32), y=np.zeros(3, np.int64))
    np.save(tmp / "short.npy", np.zeros(10, np.float32))
    (tmp / "junk.npz").write_text("not an archive")
    return {p.name: p for p in tmp.iterdir()}


@pytest.mark.parametrize("args", [["--data", "missing.npz"], ["--data", "no_y.npz"], ["--data", "wide.npz"],
                                  ["--data", "junk.npz"], ["--input", "short.npy"], [],
                                  ["--input", "short.npy", "--sigma", "-1"], ["--input", "short.npy", "--alpha", "1.5"],
                                  ["--input", "short.npy", "--n0", "0"], ["--input", "short.npy", "--n", "0"]])
def test_cli_bad_inputs_are_one_line_input_errors(tmp_path, capsys, args):
    files = _bad_files(tmp_path)
    args = [str(files.get(a, a)) if a.endswith((".npz", ".npy")) else a for a in args]
    assert certify_cli(*args) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("verifier: input error:") and "\n" not in err


def test_cli_resume_refuses_rows_of_other_settings(tmp_path, capsys):
    data = tmp_path / "two.npz"
    d = np.load(DATA)
    np.savez(data, x=d["x"][:2], y=d["y"][:2])
    out = tmp_path / "rows.csv"
    assert certify_cli("--data", str(data), "--results", str(out)) == 0
    assert main(["certify", str(SMOOTH), "--data", str(data), "--sigma", "0.5", "--n", "400", "--quiet",
                 "--results", str(out), "--resume"]) == 3
    assert "other settings" in capsys.readouterr().err


def test_bench_script_runs():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "verifier.engines.smoothing_bench", "--model", str(SMOOTH), "--n", "2000",
           "--n0", "10", "--repeats", "1", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ratio certify/forward" in out.stdout
