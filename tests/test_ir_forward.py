"""The IR's forward pass against onnxruntime (the independent oracle).

Every ONNX file of the shipped models and of the VNN-COMP benchmarks, and a hand-built graph
for every ONNX op the importer lowers (several attribute variants each, opsets 13 and 17 and
older attribute spellings), is run on random inputs by onnxruntime one sample at a time with
the file's declared input shape, and by our :class:`Graph` on the whole batch. The float64
graph is compared with a float64 copy of the ONNX model, run by onnxruntime or, where it has
no float64 kernel (Conv, pooling), by the onnx reference evaluator.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from conftest import (BENCHMARKS_DIR, MODELS_DIR, benchmark_path, declared_input_shape, ort_forward,
                      relative_error)
from verifier import api

TOL32 = 1e-5    # max relative error (relative to max |output|) in float32
TOL64 = 1e-9    # float64 graph against the float64 copy of the model (onnxruntime or onnx reference)


def _model_files() -> list[str]:
    """Shipped models and every benchmark ONNX file, as ids relative to their root."""
    ids = [f"models/{p.name}" for p in sorted(MODELS_DIR.glob("*.onnx"))]
    if BENCHMARKS_DIR.is_dir():
        ids += [f"bench/{p.relative_to(BENCHMARKS_DIR)}" for p in sorted(BENCHMARKS_DIR.rglob("*.onnx"))]
    else:
        ids.append("bench/<absent>")
    return ids


def _resolve(file_id: str) -> Path:
    root, rest = file_id.split("/", 1)
    return MODELS_DIR / rest if root == "models" else benchmark_path(rest)


def _inputs(graph, n: int, seed: int) -> np.ndarray:
    """Random inputs ``(n, *input_shape)`` float32 in [-1, 1] (covers normalised and raw nets)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, *graph.input_shape)).astype(np.float32)


def _as_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in float64: float initializers, constants, declared
    types and casts to float become double."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64), a.t.name))
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
    return m


def float64_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of the float64 copy of the model, by onnxruntime where it has float64 kernels
    for every op, else by the onnx reference evaluator: ``(N, n_outputs)``."""
    model = _as_float64(onnx.load(str(path)))
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        name, shape = sess.get_inputs()[0].name, declared_input_shape(sess)
        run = lambda xi: sess.run(None, {name: xi})[0]  # noqa: E731
    except Exception:  # onnxruntime lacks a float64 kernel (Conv, pooling)
        evaluator = ReferenceEvaluator(model)
        name = model.graph.input[0].name
        dims = model.graph.input[0].type.tensor_type.shape.dim
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
        run = lambda xi: evaluator.run(None, {name: xi})[0]  # noqa: E731
    return np.stack([np.asarray(run(np.asarray(xi, np.float64).reshape(shape))).reshape(-1) for xi in x])


@pytest.mark.parametrize("file_id", _model_files())
def test_model_file_forward_matches_onnxruntime(file_id: str) -> None:
    path = _resolve(file_id)
    graph = api.load_model(path)
    x = _inputs(graph, 5, seed=len(file_id))
    ref = ort_forward(path, x)
    ours = graph(torch.from_numpy(x)).reshape(5, -1).numpy()
    assert ours.dtype == np.float32
    assert relative_error(ours, ref) <= TOL32, f"{file_id}: float32 forward differs from onnxruntime"
    ref64 = float64_reference(path, x)
    ours64 = graph.to(dtype=torch.float64)(torch.from_numpy(x).double()).reshape(5, -1).numpy()
    assert ours64.dtype == np.float64
    assert relative_error(ours64, ref64) <= TOL64, f"{file_id}: float64 forward differs from the reference"


@pytest.mark.parametrize("file_id", [f for f in _model_files() if "ACASXU" not in f or "_1_1_" in f])
def test_batch_size_does_not_change_results(file_id: str) -> None:
    path = _resolve(file_id)
    graph = api.load_model(path)
    x = torch.from_numpy(_inputs(graph, 17, seed=7))
    batch = graph(x).reshape(17, -1)
    singles = torch.cat([graph(x[i:i + 1]).reshape(1, -1) for i in range(17)])
    assert relative_error(batch.numpy(), singles.numpy()) <= TOL32
    g64, x64 = graph.to(dtype=torch.float64), x.double()
    singles64 = torch.cat([g64(x64[i:i + 1]).reshape(1, -1) for i in range(17)])
    assert relative_error(g64(x64).reshape(17, -1).numpy(), singles64.numpy()) <= 1e-12
    flat = graph.forward_flat(x.reshape(17, -1))
    assert flat.shape == (17, graph.n_outputs)
    assert torch.equal(flat, batch)


# ---- hand-built graphs, one or a few ONNX nodes each ------------------------------------

@dataclass
class Spec:
    """A small ONNX graph with one input ``x`` and one output ``y``."""

    nodes: list
    in_shape: tuple
    out_shape: tuple | None = None
    inits: dict = field(default_factory=dict)
    opset: int | None = None  # None: run at opsets 13 and 17


def n(op: str, inputs: list[str], outputs: list[str] | None = None, **attrs):
    return helper.make_node(op, inputs, outputs or ["y"], **attrs)


def w(*shape: int, seed: int = 0, positive: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed + 31 * len(shape) + sum(shape))
    arr = rng.normal(size=shape)
    return (np.abs(arr) + 0.5 if positive else arr).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _gemm_and_matmul() -> dict[str, Spec]:
    return {
        "gemm": Spec([n("Gemm", ["x", "W", "b"])], (1, 4), None, {"W": w(4, 3), "b": w(3)}),
        "gemm_transB_alpha_beta": Spec([n("Gemm", ["x", "W", "b"], transB=1, alpha=0.7, beta=1.3)],
                                       (1, 4), None, {"W": w(3, 4), "b": w(1, 3)}),
        "gemm_transA": Spec([n("Gemm", ["x", "W"], transA=1, alpha=-2.0)], (4, 1), None, {"W": w(4, 3)}),
        "gemm_no_bias_beta": Spec([n("Gemm", ["x", "W", "b"], beta=0.0)], (1, 4), None,
                                  {"W": w(4, 2), "b": w(2)}),
        "matmul_var_const": Spec([n("MatMul", ["x", "W"])], (1, 2, 5), None, {"W": w(5, 3)}),
        "matmul_const_var": Spec([n("MatMul", ["W", "x"])], (1, 5, 2), None, {"W": w(3, 5)}),
        "matmul_1d_var_const": Spec([n("MatMul", ["x", "W"])], (5,), None, {"W": w(5, 3)}),
        "matmul_1d_const_var": Spec([n("MatMul", ["W", "x"])], (5,), None, {"W": w(3, 5)}),
    }


def _binary() -> dict[str, Spec]:
    c4, c31 = w(4, seed=1), w(3, 1, seed=2)
    pos = w(3, 1, seed=3, positive=True)
    out: dict[str, Spec] = {}
    for op in ("Add", "Sub", "Mul", "Div"):
        out[f"{op}_var_const_broadcast"] = Spec([n(op, ["x", "c"])], (1, 3, 4), None, {"c": c4})
        out[f"{op}_var_const_column"] = Spec([n(op, ["x", "c"])], (1, 3, 4), None,
                                             {"c": pos if op == "Div" else c31})
        if op != "Div":
            out[f"{op}_const_var"] = Spec([n(op, ["c", "x"])], (1, 3, 4), None, {"c": c31})
        # two variables, the second broadcast along the last axis
        denom = [n("Sigmoid", ["r"], ["s"]), n("Add", ["s", "half"], ["v"])] if op == "Div" else \
            [n("Tanh", ["r"], ["v"])]
        out[f"{op}_var_var_broadcast"] = Spec(
            [n("ReduceSum", ["x", "ax"], ["r"], keepdims=1), *denom, n(op, ["x", "v"])],
            (1, 3, 4), None, {"ax": i64(2), "half": np.float32(0.5)})
        out[f"{op}_var_var_same"] = Spec([n("Relu", ["x"], ["a"]), n("Exp", ["x"], ["b"]), n(op, ["a", "b"])],
                                        (1, 2, 3))
    return out


def _elementwise() -> dict[str, Spec]:
    out = {op: Spec([n(op, ["x"])], (1, 3, 5)) for op in ("Neg", "Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Exp")}
    out["LeakyRelu"] = Spec([n("LeakyRelu", ["x"], alpha=0.2)], (1, 3, 5))
    out["LeakyRelu_default_alpha"] = Spec([n("LeakyRelu", ["x"])], (1, 6))
    out["Clip_attrs_opset10"] = Spec([n("Clip", ["x"], min=-0.4, max=0.7)], (1, 8), opset=10)
    out["Clip_inputs"] = Spec([n("Clip", ["x", "lo", "hi"])], (1, 8), None,
                              {"lo": np.float32(-0.3), "hi": np.float32(0.6)})
    out["Clip_only_max"] = Spec([n("Clip", ["x", "", "hi"])], (1, 8), None, {"hi": np.float32(0.2)})
    out["Clip_only_min"] = Spec([n("Clip", ["x", "lo"])], (1, 8), None, {"lo": np.float32(-0.2)})
    out["Softmax_opset13_last"] = Spec([n("Softmax", ["x"])], (2, 3, 4))
    out["Softmax_opset13_axis1"] = Spec([n("Softmax", ["x"], axis=1)], (2, 3, 4))
    out["Softmax_opset11_axis1"] = Spec([n("Softmax", ["x"], axis=1)], (2, 3, 4), opset=11)
    out["Softmax_opset11_default"] = Spec([n("Softmax", ["x"])], (2, 3, 4), opset=11)
    out["Softmax_opset11_axis2"] = Spec([n("Softmax", ["x"], axis=2)], (2, 3, 4), opset=11)
    return out


def _conv() -> dict[str, Spec]:
    return {
        "Conv_basic_bias": Spec([n("Conv", ["x", "W", "b"])], (1, 2, 6, 6), None, {"W": w(3, 2, 3, 3), "b": w(3)}),
        "Conv_groups_dilation_stride": Spec([n("Conv", ["x", "W"], group=2, dilations=[2, 1], strides=[2, 2])],
                                            (1, 4, 9, 8), None, {"W": w(6, 2, 3, 2)}),
        "Conv_asymmetric_pads": Spec([n("Conv", ["x", "W", "b"], pads=[1, 0, 2, 1], strides=[1, 2])],
                                     (1, 2, 7, 7), None, {"W": w(3, 2, 3, 3), "b": w(3)}),
        "Conv_auto_pad_same_upper": Spec([n("Conv", ["x", "W"], auto_pad="SAME_UPPER", strides=[2, 2])],
                                         (1, 2, 7, 6), None, {"W": w(2, 2, 4, 3)}),
        "Conv_auto_pad_same_lower": Spec([n("Conv", ["x", "W"], auto_pad="SAME_LOWER")],
                                         (1, 1, 5, 5), None, {"W": w(2, 1, 2, 2)}),
        "Conv_1d": Spec([n("Conv", ["x", "W", "b"], pads=[1, 1])], (1, 2, 9), None, {"W": w(3, 2, 3), "b": w(3)}),
        "ConvTranspose_stride": Spec([n("ConvTranspose", ["x", "W", "b"], strides=[2, 2])], (1, 2, 4, 4), None,
                                     {"W": w(2, 3, 3, 3), "b": w(3)}),
        "ConvTranspose_pads_output_padding": Spec(
            [n("ConvTranspose", ["x", "W"], strides=[2, 3], pads=[1, 0, 1, 2], output_padding=[1, 2])],
            (1, 2, 4, 5), None, {"W": w(2, 2, 3, 4)}),
        "ConvTranspose_groups": Spec([n("ConvTranspose", ["x", "W"], group=2, strides=[2, 2])], (1, 4, 3, 3),
                                     None, {"W": w(4, 1, 2, 2)}),
        "BatchNormalization": Spec([n("BatchNormalization", ["x", "s", "bb", "m", "v"], epsilon=1e-3)],
                                   (1, 3, 4, 4), None,
                                   {"s": w(3), "bb": w(3, seed=5), "m": w(3, seed=6), "v": w(3, positive=True)}),
    }


def _pooling() -> dict[str, Spec]:
    out = {}
    for cip in (0, 1):
        out[f"AveragePool_pads_cip{cip}"] = Spec(
            [n("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
               count_include_pad=cip)], (1, 2, 7, 6))
        out[f"AveragePool_ceil_cip{cip}"] = Spec(
            [n("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1, pads=[0, 1, 1, 0],
               count_include_pad=cip)], (1, 2, 8, 7))
    out["AveragePool_plain"] = Spec([n("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], (1, 3, 6, 6))
    out["MaxPool_plain"] = Spec([n("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], (1, 3, 6, 6))
    out["MaxPool_pads"] = Spec([n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2])],
                               (1, 2, 7, 6))
    out["MaxPool_ceil"] = Spec([n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
                               (1, 2, 8, 8))
    out["MaxPool_dilation"] = Spec([n("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])],
                                   (1, 2, 7, 7))
    out["MaxPool_1d"] = Spec([n("MaxPool", ["x"], kernel_shape=[3], strides=[2])], (1, 2, 9))
    out["GlobalAveragePool"] = Spec([n("GlobalAveragePool", ["x"])], (1, 3, 4, 5))
    return out


def _shape_ops() -> dict[str, Spec]:
    return {
        "Flatten_axis1": Spec([n("Flatten", ["x"])], (1, 2, 3, 4)),
        "Flatten_axis2": Spec([n("Flatten", ["x"], axis=2)], (1, 2, 3, 4)),
        "Flatten_axis0": Spec([n("Flatten", ["x"], axis=0)], (1, 2, 3)),
        "Reshape_zero_minus1": Spec([n("Reshape", ["x", "s"])], (1, 2, 3, 4), None, {"s": i64(0, -1, 2)}),
        "Transpose": Spec([n("Transpose", ["x"], perm=[0, 2, 3, 1])], (1, 2, 3, 4)),
        "Transpose_default_reverse": Spec([n("Transpose", ["x"])], (2, 3, 4)),
        "Squeeze_input_axes": Spec([n("Squeeze", ["x", "a"])], (1, 3, 1, 4), None, {"a": i64(2)}),
        "Squeeze_attr_opset11": Spec([n("Squeeze", ["x"], axes=[-2])], (1, 3, 1, 4), opset=11),
        "Unsqueeze_input_axes": Spec([n("Unsqueeze", ["x", "a"])], (1, 3, 4), None, {"a": i64(1, -1)}),
        "Unsqueeze_attr_opset11": Spec([n("Unsqueeze", ["x"], axes=[2])], (1, 3, 4), opset=11),
        "Concat": Spec([n("Relu", ["x"], ["a"]), n("Neg", ["x"], ["b"]), n("Concat", ["a", "x", "b"], axis=-1)],
                       (1, 3, 2)),
        "Slice_negative_steps_axes": Spec([n("Slice", ["x", "st", "en", "ax", "sp"])], (1, 4, 6), None,
                                          {"st": i64(-1, 1), "en": i64(-100, 5), "ax": i64(2, 1), "sp": i64(-2, 2)}),
        "Slice_defaults": Spec([n("Slice", ["x", "st", "en"])], (1, 4, 6), None,
                               {"st": i64(0, 1, 2), "en": i64(1, 3, 9)}),
        "Slice_attrs_opset9": Spec([n("Slice", ["x"], starts=[1], ends=[3], axes=[2])], (1, 4, 6), opset=9),
        "Split_sizes_input": Spec([n("Split", ["x", "sp"], ["a", "b"], axis=2), n("Sub", ["a", "b"])], (1, 2, 6),
                                  None, {"sp": i64(5, 1)}),
        "Split_equal": Spec([n("Split", ["x"], ["a", "b", "c"], axis=1), n("Add", ["a", "c"], ["t"]),
                             n("Mul", ["t", "b"])], (1, 6, 2)),
        "Split_attr_opset11": Spec([n("Split", ["x"], ["a", "b"], axis=-1, split=[1, 3]), n("Flatten", ["b"])],
                                   (1, 2, 4), opset=11),
        "Gather_scalar": Spec([n("Gather", ["x", "i"], axis=1)], (1, 4, 3), None, {"i": np.asarray(2, np.int64)}),
        "Gather_2d_negative": Spec([n("Gather", ["x", "i"], axis=2)], (1, 4, 3), None,
                                   {"i": np.asarray([[0, -1], [1, 1]], np.int64)}),
        "Pad_constant_value": Spec([n("Pad", ["x", "p", "v"])], (1, 2, 3, 3), None,
                                   {"p": i64(0, 0, 1, 2, 0, 1, 0, 1), "v": np.float32(0.75)}),
        "Pad_default_zero": Spec([n("Pad", ["x", "p"])], (1, 2, 3), None, {"p": i64(0, 1, 0, 0, 0, 2)}),
        "Pad_attrs_opset10": Spec([n("Pad", ["x"], pads=[0, 0, 2, 0, 0, 1], value=-1.5)], (1, 2, 3), opset=10),
        "ReduceSum_keepdims": Spec([n("ReduceSum", ["x", "a"], keepdims=1)], (1, 3, 4, 2), None, {"a": i64(1, -1)}),
        "ReduceSum_drop": Spec([n("ReduceSum", ["x", "a"], keepdims=0)], (1, 3, 4), None, {"a": i64(2)}),
        "ReduceSum_attr_opset11": Spec([n("ReduceSum", ["x"], axes=[1], keepdims=0)], (1, 3, 4), opset=11),
        "ReduceMean_keepdims1": Spec([n("ReduceMean", ["x"], axes=[2, 3], keepdims=1)], (1, 3, 4, 2)),
        "ReduceMean_keepdims0": Spec([n("ReduceMean", ["x"], axes=[-1], keepdims=0)], (1, 3, 4)),
    }


def _misc() -> dict[str, Spec]:
    const_w = helper.make_tensor("cw", TensorProto.FLOAT, [4, 2], w(4, 2, seed=9).reshape(-1).tolist())
    return {
        "Identity_Dropout_Cast": Spec([n("Identity", ["x"], ["a"]), n("Dropout", ["a"], ["b"]),
                                       n("Cast", ["b"], ["c"], to=TensorProto.FLOAT), n("Relu", ["c"])], (1, 5)),
        "Cast_double_roundtrip": Spec([n("Cast", ["x"], ["a"], to=TensorProto.DOUBLE), n("Relu", ["a"], ["b"]),
                                       n("Cast", ["b"], to=TensorProto.FLOAT)], (1, 5)),
        "Constant_weight": Spec([n("Constant", [], ["cw"], value=const_w), n("MatMul", ["x", "cw"])], (1, 4)),
        "Constant_folded_arith": Spec([n("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [2],
                                                                                         [2.0, -3.0])),
                                       n("Mul", ["k", "k"], ["k2"]), n("Add", ["x", "k2"])], (1, 2)),
        "Shape_chain_reshape": Spec([n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "zero"], ["b"], axis=0),
                                     n("Unsqueeze", ["b", "ax0"], ["b1"]), n("Concat", ["b1", "m1"], ["tgt"], axis=0),
                                     n("Reshape", ["x", "tgt"])], (1, 2, 3, 4), (1, 24),
                                    {"zero": np.asarray(0, np.int64), "ax0": i64(0), "m1": i64(-1)}),
        "Shape_chain_opset11": Spec([n("Shape", ["x"], ["sh"]), n("Gather", ["sh", "one"], ["c"], axis=0),
                                     n("Unsqueeze", ["c"], ["c1"], axes=[0]),
                                     n("Concat", ["one1", "c1", "m1"], ["t"], axis=0),
                                     n("Reshape", ["x", "t"])], (1, 2, 3, 4), (1, 2, 12),
                                    {"one": np.asarray(1, np.int64), "one1": i64(1), "m1": i64(-1)}, opset=11),
    }


def all_specs() -> dict[str, Spec]:
    return {**_gemm_and_matmul(), **_binary(), **_elementwise(), **_conv(), **_pooling(), **_shape_ops(), **_misc()}


SPECS = all_specs()
PARAMS = [(name, op) for name, s in SPECS.items() for op in ((s.opset,) if s.opset else (13, 17))]
IDS = [f"{a}-op{b}" for a, b in PARAMS]

KNOWN_BUGS: dict = {}
KNOWN_BUGS_F64: dict = {}


def _params(bugs: dict) -> list:
    return [pytest.param(name, op, id=i, marks=bugs.get(name, [])) for (name, op), i in zip(PARAMS, IDS)]


def _build(make_onnx: Callable, name: str, opset: int) -> tuple[Path, np.ndarray]:
    """The case's model file and 4 random inputs ``(4, *in_shape)`` float32."""
    spec = SPECS[name]
    path = make_onnx(spec.nodes, [("x", spec.in_shape)], [("y", spec.out_shape)], spec.inits, opset=opset, name=name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return path, (2.0 * rng.normal(size=(4, *spec.in_shape))).astype(np.float32)


@pytest.mark.parametrize("name,opset", _params(KNOWN_BUGS))
def test_hand_built_graph_matches_onnxruntime(name: str, opset: int, make_onnx: Callable) -> None:
    path, x = _build(make_onnx, name, opset)
    graph = api.load_model(path)
    ref = ort_forward(path, x)
    ours = graph.forward_flat(torch.from_numpy(x).reshape(4, -1))
    assert tuple(ours.shape) == ref.shape, f"{name}: output size {ours.shape[1]} != onnxruntime's {ref.shape[1]}"
    assert relative_error(ours.numpy(), ref) <= TOL32


@pytest.mark.parametrize("name,opset", _params(KNOWN_BUGS_F64))
def test_hand_built_graph_float64(name: str, opset: int, make_onnx: Callable) -> None:
    """Against the float64 copy of the model; where neither onnxruntime nor the onnx reference
    evaluator can run it in float64, against float32 onnxruntime at the float32 tolerance."""
    path, x = _build(make_onnx, name, opset)
    graph = api.load_model(path).to(dtype=torch.float64)
    ours = graph.forward_flat(torch.from_numpy(x).double().reshape(4, -1))
    assert ours.dtype == torch.float64
    try:
        ref, tol = float64_reference(path, x), TOL64
    except Exception:  # e.g. the onnx reference ConvTranspose with groups
        ref, tol = ort_forward(path, x), TOL32
    assert relative_error(ours.numpy(), ref) <= tol


def test_every_lowering_rule_has_a_forward_case() -> None:
    """A new ONNX spelling in the importer must come with a hand-built case above."""
    from verifier.ir.lowering import RULES

    covered = {node.op_type for s in SPECS.values() for node in s.nodes}
    missing = sorted(set(RULES) - covered)
    assert not missing, f"ONNX ops lowered by the importer without a forward test here: {missing}"


def test_shape_arithmetic_is_folded_away(make_onnx: Callable) -> None:
    """Static Shape→Gather→Unsqueeze→Concat chains leave only the Reshape itself."""
    spec = SPECS["Shape_chain_reshape"]
    path = make_onnx(spec.nodes, [("x", spec.in_shape)], [("y", spec.out_shape)], spec.inits)
    graph = api.load_model(path)
    assert [node.op for node in graph.nodes] == ["Reshape"]
    assert graph.output_shape == (24,)


def test_identity_only_model_imports(make_onnx: Callable) -> None:
    path = make_onnx([n("Identity", ["x"])], [("x", (1, 3))], [("y", (1, 3))])
    graph = api.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 1, 3)).astype(np.float32)
    assert relative_error(graph.forward_flat(torch.from_numpy(x).reshape(2, -1)).numpy(), ort_forward(path, x)) == 0.0
