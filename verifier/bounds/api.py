"""Bounds on a batch of boxes for the public ``compute_bounds``."""
from __future__ import annotations

import torch

from verifier.bounds.crown import alpha_spec_bounds, interval_spec_bounds, intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region
from verifier.config import BoundsConfig
from verifier.errors import InputError
from verifier.ir.graph import Graph


def bounds_for_boxes(model: Graph, lower: torch.Tensor, upper: torch.Tensor, method: str,
                     C: torch.Tensor | None, deadline: float, config: BoundsConfig | None = None):
    """See :func:`verifier.compute_bounds`."""
    config = config or BoundsConfig()
    if method not in ("ibp", "crown", "alpha-crown", "lp"):
        raise InputError(f"unknown bound method '{method}' (ibp, crown, alpha-crown, lp)")
    B = lower.shape[0]
    kw = dict(dtype=model.dtype, device=model.device)
    lower = lower.to(**kw).reshape(B, *model.input_full_shape)
    upper = upper.to(**kw).reshape(B, *model.input_full_shape)
    if bool((lower > upper).any()):
        raise InputError("a lower bound exceeds its upper bound")
    C = _rows(C, B, model, kw)
    if method == "lp":
        from verifier.engines.lp import lp_spec_bounds

        return lp_spec_bounds(model, lower, upper, C, deadline)
    region = Region(lower, upper)
    both = torch.cat([C, -C], dim=1)
    R = C.shape[1]
    with torch.no_grad():
        lines: dict = {}
        bounds = intermediate_bounds(model, region, config, use_crown=method != "ibp", lines=lines)
        lb = interval_spec_bounds(model, both, bounds)
        if method != "ibp":
            lb = torch.maximum(lb, spec_bounds(model, both, bounds, region, lines=lines))
    if method == "alpha-crown":
        lb = torch.maximum(lb, alpha_spec_bounds(model, both, bounds, region, config, deadline))
    return lb[:, :R].detach(), -lb[:, R:].detach()


def _rows(C, B: int, model: Graph, kw) -> torch.Tensor:
    if C is None:
        return torch.eye(model.n_outputs, **kw).unsqueeze(0).expand(B, -1, -1)
    C = torch.as_tensor(C).to(**kw)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(B, -1, -1)
    if C.shape[0] != B or C.shape[2] != model.n_outputs:
        raise InputError(f"C has shape {list(C.shape)}; expected (n_rows, {model.n_outputs}) or "
                         f"({B}, n_rows, {model.n_outputs})")
    return C
