"""Lowering rules for the shape family: Flatten, Reshape, Squeeze, Unsqueeze, Transpose,
Concat, Slice, Split, Gather, Pad, ReduceSum, ReduceMean."""
from __future__ import annotations

import numpy as np

from verifier.ir.lowering_nn import torch_pads


def _ax(imp, name, axis):
    from verifier.ir.lowering import internal_axis

    return internal_axis(imp, name, axis)


def _int_list(imp, node, attr: str, input_index: int) -> list[int] | None:
    """An integer list given as an attribute (old opsets) or a constant input (new opsets)."""
    if len(node.input) > input_index and node.input[input_index]:
        if not imp.is_const(node.input[input_index]):
            raise imp.error(f"'{attr}' must be a constant")
        return [int(v) for v in np.asarray(imp.const(node.input[input_index])).reshape(-1)]
    value = imp.attr(attr)
    return None if value is None else [int(v) for v in value]


def _reshape_to(imp, node, shape) -> None:
    x = node.input[0]
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(imp.shape(x), dtype=np.int64)):
        raise imp.error(f"cannot reshape {list(imp.shape(x))} to {list(shape)}", unsupported=False)
    imp.emit("Reshape", [x], name=node.output[0], out_shape=tuple(int(s) for s in shape))


def _flatten(imp, node) -> None:
    shape = imp.shape(node.input[0])
    axis = imp.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    _reshape_to(imp, node, (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))))


def _reshape(imp, node) -> None:
    x_shape = imp.shape(node.input[0])
    target = _int_list(imp, node, "shape", 1)
    allow_zero = imp.attr("allowzero", 0)
    out = [x_shape[i] if (t == 0 and not allow_zero) else t for i, t in enumerate(target)]
    if out.count(-1) > 1:
        raise imp.error("Reshape with more than one -1", unsupported=False)
    if -1 in out:
        known = int(np.prod([s for s in out if s != -1], dtype=np.int64))
        out[out.index(-1)] = int(np.prod(x_shape, dtype=np.int64)) // max(known, 1)
    _reshape_to(imp, node, out)


def _squeeze(imp, node) -> None:
    shape = list(imp.shape(node.input[0]))
    axes = _int_list(imp, node, "axes", 1)
    if axes is None:
        axes = [i for i, s in enumerate(shape) if s == 1]
    axes = {a + len(shape) if a < 0 else a for a in axes}
    if any(shape[a] != 1 for a in axes):
        raise imp.error("Squeeze of an axis whose size is not 1", unsupported=False)
    _reshape_to(imp, node, [s for i, s in enumerate(shape) if i not in axes])


def _unsqueeze(imp, node) -> None:
    shape = list(imp.shape(node.input[0]))
    axes = _int_list(imp, node, "axes", 1)
    rank = len(shape) + len(axes)
    for a in sorted(a + rank if a < 0 else a for a in axes):
        shape.insert(a, 1)
    _reshape_to(imp, node, shape)


def _transpose(imp, node) -> None:
    rank = len(imp.shape(node.input[0]))
    perm = imp.attr("perm", list(reversed(range(rank))))
    imp.emit("Transpose", [node.input[0]], {"perm": [0] + [int(p) + 1 for p in perm]}, name=node.output[0])


def _concat(imp, node) -> None:
    inputs = [i for i in node.input if i]
    if any(imp.is_const(i) for i in inputs):
        raise imp.error("Concat of constant and variable tensors is not supported")
    axis = _ax(imp, inputs[0], imp.attr("axis"))
    imp.emit("Concat", inputs, {"axis": axis}, name=node.output[0])


def _select(imp, x: str, axis: int, index: list[int], name: str | None = None) -> str:
    size = imp.shape(x)[axis - 1]
    if index == list(range(size)):
        if name:
            imp.alias[name] = imp.resolve(x)
        return x
    return imp.emit("Select", [x], {"axis": axis}, {"index": np.asarray(index, dtype=np.int64)}, name=name)


def _slice(imp, node) -> None:
    x = node.input[0]
    shape = imp.shape(x)
    starts = _int_list(imp, node, "starts", 1)
    ends = _int_list(imp, node, "ends", 2)
    axes = _int_list(imp, node, "axes", 3) or list(range(len(starts)))
    steps = _int_list(imp, node, "steps", 4) or [1] * len(starts)
    cur = x
    for i, (s, e, a, st) in enumerate(zip(starts, ends, axes, steps)):
        a = a + len(shape) if a < 0 else a
        if st == 0:
            raise imp.error("Slice step 0", unsupported=False)
        index = list(range(*slice(s, e, st).indices(shape[a])))
        last = i == len(starts) - 1
        cur = _select(imp, cur, a + 1, index, name=node.output[0] if last else None)


def _split(imp, node) -> None:
    x = node.input[0]
    shape = imp.shape(x)
    axis = imp.attr("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    sizes = _int_list(imp, node, "split", 1)
    if sizes is None:
        n = len(node.output)
        chunk = -(-shape[axis] // n)
        sizes = [min(chunk, shape[axis] - chunk * i) for i in range(n)]
    start = 0
    for out, size in zip(node.output, sizes):
        _select(imp, x, axis + 1, list(range(start, start + size)), name=out)
        start += size


def _gather(imp, node) -> None:
    x, idx = node.input[0], node.input[1]
    if not imp.is_const(idx):
        raise imp.error("Gather with variable indices is not supported")
    shape = imp.shape(x)
    axis = imp.attr("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    indices = np.asarray(imp.const(idx)).astype(np.int64)
    flat = np.where(indices < 0, indices + shape[axis], indices).reshape(-1)
    if np.any(flat < 0) or np.any(flat >= shape[axis]):
        raise imp.error("Gather index out of range", unsupported=False)
    picked = imp.emit("Select", [x], {"axis": axis + 1}, {"index": flat})
    out_shape = tuple(shape[:axis]) + tuple(indices.shape) + tuple(shape[axis + 1:])
    imp.emit("Reshape", [picked], name=node.output[0], out_shape=out_shape)


def _pad(imp, node) -> None:
    mode = imp.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise imp.error(f"Pad mode '{mode}' is not supported (only 'constant')")
    x = node.input[0]
    rank = len(imp.shape(x))
    pads = _int_list(imp, node, "pads", 1)
    value = float(imp.attr("value", 0.0))
    if len(node.input) > 2 and node.input[2]:
        value = float(np.asarray(imp.const(node.input[2])).reshape(-1)[0])
    axes = _int_list(imp, node, "axes", 3) or list(range(rank))
    begins, ends = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        a = a + rank if a < 0 else a
        begins[a], ends[a] = pads[i], pads[i + len(axes)]
    imp.emit("Pad", [x], {"pads": torch_pads(begins, ends), "value": value}, name=node.output[0])


def _reduce(imp, node) -> None:
    x = node.input[0]
    rank = len(imp.shape(x))
    axes = _int_list(imp, node, "axes", 1)
    if axes is None:
        axes = [] if imp.attr("noop_with_empty_axes", 0) else list(range(rank))
    internal = sorted({_ax(imp, x, a) for a in axes})
    keep = bool(imp.attr("keepdims", 1))
    shape = [1 if i + 1 in internal else s for i, s in enumerate(imp.shape(x))]
    if not keep:
        shape = [s for i, s in enumerate(imp.shape(x)) if i + 1 not in internal]
    imp.emit("Reduce", [x], {"axes": internal, "keepdims": keep, "mean": node.op_type == "ReduceMean"},
             name=node.output[0], out_shape=tuple(shape))


RULES = {
    "Flatten": _flatten, "Reshape": _reshape, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": _transpose, "Concat": _concat, "Slice": _slice, "Split": _split,
    "Gather": _gather, "Pad": _pad, "ReduceSum": _reduce, "ReduceMean": _reduce,
}
