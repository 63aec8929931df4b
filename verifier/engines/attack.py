"""PGD counterexample search: batched random restarts, margin loss over the unsafe DNF."""
from __future__ import annotations

import math
import time

import torch

from verifier.config import AttackConfig
from verifier.engines.confirm import UnsafeSet, confirm
from verifier.engines.onnx_runner import OnnxRunner
from verifier.ir.graph import Graph
from verifier.result import Counterexample
from verifier.spec.property import Case, InputRegion

SAMPLE_CHUNK = 65536


def attack_case(graph: Graph, case: Case, case_index: int, runner: OnnxRunner, config: AttackConfig,
                deadline: float, generator: torch.Generator) -> Counterexample | None:
    """Search one case's region for an input whose output lies in its unsafe set."""
    dtype, device = graph.dtype, graph.device
    lower = torch.as_tensor(case.region.lower, dtype=dtype, device=device)
    upper = torch.as_tensor(case.region.upper, dtype=dtype, device=device)
    unsafe = UnsafeSet(case, graph.n_outputs, dtype, device)
    best_x, best_m = None, None
    for round_index in range(config.rounds):
        if time.monotonic() >= deadline:
            break
        x0 = _starts(lower, upper, config.restarts, generator, with_center=round_index == 0)
        if round_index == 0 and lower.numel() <= config.sample_max_dim and config.samples:
            x0 = torch.cat([x0[:1], _best_samples(graph, unsafe, lower, upper, config, generator, deadline)])
        x, m = pgd(graph, unsafe, case.region, x0, lower, upper, config, deadline)
        best_x = x if best_x is None else torch.cat([best_x, x])
        best_m = m if best_m is None else torch.cat([best_m, m])
        order = torch.argsort(best_m)[: config.confirm_top]
        best_x, best_m = best_x[order], best_m[order]
        if best_m[0] <= 1e-4 or round_index == config.rounds - 1:
            found = confirm(runner, case, case_index, best_x.double().cpu().numpy(), graph.input_shape)
            if found is not None:
                return found
    return None


def _starts(lower, upper, n: int, generator, with_center: bool) -> torch.Tensor:
    u = torch.rand((n, lower.numel()), generator=generator, dtype=torch.float64).to(lower)
    x = lower + u * (upper - lower)
    if with_center:
        x[0] = (lower + upper) / 2
    return x


def _best_samples(graph, unsafe: UnsafeSet, lower, upper, config: AttackConfig, generator,
                  deadline: float) -> torch.Tensor:
    """The ``restarts - 1`` lowest-margin points among ``config.samples`` uniform samples (fewer
    when the deadline comes first)."""
    best_x, best_m = None, None
    chunk = unsafe.chunk_for(SAMPLE_CHUNK)
    with torch.no_grad():
        for start in range(0, config.samples, chunk):
            if start and time.monotonic() >= deadline:
                break
            x = _starts(lower, upper, min(chunk, config.samples - start), generator, with_center=False)
            m = unsafe.margins(graph.forward_flat(x))
            best_x = x if best_x is None else torch.cat([best_x, x])
            best_m = m if best_m is None else torch.cat([best_m, m])
            keep = torch.argsort(best_m)[: config.restarts - 1]
            best_x, best_m = best_x[keep], best_m[keep]
    return best_x


def _project(x, region: InputRegion, lower, upper):
    if region.l2_center is not None:
        c = torch.as_tensor(region.l2_center, dtype=x.dtype, device=x.device)
        for _ in range(3):
            delta = x - c
            norm = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = c + delta * torch.clamp(region.l2_radius / norm, max=1.0)
            x = torch.maximum(torch.minimum(x, upper), lower)
    return torch.maximum(torch.minimum(x, upper), lower)


def pgd(graph, unsafe: UnsafeSet, region, x, lower, upper, config: AttackConfig, deadline):
    """Signed-gradient descent on the margin; returns the best point per restart and its margin."""
    half = (upper - lower) / 2
    best_x, best_m = x.clone(), torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)
    for step in range(config.steps):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            m = unsafe.margins(graph.forward_flat(x))
        improved = m.detach() < best_m
        best_x[improved], best_m[improved] = x.detach()[improved], m.detach()[improved]
        if bool((best_m <= 0).any()) or time.monotonic() >= deadline:
            break
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(m.sum(), x)
        size = config.step_fraction * half * 0.5 * (1 + math.cos(math.pi * step / config.steps)) + 1e-3 * half
        x = _project(x.detach() - size * torch.sign(grad), region, lower, upper)
    return best_x, best_m


def attack(graph: Graph, cases, runner: OnnxRunner, config: AttackConfig, deadline: float,
           seed: int) -> Counterexample | None:
    """Attack every case in turn (seeded); the first confirmed counterexample, else None."""
    generator = torch.Generator().manual_seed(seed)
    for i, case in enumerate(cases):
        if time.monotonic() >= deadline:
            break
        found = attack_case(graph, case, i, runner, config, deadline, generator)
        if found is not None:
            return found
    return None
