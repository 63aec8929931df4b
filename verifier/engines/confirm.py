"""Turning candidate inputs into counterexamples: only what onnxruntime confirms counts."""
from __future__ import annotations

import numpy as np
import torch

from verifier.engines.onnx_runner import OnnxRunner, float32_inside
from verifier.result import Counterexample
from verifier.spec.property import Case


def confirm(runner: OnnxRunner, case: Case, case_index: int, candidates: np.ndarray,
            input_shape: tuple[int, ...]) -> Counterexample | None:
    """The first candidate (flat rows ``(N, n_inputs)``) whose float32 rounding lies in the
    case's region and whose onnxruntime output falls into the unsafe set exactly."""
    region = case.region
    if len(candidates) == 0:
        return None
    xs = np.stack([float32_inside(np.asarray(c, np.float64), region.lower, region.upper)
                   for c in candidates])
    inside = [region.contains(x.astype(np.float64)) for x in xs]
    xs = xs[np.array(inside, dtype=bool)]
    if len(xs) == 0:
        return None
    ys = runner.run(xs)
    for x, y in zip(xs, ys):
        for k, conj in enumerate(case.unsafe):
            margin = conj.margin(y)
            if margin <= 0.0:
                return Counterexample(x=x.reshape(input_shape), y=y, case_index=case_index,
                                      disjunct_index=k, margin=float(margin))
    return None


class UnsafeSet:
    """The unsafe DNF of one case as padded tensors for batched margin evaluation.

    ``C``: ``(K, M, n_out)``, ``d``: ``(K, M)``; missing rows have ``C = 0``, ``d = +inf``.
    """

    def __init__(self, case: Case, n_outputs: int, dtype: torch.dtype, device: torch.device):
        K = len(case.unsafe)
        M = max([c.C.shape[0] for c in case.unsafe] + [1])
        C = np.zeros((K, M, n_outputs))
        d = np.full((K, M), np.inf)
        for k, conj in enumerate(case.unsafe):
            m = conj.C.shape[0]
            C[k, :m], d[k, :m] = conj.C, conj.d
        self.C = torch.as_tensor(C, dtype=dtype, device=device)
        self.d = torch.as_tensor(d, dtype=dtype, device=device)

    def margins(self, y: torch.Tensor) -> torch.Tensor:
        """``min_k max_i (C_k y - d_k)_i`` per sample: ``(B, n_out)`` → ``(B,)``; <= 0 is unsafe."""
        vals = torch.einsum("kmo,bo->bkm", self.C, y) - self.d
        return vals.amax(dim=2).amin(dim=1)
