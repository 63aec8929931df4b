"""The unsafe rows of one case as tensors, and per-disjunct scores of row bounds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verifier.spec.property import Case


@dataclass(frozen=True)
class RowSpec:
    """All rows ``C y <= d`` of a case's disjuncts stacked: ``C`` ``(R, n_out)``, ``d`` ``(R,)``,
    ``group[r]`` = the disjunct of row ``r``; ``K`` disjuncts."""

    C: torch.Tensor
    d: torch.Tensor
    group: torch.Tensor
    K: int

    @staticmethod
    def of(case: Case, n_outputs: int, dtype: torch.dtype, device) -> "RowSpec":
        Cs = [conj.C for conj in case.unsafe]
        C = np.concatenate(Cs) if Cs and sum(c.shape[0] for c in Cs) else np.zeros((0, n_outputs))
        d = np.concatenate([conj.d for conj in case.unsafe]) if C.shape[0] else np.zeros(0)
        group = np.concatenate([[k] * c.shape[0] for k, c in enumerate(Cs)]) if C.shape[0] else np.zeros(0)
        kw = dict(dtype=dtype, device=device)
        return RowSpec(torch.as_tensor(C, **kw), torch.as_tensor(d, **kw),
                       torch.as_tensor(group, dtype=torch.long, device=device), len(Cs))

    def batch_C(self, B: int) -> torch.Tensor:
        """``C`` repeated for ``B`` domains: ``(B, R, n_out)``."""
        return self.C.unsqueeze(0).expand(B, -1, -1)

    def disjunct_scores(self, lb: torch.Tensor) -> torch.Tensor:
        """``max_{r in k} (lb_r - d_r)`` per disjunct: ``(B, R)`` → ``(B, K)``; -inf without rows."""
        B = lb.shape[0]
        out = torch.full((B, self.K), -torch.inf, dtype=lb.dtype, device=lb.device)
        if self.C.shape[0] == 0:
            return out
        return out.scatter_reduce(1, self.group.expand(B, -1), lb - self.d, reduce="amax")

    def worst(self, lb: torch.Tensor) -> torch.Tensor:
        """The weakest disjunct's score per domain: ``(B,)``; > margin everywhere = closed."""
        return self.disjunct_scores(lb).amin(dim=1)

    def worst_combined(self, lb: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
        """:meth:`worst` where each disjunct's score may also come from a combination of its
        rows: ``combined`` ``(B, K)`` (see :mod:`verifier.engines.row_combination`) → ``(B,)``."""
        return torch.maximum(self.disjunct_scores(lb), combined).amin(dim=1)

    def worst_row(self, lb: torch.Tensor) -> torch.Tensor:
        """Index of the best row of the weakest disjunct per domain (for branching): ``(B,)``."""
        scores = self.disjunct_scores(lb)
        k = scores.argmin(dim=1)
        in_k = self.group.unsqueeze(0) == k.unsqueeze(1)
        return torch.where(in_k, lb - self.d, torch.full_like(lb, -torch.inf)).argmax(dim=1)
