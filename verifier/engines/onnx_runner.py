"""Re-running inputs with onnxruntime on the original ONNX file: the judge of counterexamples."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from verifier.errors import InputError
from verifier.ir.graph import Graph


class OnnxRunner:
    """An onnxruntime session on ``graph.onnx_path``; ``run`` takes flat float32 inputs."""

    def __init__(self, graph: Graph):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(graph.onnx_path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types vary by version
            first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            raise InputError(f"onnxruntime cannot load the model, so no counterexample could be "
                             f"confirmed ({first})", path=str(graph.onnx_path)) from None
        self.input = self.session.get_inputs()[0]
        self.full_shape = graph.input_full_shape

    def run(self, x_flat: np.ndarray) -> np.ndarray:
        """Outputs ``(N, n_outputs)`` float64 for inputs ``(N, n_inputs)`` (cast to float32)."""
        x = np.asarray(x_flat, dtype=np.float32)
        outs = [self.session.run(None, {self.input.name: row.reshape(self.full_shape)})[0].reshape(-1)
                for row in x]
        return np.stack(outs).astype(np.float64)


def float32_inside(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Round ``x`` to float32 so that every entry stays within ``[lower, upper]`` (float64).

    Rounding to the nearest float32 can step just outside a bound; such entries move one
    float32 step back inside. Entries whose box holds no float32 stay as rounded (the caller's
    containment check then fails).
    """
    x32 = np.clip(x, lower, upper).astype(np.float32)
    low = x32.astype(np.float64) < lower
    x32[low] = np.nextafter(x32[low], np.float32(np.inf))
    high = x32.astype(np.float64) > upper
    x32[high] = np.nextafter(x32[high], np.float32(-np.inf))
    return x32
