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


MARGIN_CHUNK = 1 << 22   # values of C_k y per chunk of samples in UnsafeSet.margins (16 MiB in float32)


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

    def chunk_for(self, samples: int) -> int:
        """How many of ``samples`` points to evaluate at once: all of them for a property of a
        few rows, fewer for one with thousands of disjuncts (``MARGIN_CHUNK`` values of
        ``C_k y`` per chunk), so a chunk costs about the same time and memory either way."""
        K, M = self.d.shape
        return max(1, min(samples, MARGIN_CHUNK // max(1, K * M)))

    def margins(self, y: torch.Tensor) -> torch.Tensor:
        """``min_k max_i (C_k y - d_k)_i`` per sample: ``(B, n_out)`` → ``(B,)``; <= 0 is unsafe.
        Samples go in chunks of at most ``MARGIN_CHUNK`` values of ``C_k y`` (a property with
        thousands of disjuncts would otherwise need gigabytes for a large batch)."""
        step = self.chunk_for(y.shape[0])
        if y.shape[0] <= step:
            return self._margins(y)
        return torch.cat([self._margins(y[i:i + step]) for i in range(0, y.shape[0], step)])

    def _margins(self, y: torch.Tensor) -> torch.Tensor:
        vals = torch.einsum("kmo,bo->bkm", self.C, y) - self.d
        return vals.amax(dim=2).amin(dim=1)
