"""Reading an ONNX file safely: clear errors for missing, truncated or hostile files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from verifier.errors import InputError, UnsupportedError

MAX_FILE_BYTES = 2**31 - 1  # protobuf's own limit for one message
MIN_OPSET = 7  # onnxruntime, the judge of counterexamples, runs no older default-domain opset


def read_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load ``path`` as an ONNX model with external data confined to its folder."""
    p = Path(path)
    if not p.exists():
        raise InputError("model file not found", path=str(p))
    if not p.is_file():
        raise InputError("model path is not a file", path=str(p))
    size = p.stat().st_size
    if size == 0:
        raise InputError("model file is empty", path=str(p))
    if size > MAX_FILE_BYTES:
        raise InputError(f"model file is {size} bytes, over the 2 GiB protobuf limit", path=str(p))
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read model file ({e.strerror})", path=str(p)) from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:
        raise InputError("not an ONNX model (protobuf decoding failed: truncated or another format)",
                         path=str(p)) from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise InputError("not an ONNX model (no graph nodes)", path=str(p))
    _load_external_data(model, p)
    return model


def check_standard(model: onnx.ModelProto, nodes: list[onnx.NodeProto], path: str) -> None:
    """Refuse what the ONNX checker rejects (node schemas, input counts, attribute types, element
    types, shape inference) and opsets that onnxruntime cannot run. ``nodes``: the graph's nodes
    in a topological order (a graph listed out of order is checked in that order)."""
    version = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), None)
    newest = onnx.defs.onnx_opset_version()
    if version is not None and not MIN_OPSET <= version <= newest:
        raise UnsupportedError(f"ONNX opset {version} is not supported (opsets {MIN_OPSET} to {newest})",
                               path=path)
    if model.ir_version > onnx.IR_VERSION:
        raise UnsupportedError(f"ONNX IR version {model.ir_version} is newer than the supported "
                               f"{onnx.IR_VERSION}", path=path)
    names = [n.name for n in nodes if n.name]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise InputError(f"two nodes are named '{twice}' (node names must be unique)", path=path)
    if model.ByteSize() > MAX_FILE_BYTES:
        return  # the checker cannot take messages over 2 GiB; import still checks every node
    if list(model.graph.node) != list(nodes):
        sorted_copy = onnx.ModelProto()
        sorted_copy.CopyFrom(model)
        del sorted_copy.graph.node[:]
        sorted_copy.graph.node.extend(nodes)
        model = sorted_copy
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # ValidationError, InferenceError and the checker's own failures
        text = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"invalid ONNX model ({text[:300]})", path=path) from None


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Resolve external tensor data, refusing locations outside the model's folder."""
    base = path.resolve().parent
    external = [t for t in model.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (base / location).resolve()
        if os.path.isabs(location) or base not in target.parents:
            raise InputError(f"initializer '{tensor.name}' points to external data '{location}' "
                             "outside the model's folder (refused)", path=str(path))
        if not target.is_file():
            raise InputError(f"initializer '{tensor.name}': external data file '{location}' not found",
                             path=str(path))
    if external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as e:
            raise InputError(f"cannot load external tensor data ({e})", path=str(path)) from None


def initializer_arrays(model: onnx.ModelProto, path: str) -> dict[str, np.ndarray]:
    """All initializers as numpy arrays; NaN/Inf in float weights is refused."""
    if model.graph.sparse_initializer:
        name = model.graph.sparse_initializer[0].values.name
        raise UnsupportedError(f"sparse initializer '{name}' is not supported", path=path)
    out = {}
    for tensor in model.graph.initializer:
        try:
            arr = numpy_helper.to_array(tensor)
        except Exception as e:
            raise InputError(f"initializer '{tensor.name}' cannot be decoded ({e})", path=path) from None
        check_finite(arr, f"initializer '{tensor.name}'", path)
        out[tensor.name] = arr
    return out


def check_finite(arr: np.ndarray, what: str, path: str) -> None:
    """Refuse NaN or infinite entries in a float constant."""
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{what} has {bad} NaN/Inf value(s) (refused)", path=path)
