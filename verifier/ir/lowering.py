"""Lowering rules: each ONNX op becomes a few canonical nodes (or an alias).

Rules receive the :class:`~verifier.ir.onnx_import.Importer` and the ONNX node. Axes are
translated from ONNX (per full shape) to internal axes (``+1`` for the leading batch axis).
"""
from __future__ import annotations

import numpy as np

from verifier.ir import lowering_nn, lowering_shape

ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "Sin", "Cos", "Exp")


def internal_axis(imp, name: str, axis: int) -> int:
    """ONNX ``axis`` of value ``name`` → internal axis (batch axis 0 excluded)."""
    rank = len(imp.shape(name))
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        raise imp.error(f"axis {axis} out of range for rank {rank}", unsupported=False)
    return a + 1


def lower_node(imp, node) -> None:
    """Dispatch one ONNX node to its rule; unknown ops name the supported list."""
    rule = RULES.get(node.op_type)
    if rule is None or node.domain not in ("", "ai.onnx"):
        supported = ", ".join(sorted(RULES))
        raise imp.error(f"unsupported ONNX op '{node.op_type}'; supported ops: {supported}")
    rule(imp, node)


def _alias(imp, node) -> None:
    imp.alias[node.output[0]] = imp.resolve(node.input[0])


def _cast(imp, node) -> None:
    import onnx

    to = imp.attr("to")
    if to not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise imp.error("Cast of a variable tensor to a non-float type is not supported")
    _alias(imp, node)


def _activation(imp, node) -> None:
    imp.emit(node.op_type, [node.input[0]], name=node.output[0])


def _leaky_relu(imp, node) -> None:
    alpha = float(imp.attr("alpha", 0.01))
    if not 0.0 <= alpha <= 1.0:
        raise imp.error(f"LeakyRelu alpha={alpha} outside [0, 1] is not supported")
    imp.emit("LeakyRelu", [node.input[0]], {"alpha": alpha}, name=node.output[0])


def _clip(imp, node) -> None:
    lo, hi = imp.attr("min", -np.inf), imp.attr("max", np.inf)
    if len(node.input) > 1 and node.input[1]:
        lo = float(imp.const(node.input[1]))
    if len(node.input) > 2 and node.input[2]:
        hi = float(imp.const(node.input[2]))
    imp.emit("Clip", [node.input[0]], {"min": float(lo), "max": float(hi)}, name=node.output[0])


def _binary(imp, node) -> None:
    """Add/Sub/Mul/Div with constant or variable operands."""
    a, b = node.input[0], node.input[1]
    op, out = node.op_type, node.output[0]
    shape = tuple(np.broadcast_shapes(imp.shape(a), imp.shape(b)))
    ca, cb = imp.is_const(a), imp.is_const(b)
    if ca and cb:
        raise imp.error("internal: constant binary op not folded", unsupported=False)
    if not ca and not cb:
        _binary_vars(imp, op, a, b, out, shape)
        return
    var, c = (b, imp.const(a)) if ca else (a, imp.const(b))
    c = c.astype(np.float64)
    if op == "Add":
        params = {"b": c}
    elif op == "Sub":
        params = {"a": -np.ones(()), "b": c} if ca else {"b": -c}
    elif op == "Mul":
        params = {"a": c}
    elif ca:
        raise imp.error("Div with a constant numerator and a variable denominator is not supported")
    else:
        if np.any(c == 0):
            raise imp.error("division by a constant that contains zero", unsupported=False)
        params = {"a": 1.0 / c}
    imp.emit("Scale", [var], params=params, name=out, out_shape=shape)


def _binary_vars(imp, op: str, a: str, b: str, out: str, shape) -> None:
    if op == "Sub":
        neg = imp.emit("Scale", [b], params={"a": -np.ones(())}, out_shape=imp.shape(b))
        imp.emit("Add", [a, neg], name=out, out_shape=shape)
    else:
        imp.emit(op, [a, b], name=out, out_shape=shape)


def _neg(imp, node) -> None:
    imp.emit("Scale", [node.input[0]], params={"a": -np.ones(())}, name=node.output[0],
             out_shape=imp.shape(node.input[0]))


def _gemm(imp, node) -> None:
    a, b = node.input[0], node.input[1]
    if imp.is_const(a) or not imp.is_const(b):
        raise imp.error("Gemm needs a variable first operand and a constant second operand")
    if imp.attr("transA", 0):
        a = imp.emit("Transpose", [a], {"perm": _swap_last_two(len(imp.shape(a)) + 1)})
    W = imp.const(b).astype(np.float64)
    W = (W.T if imp.attr("transB", 0) else W) * float(imp.attr("alpha", 1.0))
    params = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        params["b"] = imp.const(node.input[2]).astype(np.float64) * float(imp.attr("beta", 1.0))
    imp.emit("Linear", [a], params=params, name=node.output[0])


def _swap_last_two(rank: int) -> list[int]:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return perm


def _matmul(imp, node) -> None:
    a, b = node.input[0], node.input[1]
    if not imp.is_const(a) and imp.is_const(b):
        W = imp.const(b).astype(np.float64)
        if W.ndim != 2:
            raise imp.error(f"MatMul with a constant operand of rank {W.ndim} is not supported")
        imp.emit("Linear", [a], params={"W": W}, name=node.output[0])
    elif imp.is_const(a) and not imp.is_const(b):
        _matmul_left(imp, node, imp.const(a).astype(np.float64), b)
    else:
        raise imp.error("MatMul of two variable tensors is not supported")


def _matmul_left(imp, node, W: np.ndarray, x: str) -> None:
    """``W @ x`` = ``(x^T @ W^T)^T`` on the last two axes."""
    if W.ndim != 2:
        raise imp.error(f"MatMul with a constant operand of rank {W.ndim} is not supported")
    rank = len(imp.shape(x))
    if rank == 1:
        imp.emit("Linear", [x], params={"W": W.T}, name=node.output[0])
        return
    perm = _swap_last_two(rank + 1)
    xt = imp.emit("Transpose", [x], {"perm": perm})
    y = imp.emit("Linear", [xt], params={"W": W.T})
    imp.emit("Transpose", [y], {"perm": perm}, name=node.output[0])


def _folded(imp, node) -> None:
    raise imp.error(f"{node.op_type} of a value whose shape or content is not static")


def _softmax(imp, node) -> None:
    x = node.input[0]
    shape = imp.shape(x)
    axis = imp.attr("axis", -1 if imp.opset >= 13 else 1)
    if imp.opset >= 13:
        imp.emit("Softmax", [x], {"axis": internal_axis(imp, x, axis)}, name=node.output[0])
        return
    a = internal_axis(imp, x, axis) - 1
    flat = (int(np.prod(shape[:a], dtype=np.int64)), int(np.prod(shape[a:], dtype=np.int64)))
    r = imp.emit("Reshape", [x], out_shape=flat)
    s = imp.emit("Softmax", [r], {"axis": 2})
    imp.emit("Reshape", [s], name=node.output[0], out_shape=shape)


RULES = {
    "Identity": _alias, "Dropout": _alias, "Cast": _cast,
    **{op: _activation for op in ACTIVATIONS},
    "LeakyRelu": _leaky_relu, "Clip": _clip,
    "Add": _binary, "Sub": _binary, "Mul": _binary, "Div": _binary, "Neg": _neg,
    "Gemm": _gemm, "MatMul": _matmul, "Softmax": _softmax,
    **lowering_nn.RULES, **lowering_shape.RULES,
    "Constant": _folded, "Shape": _folded,
}
