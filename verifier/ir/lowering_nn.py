"""Lowering rules for convolution, pooling, normalisation and the shape family."""
from __future__ import annotations

import math

import numpy as np


def torch_pads(begins: list[int], ends: list[int]) -> list[int]:
    """ONNX per-axis begin/end pads → ``torch.nn.functional.pad`` order (last axis first)."""
    out = []
    for b, e in zip(reversed(begins), reversed(ends)):
        out += [int(b), int(e)]
    return out


def _spatial_pads(imp, in_sp, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """Begin/end pads from ``pads`` or ``auto_pad``."""
    n = len(kernel)
    auto = imp.attr("auto_pad", b"NOTSET")
    auto = auto.decode(errors="replace") if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise imp.error(f"auto_pad '{auto}' is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER", unsupported=False)
    if auto != "NOTSET" and imp.attr("pads") is not None:
        raise imp.error(f"both auto_pad '{auto}' and pads are given (onnxruntime refuses this)", unsupported=False)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(in_sp, kernel, strides, dilations):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            begins.append(small if auto == "SAME_UPPER" else total - small)
            ends.append(total - begins[-1])
        return begins, ends
    pads = list(imp.attr("pads", [0] * (2 * n)))
    return pads[:n], pads[n:]


def _conv(imp, node) -> None:
    x, w = node.input[0], node.input[1]
    if imp.is_const(x) or not imp.is_const(w):
        raise imp.error("Conv needs a variable input and constant weights")
    W = imp.const(w).astype(np.float64)
    n = W.ndim - 2
    if n not in (1, 2, 3):
        raise imp.error(f"Conv with {n} spatial dimensions is not supported")
    kernel = list(W.shape[2:])
    strides = list(imp.attr("strides", [1] * n))
    dil = list(imp.attr("dilations", [1] * n))
    begins, ends = _spatial_pads(imp, imp.shape(x)[-n:], kernel, strides, dil)
    padding = begins
    if begins != ends:
        x = imp.emit("Pad", [x], {"pads": torch_pads(begins, ends), "value": 0.0})
        padding = [0] * n
    params = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        params["b"] = imp.const(node.input[2]).astype(np.float64)
    attrs = {"stride": tuple(strides), "padding": tuple(padding), "dilation": tuple(dil),
             "groups": int(imp.attr("group", 1))}
    imp.emit("Conv", [x], attrs, params, name=node.output[0])


def _conv_transpose(imp, node) -> None:
    x, w = node.input[0], node.input[1]
    if imp.is_const(x) or not imp.is_const(w):
        raise imp.error("ConvTranspose needs a variable input and constant weights")
    if imp.attr("output_shape") is not None or imp.attr("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise imp.error("ConvTranspose with output_shape or auto_pad is not supported")
    W = imp.const(w).astype(np.float64)
    n = W.ndim - 2
    strides = list(imp.attr("strides", [1] * n))
    dil = list(imp.attr("dilations", [1] * n))
    out_pad = list(imp.attr("output_padding", [0] * n))
    pads = list(imp.attr("pads", [0] * (2 * n)))
    params = {"W": W}
    if len(node.input) > 2 and node.input[2]:
        params["b"] = imp.const(node.input[2]).astype(np.float64)
    attrs = {"stride": tuple(strides), "padding": (0,) * n, "dilation": tuple(dil),
             "groups": int(imp.attr("group", 1)), "output_padding": tuple(out_pad)}
    if any(pads):
        y = imp.emit("ConvTranspose", [x], attrs, params)
        imp.emit("Pad", [y], {"pads": [-p for p in torch_pads(pads[:n], pads[n:])], "value": 0.0},
                 name=node.output[0])
    else:
        imp.emit("ConvTranspose", [x], attrs, params, name=node.output[0])


def _batch_norm(imp, node) -> None:
    x = node.input[0]
    scale, bias, mean, var = (imp.const(i).astype(np.float64) for i in node.input[1:5])
    eps = float(imp.attr("epsilon", 1e-5))
    rank = len(imp.shape(x))
    shape = (-1,) + (1,) * (rank - 2)
    a = scale / np.sqrt(var + eps)
    b = bias - mean * a
    imp.emit("Scale", [x], params={"a": a.reshape(shape), "b": b.reshape(shape)}, name=node.output[0],
             out_shape=imp.shape(x))


def _pool_geometry(imp, node, x):
    """Kernel, strides, dilations and begin/end pads; end pads grow to cover ceil-mode windows
    so that the output shape equals onnxruntime's."""
    kernel = list(imp.attr("kernel_shape"))
    n = len(kernel)
    strides = list(imp.attr("strides", [1] * n))
    dil = list(imp.attr("dilations", [1] * n))
    in_sp = list(imp.shape(x)[-n:])
    begins, ends = _spatial_pads(imp, in_sp, kernel, strides, dil)
    out_sp = _run_single_node(imp, node, x, np.zeros).shape[-n:]
    for i in range(n):
        needed = (out_sp[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1
        have = in_sp[i] + begins[i] + ends[i]
        ends[i] += max(0, needed - have)
    return kernel, strides, dil, begins, ends


def _average_pool(imp, node) -> None:
    """Sum pooling as a depthwise convolution of ones, then a constant divisor map."""
    import torch
    import torch.nn.functional as F

    x = node.input[0]
    kernel, strides, dil, begins, ends = _pool_geometry(imp, node, x)
    n, channels = len(kernel), imp.shape(x)[-len(kernel) - 1]
    pads = torch_pads(begins, ends)
    padded = imp.emit("Pad", [x], {"pads": pads, "value": 0.0}) if any(pads) else x
    ones = np.ones((channels, 1, *kernel))
    attrs = {"stride": tuple(strides), "padding": (0,) * n, "dilation": tuple(dil), "groups": channels}
    summed = imp.emit("Conv", [padded], attrs, {"W": ones})
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    real = torch.ones(1, *imp.shape(x)[-n - 1:], dtype=torch.float64)
    counts = conv(F.pad(real, pads), torch.ones(channels, 1, *kernel, dtype=torch.float64),
                  stride=strides, dilation=dil, groups=channels).numpy()
    averaged = _run_single_node(imp, node, x, np.ones).astype(np.float64).reshape(imp.shape(summed))
    counts = counts.reshape(imp.shape(summed))
    # averaged = counted elements / window divisor; the divisor is a whole number of elements
    whole = np.rint(np.divide(counts, averaged, out=np.ones_like(counts), where=averaged > 0))
    divisor = np.where(averaged > 0, 1.0 / np.maximum(whole, 1.0), 0.0)
    imp.emit("Scale", [summed], params={"a": divisor}, name=node.output[0], out_shape=imp.shape(summed))


def _run_single_node(imp, node, x: str, fill) -> np.ndarray:
    """onnxruntime's result of this pooling node alone on a float32 input of ``fill`` (zeros/ones)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    shape = list(imp.shape(x))
    inp = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)
    out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    pool = helper.make_node(node.op_type, ["x"], ["y"])
    pool.attribute.extend(node.attribute)
    model = helper.make_model(helper.make_graph([pool], "pool", [inp], [out]),
                              opset_imports=[helper.make_opsetid("", max(imp.opset, 11))])
    model.ir_version = 8
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": fill(shape).astype(np.float32)})[0]
    except Exception as e:
        raise imp.error(f"invalid pooling attributes ({str(e).splitlines()[0][:200]})",
                        unsupported=False) from None


def _global_average_pool(imp, node) -> None:
    x = node.input[0]
    rank = len(imp.shape(x))
    shape = tuple(imp.shape(x)[:2]) + (1,) * (rank - 2)
    imp.emit("Reduce", [x], {"axes": list(range(3, rank + 1)), "keepdims": True, "mean": True},
             name=node.output[0], out_shape=shape)


def _max_pool(imp, node) -> None:
    if len(node.output) > 1 and node.output[1]:
        raise imp.error("MaxPool with an Indices output is not supported")
    x = node.input[0]
    kernel, strides, dil, begins, ends = _pool_geometry(imp, node, x)
    attrs = {"kernel": tuple(kernel), "stride": tuple(strides), "dilation": tuple(dil),
             "pads": torch_pads(begins, ends)}
    imp.emit("MaxPool", [x], attrs, name=node.output[0])


def _global_average_pool_rank_check(imp, x: str) -> None:
    if len(imp.shape(x)) < 3:
        raise imp.error("GlobalAveragePool needs an input with spatial axes", unsupported=False)


RULES = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "BatchNormalization": _batch_norm,
    "AveragePool": _average_pool, "GlobalAveragePool": _global_average_pool, "MaxPool": _max_pool,
}
