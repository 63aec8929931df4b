"""ONNX → :class:`Graph`: constant folding, static shapes, lowering to canonical ops."""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from verifier.errors import InputError, UnsupportedError
from verifier.ir.graph import Graph, Node
from verifier.ir.onnx_file import check_finite, check_standard, initializer_arrays, read_model

MAX_ELEMENTS = 1 << 27  # per-sample elements of one value; larger declared shapes are refused


def load_onnx(path: str | os.PathLike) -> Graph:
    """Read and import an ONNX model file (float32 parameters on CPU)."""
    model = read_model(path)
    return Importer(model, str(path)).run()


class Importer:
    """Walks the ONNX graph once, folding constants and emitting canonical nodes."""

    def __init__(self, model: onnx.ModelProto, path: str):
        self.model = model
        self.path = path
        self.opset = _default_opset(model)
        self.consts: dict[str, np.ndarray] = initializer_arrays(model, path)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.alias: dict[str, str] = {}
        self.nodes: list[Node] = []
        self.onnx_node: onnx.NodeProto | None = None

    # ---- driver -------------------------------------------------------------------------
    def run(self) -> Graph:
        from verifier.ir.lowering import lower_node

        input_name, batched = self._graph_input()
        order = _topological(self.model.graph, set(self.consts) | {input_name}, self.path)
        check_standard(self.model, order, self.path)
        for node in order:
            self.onnx_node = node
            if self._fold(node):
                continue
            lower_node(self, node)
        output_name = self._graph_output(input_name)
        return Graph(tuple(self.nodes), input_name, self.shapes[input_name], output_name,
                     batched, onnx_path=self.path, dtype=torch.float32)

    def _graph_input(self) -> tuple[str, bool]:
        inputs = [i for i in self.model.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs) or "none"
            raise UnsupportedError(f"the model must have exactly one input, it has {len(inputs)} ({names})",
                                   path=self.path)
        inp = inputs[0]
        _check_float(inp, "input", (onnx.TensorProto.FLOAT,), self.path)
        dims = list(inp.type.tensor_type.shape.dim)
        if not inp.type.tensor_type.HasField("shape"):
            raise InputError(f"input '{inp.name}' has no declared shape", path=self.path)
        shape, batched = [], len(dims) >= 2
        for i, d in enumerate(dims):
            value = d.dim_value if d.HasField("dim_value") else None
            if value is None or value <= 0:
                if i == 0 and len(dims) >= 2:
                    value = 1
                else:
                    label = d.dim_param or "?"
                    raise UnsupportedError(f"input '{inp.name}' dimension {i} ('{label}') is dynamic and "
                                           "cannot be resolved", path=self.path)
            shape.append(int(value))
        if batched and shape[0] != 1:
            batched = False
        self._check_size(inp.name, tuple(shape))
        self.shapes[inp.name] = tuple(shape)
        return inp.name, batched

    def _graph_output(self, input_name: str) -> str:
        outputs = list(self.model.graph.output)
        if len(outputs) != 1:
            raise UnsupportedError(f"the model must have exactly one output, it has {len(outputs)}",
                                   path=self.path)
        _check_float(outputs[0], "output", FLOAT_TYPES, self.path)
        name = self.resolve(outputs[0].name)
        if name == input_name:  # the model is the identity: keep one explicit node
            self.onnx_node = None
            name = self.emit("Reshape", [input_name], name=f"{input_name}/identity",
                             out_shape=self.shapes[input_name])
        if name not in self.shapes:
            raise UnsupportedError(f"output '{outputs[0].name}' is a constant: it does not depend on the input",
                                   path=self.path)
        self._reorder_for_output(name)
        return name

    def _reorder_for_output(self, name: str) -> None:
        """Drop nodes the output does not depend on (keeps topological order)."""
        needed, keep = {name}, []
        for node in reversed(self.nodes):
            if node.name in needed:
                keep.append(node)
                needed.update(node.inputs)
        self.nodes = list(reversed(keep))

    # ---- helpers for lowering rules ----------------------------------------------------
    def where(self) -> str:
        n = self.onnx_node
        return f"node '{n.name or n.output[0]}' ({n.op_type})" if n is not None else ""

    def error(self, message: str, unsupported: bool = True) -> Exception:
        cls = UnsupportedError if unsupported else InputError
        return cls(message, path=self.path, where=self.where())

    def resolve(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    def is_const(self, name: str) -> bool:
        return name == "" or self.resolve(name) in self.consts

    def const(self, name: str) -> np.ndarray:
        return self.consts[self.resolve(name)]

    def shape(self, name: str) -> tuple[int, ...]:
        name = self.resolve(name)
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.shapes[name]

    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.onnx_node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def emit(self, op: str, inputs: list[str], attrs: dict | None = None, params: dict | None = None,
             name: str | None = None, out_shape: tuple[int, ...] | None = None) -> str:
        """Append a canonical node; its output shape is found by evaluating it on zeros."""
        from verifier.ops import make_op

        name = name or self._fresh(op)
        params = {k: torch.as_tensor(np.asarray(v)) for k, v in (params or {}).items()}
        params = {k: v.double() if v.is_floating_point() else v for k, v in params.items()}
        inputs = [self.resolve(i) for i in inputs]
        node = Node(name, op, tuple(inputs), attrs or {}, params, tuple(out_shape or ()), self.where())
        if out_shape is None:
            zeros = [torch.zeros(1, *self.shapes[i], dtype=torch.float64) for i in inputs]
            try:
                y = make_op(node, torch.float64, torch.device("cpu")).forward(*zeros)
            except (RuntimeError, ValueError, IndexError) as e:
                raise self.error(f"cannot apply {op}: {str(e).splitlines()[0]}", unsupported=False) from None
            node = Node(name, op, tuple(inputs), attrs or {}, params, tuple(y.shape[1:]), self.where())
        self._check_size(name, node.out_shape)
        self.shapes[name] = node.out_shape
        self.nodes.append(node)
        return name

    def _fresh(self, op: str) -> str:
        base = self.onnx_node.output[0] if self.onnx_node is not None else "value"
        return f"{base}/{op}#{len(self.nodes)}"

    def _check_size(self, name: str, shape: tuple[int, ...]) -> None:
        if int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
            raise InputError(f"value '{name}' has shape {list(shape)}: over {MAX_ELEMENTS} elements "
                             "per sample (refused)", path=self.path, where=self.where())

    # ---- constant folding ----------------------------------------------------------------
    def _fold(self, node: onnx.NodeProto) -> bool:
        """Fold ``node`` into constants when all its inputs are known; True if folded."""
        if node.op_type == "Constant":
            if any(a.name == "sparse_value" for a in node.attribute):
                raise self.error("a sparse Constant value is not supported")
            self._set_consts(node, [_constant_value(node)])
            return True
        if node.op_type in ("Shape", "Size") and node.input[0] and not self.is_const(node.input[0]):
            shape = np.array(self.shape(node.input[0]), dtype=np.int64)
            start, end = self.attr("start", 0), self.attr("end", None)
            value = shape[start:end] if node.op_type == "Shape" else np.array(shape.prod(), np.int64)
            self._set_consts(node, [value])
            return True
        if not all(self.is_const(i) for i in node.input):
            return False
        self._set_consts(node, self._evaluate_constant(node))
        return True

    def _evaluate_constant(self, node: onnx.NodeProto) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.const(i) for i in node.input if i}
        self._check_fold_size(node, feeds)
        try:
            return list(ReferenceEvaluator(_single_node_model(node, feeds, self.model)).run(None, feeds))
        except Exception as e:
            raise self.error(f"cannot fold constant: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                             unsupported=False) from None

    def _check_fold_size(self, node: onnx.NodeProto, feeds: dict[str, np.ndarray]) -> None:
        """Refuse a constant whose shape, inferred before it is computed, is over
        :data:`MAX_ELEMENTS` (ConstantOfShape, Expand, Tile, broadcasting... can ask for terabytes)."""
        shapes = [_known_shape(out) for out in _inferred_outputs(node, feeds, self.model)]
        for name, shape in zip(node.output, shapes):
            if shape is not None and int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
                raise self.error(f"constant '{name}' would have shape {list(shape)}: over {MAX_ELEMENTS} "
                                 "elements (refused)", unsupported=False)

    def _set_consts(self, node: onnx.NodeProto, values: list[np.ndarray]) -> None:
        for name, value in zip(node.output, values):
            value = np.asarray(value)
            check_finite(value, f"constant '{name}'", self.path)
            self.consts[name] = value


FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16)


def _check_float(value: onnx.ValueInfoProto, what: str, allowed: tuple[int, ...], path: str) -> None:
    """The graph input must be float32 (counterexamples are float32), the output a float tensor."""
    elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
    if elem not in allowed:
        name = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else elem
        raise UnsupportedError(f"{what} '{value.name}' has element type {name}; "
                               f"only {'float32' if len(allowed) == 1 else 'float'} {what}s are supported",
                               path=path)


def _single_node_model(node: onnx.NodeProto, feeds: dict, model: onnx.ModelProto) -> onnx.ModelProto:
    """``node`` alone in a model with the file's opsets, so it is evaluated with the semantics
    of the opset the file declares."""
    helper = onnx.helper
    inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None)
              for k, v in feeds.items()]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    return helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version or 8)


def _inferred_outputs(node: onnx.NodeProto, feeds: dict, model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """ONNX shape inference (with data propagation from the small inputs) of ``node`` alone;
    empty when inference fails (evaluation then reports the problem)."""
    helper = onnx.helper
    small = {k: np.asarray(v) for k, v in feeds.items() if np.asarray(v).size <= 4096}
    try:
        inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                                list(np.shape(v))) for k, v in feeds.items() if k not in small]
        inits = [numpy_helper.from_array(v, k) for k, v in small.items()]
        outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
        graph = helper.make_graph([node], "fold", inputs, outputs, initializer=inits)
        probe = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version or 8)
        return list(onnx.shape_inference.infer_shapes(probe, data_prop=True).graph.output)
    except Exception:  # strings, odd dtypes, inference errors: leave them to evaluation
        return []


def _known_shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    dims = value.type.tensor_type.shape.dim
    if not value.type.tensor_type.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    return np.asarray(onnx.helper.get_attribute_value(attr))


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 13


def _topological(graph: onnx.GraphProto, known: set[str], path: str) -> list[onnx.NodeProto]:
    """Nodes in an order where every input is produced first; cycles and dangling inputs fail."""
    produced = {out: i for i, n in enumerate(graph.node) for out in n.output if out}
    for n in graph.node:
        for inp in n.input:
            if inp and inp not in known and inp not in produced:
                raise InputError(f"node '{n.name or n.output[0]}' ({n.op_type}) reads '{inp}', "
                                 "which no node, initializer or input provides", path=path)
    order, state = [], {}
    for start in range(len(graph.node)):
        stack = [(start, False)]
        while stack:
            i, done = stack.pop()
            if done:
                state[i] = 2
                order.append(graph.node[i])
                continue
            if state.get(i) == 2:
                continue
            if state.get(i) == 1:
                continue
            state[i] = 1
            stack.append((i, True))
            for inp in graph.node[i].input:
                j = produced.get(inp)
                if j is None:
                    continue
                if state.get(j) == 1:
                    n = graph.node[j]
                    raise InputError(f"the graph has a cycle through node '{n.name or n.output[0]}'", path=path)
                if state.get(j) is None:
                    stack.append((j, False))
    return order
