"""Malformed models for the fuzz tests: small valid base models (and the base property that
goes with them), and the mutations that break or change them.

Every mutation is a function ``(model, rng) -> (model, note)`` (structural) or
``(bytes, rng) -> (bytes, note)`` (byte level); ``rng`` is a ``random.Random`` (hypothesis
supplies it). VNN-LIB text mutations are in ``mutate_vnnlib.py``. Used by
``tests/test_fuzz.py`` and by ``tests/fuzz/make_corpus.py``.
"""
from __future__ import annotations

import random
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN, N_HIDDEN, N_OUT = 4, 6, 3
ABSURD_DIMS = (-7, -1, 0, 3, 10**9, 2**40, 2**62)


# ---- base models ------------------------------------------------------------------------
def mlp_model(seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """x (1, 4) → Gemm 4×6 → Relu → Gemm 6×3 → y (1, 3); weights in [-1, 1]."""
    rng = np.random.default_rng(seed)
    inits = {"W1": rng.uniform(-1, 1, (N_IN, N_HIDDEN)), "b1": rng.uniform(-1, 1, N_HIDDEN),
             "W2": rng.uniform(-1, 1, (N_HIDDEN, N_OUT)), "b2": rng.uniform(-1, 1, N_OUT)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu1"),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], name="fc2", transB=0)]
    return _model(nodes, [1, N_IN], [1, N_OUT], inits, opset)


def conv_model(seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """x (1, 1, 2, 2) → Conv 2×1×2×2 (pads 1) → Relu → MaxPool 2 → Flatten → Gemm 8×3 → y (1, 3)."""
    rng = np.random.default_rng(seed)
    inits = {"K": rng.uniform(-1, 1, (2, 1, 2, 2)), "kb": rng.uniform(-1, 1, 2),
             "W": rng.uniform(-1, 1, (8, N_OUT)), "b": rng.uniform(-1, 1, N_OUT)}
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], name="conv", pads=[1, 1, 1, 1],
                              strides=[1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[1, 1]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], name="fc")]
    return _model(nodes, [1, 1, 2, 2], [1, N_OUT], inits, opset)


def _model(nodes, in_shape, out_shape, inits, opset: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "fuzz_base", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz")
    model.ir_version = 8
    return model


def base_property(n_inputs: int = N_IN, n_outputs: int = N_OUT, eps: float = 0.1) -> str:
    """Box ``[-eps, eps]`` around 0.5 on every input; unsafe: ``Y_0 >= Y_1``."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    for i in range(n_inputs):
        lines += [f"(assert (>= X_{i} {0.5 - eps}))", f"(assert (<= X_{i} {0.5 + eps}))"]
    lines.append("(assert (>= Y_0 Y_1))")
    return "\n".join(lines) + "\n"


# ---- byte-level mutations ---------------------------------------------------------------
def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(0, len(data))
    return data[:cut], f"truncated at {cut} of {len(data)} bytes"


def flip_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    n = rng.choice((1, 2, 5, 20))
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b), f"{n} random byte(s) overwritten"


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], tuple[bytes, str]]] = {
    "truncate": truncate, "flip_bytes": flip_bytes}


# ---- structural mutations (ModelProto → ModelProto) -------------------------------------
def _weights(m: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in m.graph.initializer if t.name.startswith(("W", "K"))]


def int_weights(m, rng):
    t = rng.choice(_weights(m))
    dtype = rng.choice((np.int32, np.int64, np.uint8, np.int8, np.bool_, np.float16, np.float64))
    arr = (numpy_helper.to_array(t) * 3).astype(dtype)
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return m, f"initializer {t.name} as {np.dtype(dtype).name}"


def string_tensor(m, rng):
    t = rng.choice(list(m.graph.initializer))
    dims = list(t.dims)
    s = helper.make_tensor(t.name, TensorProto.STRING, dims, [b"ab"] * int(np.prod(dims)))
    t.CopyFrom(s)
    return m, f"initializer {t.name} as strings"


def dangling_input(m, rng):
    node = rng.choice(list(m.graph.node))
    k = rng.randrange(len(node.input))
    node.input[k] = "nowhere"
    return m, f"node {node.name} input {k} reads an undefined value"


def cycle(m, rng):
    nodes = list(m.graph.node)
    i = rng.randrange(len(nodes))
    j = rng.randrange(i, len(nodes))
    nodes[i].input[0] = nodes[j].output[0]
    return m, f"node {nodes[i].name} reads the output of {nodes[j].name} (cycle)"


def _dims(value_info) -> list:
    return list(value_info.type.tensor_type.shape.dim)


def absurd_shape(m, rng):
    vi = rng.choice([m.graph.input[0], m.graph.output[0]])
    dims = _dims(vi)
    k = rng.randrange(len(dims))
    v = rng.choice(ABSURD_DIMS)
    dims[k].dim_value = v
    return m, f"{vi.name} dimension {k} declared {v}"


def extra_dims(m, rng):
    vi = m.graph.input[0]
    n = rng.choice((1, 3, 8))
    for _ in range(n):
        vi.type.tensor_type.shape.dim.add().dim_value = rng.choice((1, 2, 10**6))
    return m, f"input gets {n} extra dimension(s)"


def huge_initializer_dims(m, rng):
    t = rng.choice(list(m.graph.initializer))
    v = rng.choice((10**9, 2**31, 2**62, 0, -3))
    t.dims[rng.randrange(len(t.dims))] = v
    return m, f"initializer {t.name} declares a dimension {v}"


def set_external(m: onnx.ModelProto, name: str, location: str, offset: int = 0) -> onnx.ModelProto:
    """Move initializer ``name``'s data out of the file, to ``location`` (not written)."""
    t = next(t for t in m.graph.initializer if t.name == name)
    arr = numpy_helper.to_array(t)
    onnx.external_data_helper.set_external_data(t, location=location, offset=offset, length=arr.nbytes)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    return m


def external_data(m, rng):
    t = rng.choice(_weights(m))
    location = rng.choice(("../outside.bin", "/etc/hostname", "../../../../etc/passwd",
                           "missing.bin", "link_out.bin", "sub/../../x.bin", ".", ""))
    offset = rng.choice((0, 10**12))
    return set_external(m, t.name, location, offset), f"initializer {t.name} external data at '{location}'+{offset}"


def duplicate_outputs(m, rng):
    nodes = list(m.graph.node)
    if rng.random() < 0.5:
        m.graph.output.extend([m.graph.output[0]])
        return m, "graph output listed twice"
    a, b = rng.sample(range(len(nodes)), 2)
    nodes[b].output[0] = nodes[a].output[0]
    return m, f"nodes {nodes[a].name} and {nodes[b].name} produce the same value"


def missing_output(m, rng):
    if rng.random() < 0.5:
        del m.graph.output[:]
        return m, "no graph output"
    m.graph.output[0].name = "not_produced"
    return m, "graph output is not produced by any node"


def wrong_input_count(m, rng):
    node = rng.choice(list(m.graph.node))
    if rng.random() < 0.5 or len(node.input) == 1:
        node.input.extend([node.input[0]] * rng.choice((1, 3)))
        return m, f"node {node.name} gets extra inputs"
    del node.input[1:]
    return m, f"node {node.name} keeps only its first input"


def wrong_attribute(m, rng):
    node = rng.choice(list(m.graph.node))
    name = rng.choice(("transB", "alpha", "axis", "strides", "pads", "kernel_shape", "group", "auto_pad"))
    value = rng.choice((2.5, "SAME", [1, 2, 3, 4, 5], -4, 10**9, b"\xff\xfe",
                        numpy_helper.from_array(np.zeros(2, np.float32)), [0.5, 1.5]))
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))
    return m, f"node {node.name} attribute {name}={value!r:.40}"


def opset(m, rng):
    v = rng.choice((1, 5, 6, 99, 0, -1))
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid(rng.choice(("", "", "com.example")), v))
    return m, f"opset {v}"


def ir_version(m, rng):
    m.ir_version = rng.choice((0, 1, 99, -5))
    return m, f"ir_version {m.ir_version}"


def op_type(m, rng):
    node = rng.choice(list(m.graph.node))
    node.op_type = rng.choice(("Softmax", "Conv", "MaxPool", "Reshape", "Transpose", "Concat", "Gather",
                               "Slice", "Pad", "Sigmoid", "AveragePool", "BatchNormalization", "Split",
                               "Squeeze", "MatMul", "Div", "Clip", "Erf", "Loop", "If", ""))
    if rng.random() < 0.2:
        node.domain = "com.example"
    return m, f"node {node.name} becomes {node.op_type!r} (domain {node.domain!r})"


def input_type(m, rng):
    vi = rng.choice([m.graph.input[0], m.graph.output[0]])
    vi.type.tensor_type.elem_type = rng.choice((TensorProto.INT64, TensorProto.STRING, TensorProto.BOOL,
                                                TensorProto.DOUBLE, TensorProto.UNDEFINED))
    return m, f"{vi.name} element type {vi.type.tensor_type.elem_type}"


def nonfinite_weights(m, rng):
    t = rng.choice(list(m.graph.initializer))
    arr = numpy_helper.to_array(t).copy()
    arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice((np.nan, np.inf, -np.inf, 3e38))
    t.CopyFrom(numpy_helper.from_array(arr, t.name))
    return m, f"initializer {t.name} holds a non-finite or huge value"


def remove_parts(m, rng):
    what = rng.choice(("nodes", "inputs", "initializers", "graph"))
    if what == "nodes":
        del m.graph.node[rng.randrange(len(m.graph.node)):]
    elif what == "inputs":
        del m.graph.input[:]
    elif what == "initializers":
        del m.graph.initializer[rng.randrange(len(m.graph.initializer))]
    else:
        m.ClearField("graph")
    return m, f"removed {what}"


def second_input(m, rng):
    m.graph.input.extend([helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, N_IN])])
    return m, "a second graph input"


def perturb_weights(m, rng):
    """Still a valid model: new values, some huge or tiny (overflow to inf in float32 outputs)."""
    t = rng.choice(list(m.graph.initializer))
    arr = numpy_helper.to_array(t).astype(np.float64)
    scale = rng.choice((0.0, 1e-30, -1.0, 10.0, 1e15, 1e30))
    t.CopyFrom(numpy_helper.from_array((arr * scale).astype(np.float32), t.name))
    return m, f"initializer {t.name} scaled by {scale}"


def shuffle_nodes(m, rng):
    """Still a valid model (for onnxruntime): the nodes listed out of order."""
    nodes = list(m.graph.node)
    rng.shuffle(nodes)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m, "nodes listed out of order"


def insert_identity(m, rng):
    """Still a valid model: an Identity, Dropout or Relu∘Relu in front of a node."""
    node = rng.choice(list(m.graph.node))
    op = rng.choice(("Identity", "Dropout", "Relu"))
    node.input[0], old = f"{node.input[0]}_{op}", node.input[0]
    m.graph.node.insert(0, helper.make_node(op, [old], [node.input[0]], name=f"inserted_{op}"))
    return m, f"{op} inserted before {node.name}"


def sparse_tensor(m, rng):
    """An initializer stored sparse, or moved into a Constant node's sparse_value."""
    t = rng.choice(list(m.graph.initializer))
    arr = numpy_helper.to_array(t).reshape(-1)
    keep = np.flatnonzero(arr)[:3]
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(arr[keep], t.name),
                                       numpy_helper.from_array(keep.astype(np.int64)), list(t.dims))
    m.graph.initializer.remove(t)
    if rng.random() < 0.5:
        m.graph.sparse_initializer.append(sparse)
        return m, f"initializer {t.name} stored sparse"
    m.graph.node.insert(0, helper.make_node("Constant", [], [t.name], name=f"const_{t.name}", sparse_value=sparse))
    return m, f"initializer {t.name} as a sparse Constant"


MODEL_MUTATIONS: dict[str, Callable] = {
    f.__name__: f for f in (int_weights, string_tensor, dangling_input, cycle, absurd_shape, extra_dims,
                            huge_initializer_dims, external_data, duplicate_outputs, missing_output,
                            wrong_input_count, wrong_attribute, opset, ir_version, op_type, input_type,
                            nonfinite_weights, remove_parts, second_input, perturb_weights, shuffle_nodes,
                            insert_identity, sparse_tensor)}


def apply(model: onnx.ModelProto, names: list[str], rng: random.Random) -> tuple[onnx.ModelProto, list[str]]:
    """A mutated copy of ``model``: the named mutations in turn; one that finds nothing to
    change (an earlier one removed its target) is skipped."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    notes = []
    for name in names:
        trial = onnx.ModelProto()
        trial.CopyFrom(m)
        try:
            trial, note = MODEL_MUTATIONS[name](trial, rng)
        except Exception:  # noqa: BLE001  (a helper of onnx refusing the broken model)
            continue
        m = trial
        notes.append(note)
    return m, notes
