"""Shared test fixtures: paths, the benchmarks folder, small ONNX models built on the fly and
onnxruntime as the forward oracle.

The VNN-COMP benchmarks live outside the repository (``../shared/benchmarks`` next to the
checkout); tests that need them take the ``benchmarks`` fixture, which skips with a clear
message when the folder is absent.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
SPECS_DIR = ROOT / "specs"
BENCHMARKS_DIR = ROOT.parent / "shared" / "benchmarks"
SKIP_NO_BENCHMARKS = f"VNN-COMP benchmarks not found at {BENCHMARKS_DIR} (optional; tests needing them skip)"

Shape = Sequence[int | str | None]


def benchmark_path(*parts: str) -> Path:
    """A path under the benchmarks folder; skips the calling test when it does not exist."""
    path = BENCHMARKS_DIR.joinpath(*parts)
    if not BENCHMARKS_DIR.is_dir():
        pytest.skip(SKIP_NO_BENCHMARKS)
    if not path.exists():
        pytest.skip(f"benchmark file {path} not found")
    return path


@pytest.fixture(scope="session")
def benchmarks() -> Path:
    """The benchmarks folder (skips the test with a clear message when it is absent)."""
    if not BENCHMARKS_DIR.is_dir():
        pytest.skip(SKIP_NO_BENCHMARKS)
    return BENCHMARKS_DIR


def value_info(name: str, shape: Shape | None, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    """A float tensor value-info; ``shape=None`` leaves the shape undeclared (graph outputs
    then get it from shape inference in :func:`build_onnx`)."""
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def build_onnx(path: Path, nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, Shape]],
               outputs: Sequence[tuple[str, Shape | None]], initializers: Mapping[str, np.ndarray] | None = None,
               opset: int = 13, check: bool = True) -> Path:
    """Write a model made of ``nodes`` to ``path``.

    ``inputs``/``outputs`` are ``(name, shape)`` pairs (float32 tensors); ``initializers`` maps
    names to numpy arrays (kept in their dtype). ``check`` runs the ONNX checker first.
    """
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), "g", [value_info(n, s) for n, s in inputs],
                              [value_info(n, s) for n, s in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="verifier-tests")
    model.ir_version = 8
    if any(s is None for _, s in outputs):
        _infer_output_shapes(model)
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _infer_output_shapes(model: onnx.ModelProto) -> None:
    """Fill undeclared output shapes from ONNX shape inference (left as is where it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception:
        return
    known = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in model.graph.output:
        vi = known.get(out.name)
        if not out.type.tensor_type.HasField("shape") and vi is not None and vi.type.tensor_type.HasField("shape"):
            out.type.CopyFrom(vi.type)


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """Factory ``make_onnx(nodes, inputs, outputs, initializers=None, opset=13, name='m')``
    writing ``<tmp_path>/<name>.onnx`` (see :func:`build_onnx`)."""
    counter = iter(range(1_000_000))

    def make(nodes, inputs, outputs, initializers=None, opset: int = 13, name: str | None = None,
             check: bool = True) -> Path:
        path = tmp_path / f"{name or f'model{next(counter)}'}.onnx"
        return build_onnx(path, nodes, inputs, outputs, initializers, opset, check)

    return make


def ort_session(path: Path | str) -> ort.InferenceSession:
    """A single-threaded CPU onnxruntime session (quiet)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def declared_input_shape(session: ort.InferenceSession) -> list[int]:
    """The model input's declared shape with symbolic/unknown dimensions set to 1."""
    return [d if isinstance(d, int) and d > 0 else 1 for d in session.get_inputs()[0].shape]


def ort_forward(path: Path | str, x: np.ndarray) -> np.ndarray:
    """onnxruntime outputs, one sample at a time with the file's declared input shape.

    ``x``: ``(N, ...)`` with ``prod(...)`` = the input's element count → ``(N, n_outputs)``
    float64 (flattened first output).
    """
    sess = ort_session(path)
    shape = declared_input_shape(sess)
    name = sess.get_inputs()[0].name
    rows = [sess.run(None, {name: np.asarray(xi, np.float32).reshape(shape)})[0].reshape(-1) for xi in x]
    return np.stack(rows).astype(np.float64)


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """``max |ours - ref|`` relative to ``max |ref|`` (absolute when the reference is ~0)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != reference shape {ref.shape}"
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-6)
    return float(np.abs(ours - ref).max(initial=0.0)) / scale


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Run torch single-threaded, as the command line does by default: verification works on
    many small tensors, where extra threads on a shared 2-core machine only add contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
