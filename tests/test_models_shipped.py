"""Checks on the shipped digits models (models/) and example properties (specs/)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models"
SPEC_DIR = ROOT / "specs"
N_INPUTS = 64

MODELS = {
    "digits_mlp": ([1, 64], 0.95),
    "digits_cnn": ([1, 1, 8, 8], 0.95),
    "digits_smooth": ([1, 64], 0.90),
}

NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
UPPER_RE = re.compile(r"\(assert\s+\(<=\s+X_(\d+)\s+" + NUM + r"\s*\)\s*\)")
LOWER_RE = re.compile(r"\(assert\s+\(>=\s+X_(\d+)\s+" + NUM + r"\s*\)\s*\)")
NAME_RE = re.compile(r"^(digits_\w+?)_eps([0-9.]+)_idx(\d+)$")

VNNLIB_FILES = sorted(SPEC_DIR.glob("*.vnnlib"))


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray]:
    """The shipped test split (images (N, 64) in [0, 1], int labels)."""
    data = np.load(MODEL_DIR / "digits_test.npz")
    return data["x"], data["y"]


def test_test_split_format(test_split: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = test_split
    assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == N_INPUTS
    assert y.dtype == np.int64 and y.shape == (x.shape[0],)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_accuracy(name: str, test_split: tuple[np.ndarray, np.ndarray]) -> None:
    shape, min_acc = MODELS[name]
    x, y = test_split
    sess = ort.InferenceSession(str(MODEL_DIR / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert inp.name == "x" and list(inp.shape) == shape
    assert out.name == "logits" and list(out.shape) == [1, 10]
    preds = np.array([sess.run(None, {"x": xi.reshape(shape)})[0].argmax() for xi in x])
    acc = float(np.mean(preds == y))
    assert acc >= min_acc, f"{name}: accuracy {acc:.4f} < {min_acc}"


def parse_bounds(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of X_0..X_63 from the simple per-input bound asserts."""
    lb = np.full(N_INPUTS, np.nan)
    ub = np.full(N_INPUTS, np.nan)
    for regex, arr in ((LOWER_RE, lb), (UPPER_RE, ub)):
        for idx, value in regex.findall(text):
            assert np.isnan(arr[int(idx)]), f"X_{idx} bounded twice"
            arr[int(idx)] = float(value)
    return lb, ub


def test_specs_exist() -> None:
    assert len(VNNLIB_FILES) >= 10


@pytest.mark.parametrize("path", VNNLIB_FILES, ids=lambda p: p.name)
def test_vnnlib_bounds_contain_image(path: Path, test_split: tuple[np.ndarray, np.ndarray]) -> None:
    match = NAME_RE.match(path.stem)
    assert match, f"unexpected file name {path.name}"
    eps, index = float(match.group(2)), int(match.group(3))
    x, y = test_split
    text = path.read_text()
    for i in range(N_INPUTS):
        assert f"(declare-const X_{i} Real)" in text
    assert f"(declare-const X_{N_INPUTS} Real)" not in text
    for j in range(10):
        assert f"(declare-const Y_{j} Real)" in text
    label = int(y[index])
    for j in range(10):
        assert (f"(and (>= Y_{j} Y_{label}))" in text) == (j != label)
    lb, ub = parse_bounds(text)
    assert not np.isnan(lb).any() and not np.isnan(ub).any(), "every input needs both bounds"
    image = x[index].astype(np.float64)
    assert np.all(lb >= 0.0) and np.all(ub <= 1.0)
    assert np.all(lb <= image) and np.all(image <= ub)
    assert np.all(ub - lb <= 2 * eps + 1e-12)


def test_sat_counterexamples_valid(test_split: tuple[np.ndarray, np.ndarray]) -> None:
    """Each stored counterexample lies in its property's box and beats the true label in onnxruntime."""
    _, y = test_split
    cexs = np.load(SPEC_DIR / "counterexamples.npz")
    assert len(cexs.files) >= 4
    for stem in cexs.files:
        match = NAME_RE.match(stem)
        assert match
        model, index = match.group(1), int(match.group(3))
        lb, ub = parse_bounds((SPEC_DIR / f"{stem}.vnnlib").read_text())
        point = cexs[stem]
        assert point.dtype == np.float32
        assert np.all(point.astype(np.float64) >= lb) and np.all(point.astype(np.float64) <= ub)
        shape = MODELS[model][0]
        sess = ort.InferenceSession(str(MODEL_DIR / f"{model}.onnx"), providers=["CPUExecutionProvider"])
        logits = sess.run(None, {"x": point.reshape(shape)})[0].reshape(-1)
        label = int(y[index])
        assert np.max(np.delete(logits, label)) >= logits[label]


def test_instances_csv() -> None:
    with open(SPEC_DIR / "instances.csv", newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    assert len(rows) == len(VNNLIB_FILES)
    listed = set()
    for onnx_rel, vnnlib_rel, timeout in rows:
        assert (SPEC_DIR / onnx_rel).is_file(), onnx_rel
        assert (SPEC_DIR / vnnlib_rel).is_file(), vnnlib_rel
        assert float(timeout) > 0
        listed.add((SPEC_DIR / vnnlib_rel).resolve())
    assert listed == {p.resolve() for p in VNNLIB_FILES}
