"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): probabilistic ℓ2 certificates.

The *smoothed classifier* of a network ``f`` is ``g(x) = argmax_c P(f(x + ε) = c)`` with
``ε ~ N(0, σ² I)`` drawn in the model's (ONNX) input space: a model that normalises its
input internally gets the noise before that normalisation. :func:`certify` returns a class
``c`` and a radius ``R`` such that, with probability at least ``1 - alpha`` over the sampling
noise, ``g(x') = c`` for every ``x'`` with ``‖x' - x‖₂ < R``. The statement is about ``g``, not
about the network ``f``; it is probabilistic, never a proof.

Sampling protocol (what a seed fixes): one ``torch.Generator`` on the model's device, seeded
with ``seed``; certify draws its ``n0`` selection samples and then its ``n`` estimation samples
in batches of ``batch`` (the last one smaller), each batch being
``torch.empty(m, n_inputs).normal_(0, sigma, generator=gen) + x`` in the model's dtype.
Noise, forward passes, argmax and counting all stay on the device. With ``overlap`` (default
on CPU when a core is left free by torch's intra-op threads) a second thread draws the next batch while the network runs on
the current one: the same draws in the same order, so the same counts. With ``fold=True``
(off by default) the noise is drawn after a narrowing first ``Linear`` layer instead, as
``(m, h)`` normals (see :func:`~verifier.engines.smoothing_sampling.sampler`): the same law of
``f(x + ε)``, other samples for a seed. Every sample is fresh: no noise is ever reused.

This module holds the settings checks, :func:`certify`, :func:`predict` and their
:class:`SmoothingResult`; the sampling machinery (batch plan, noise-to-logits map, counting loop
with its noise worker thread) lives in :mod:`verifier.engines.smoothing_sampling`, whose public
names are re-exported here.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm

from verifier.engines.smoothing_sampling import (BUFFERS, Forward, batch_plan,  # noqa: F401  (re-exported)
                                                 default_overlap, foldable, sample_counts, sampler)
from verifier.errors import InputError
from verifier.ir.graph import Graph
from verifier.result import Certificate

ABSTAIN = -1
METHOD = "randomized smoothing"


@dataclass(frozen=True)
class SmoothingResult:
    """Answer of :func:`certify` or :func:`predict`.

    ``prediction``: class index of the smoothed classifier, or ``-1`` (abstain).
    ``radius``: certified ℓ2 radius (0 when abstaining; always 0 for :func:`predict`).
    ``pA_lower``: one-sided Clopper–Pearson lower bound of P(f(x+ε) = prediction) (certify),
    ``counts``: ``(n_outputs,)`` int64 class counts of the estimation samples;
    ``selection_counts``: ``(n_outputs,)`` counts of the ``n0`` selection samples (certify).
    """

    prediction: int
    radius: float
    pA_lower: float
    counts: np.ndarray
    certificate: Certificate
    selection_counts: np.ndarray | None = None
    p_value: float | None = None
    reason: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


def check_settings(sigma: float, n0: int, n: int, alpha: float, batch: int) -> None:
    """Raise :class:`InputError` for a setting outside its domain."""
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise InputError(f"sigma must be a positive finite number, got {sigma}")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise InputError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    for name, value in (("n0", n0), ("n", n), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value}")


def flat_input(model: Graph, x: Any) -> torch.Tensor:
    """One input of shape ``model.input_shape`` (or its full ONNX shape, or flat) as a flat
    ``(n_inputs,)`` tensor in the model's dtype on its device."""
    if isinstance(x, torch.Tensor):
        arr = x.detach()
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise InputError(f"input has dtype {a.dtype}, expected numbers")
        arr = torch.as_tensor(a)
    shapes = {tuple(model.input_shape), tuple(model.input_full_shape), (model.n_inputs,)}
    if tuple(arr.shape) not in shapes:
        raise InputError(f"input has shape {tuple(arr.shape)}, the model expects "
                         f"{tuple(model.input_shape)} (or {model.n_inputs} values flat)")
    flat = arr.reshape(-1).to(device=model.device, dtype=model.dtype)
    if not bool(torch.isfinite(flat).all()):
        raise InputError("input contains NaN or infinite values")
    return flat


def on_device(model: Graph | str | os.PathLike, device: str | torch.device | None) -> Graph:
    """``model`` itself (an ONNX path is loaded), or a copy on ``device`` when that differs."""
    if isinstance(model, (str, os.PathLike)):
        from verifier.ir.onnx_import import load_onnx

        model = load_onnx(model)
    if device is None:
        return model
    try:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available on this machine")
        return model if dev == model.device else model.to(device=dev)
    except (RuntimeError, AssertionError) as e:
        raise InputError(f"device '{device}' is not usable: {str(e).splitlines()[0]}") from None


def lower_confidence_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper–Pearson lower bound of a binomial proportion ``k / n``."""
    if k <= 0:
        return 0.0
    return float(beta.ppf(alpha, k, n - k + 1))


def _generator(model: Graph, seed: int) -> torch.Generator:
    return torch.Generator(device=model.device).manual_seed(int(seed))


def certify(model: Graph, x: Any, sigma: float, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
            batch: int = 1000, seed: int = 0, device: str | torch.device | None = None,
            timeout: float | None = None, overlap: bool | None = None, fold: bool = False) -> SmoothingResult:
    """Cohen et al.'s CERTIFY: pick the top class with ``n0`` noisy samples, count it with ``n``
    fresh ones, bound its probability below (Clopper–Pearson, level ``alpha``) by ``pA``; if
    ``pA >= 1/2`` the smoothed classifier g is certified at ``x`` within ℓ2 radius
    ``sigma · Φ⁻¹(pA)`` with probability at least ``1 - alpha``; otherwise abstain (-1).

    ``x``: one input, shape ``model.input_shape`` or flat ``(n_inputs,)``. ``timeout``
    (seconds): when it passes before all samples are drawn the answer is an abstention.
    ``overlap``: generate noise on a second thread while the network runs (see
    :func:`sample_counts`; default: on CPU when a core is free of torch's intra-op threads); same counts either way.
    ``fold``: draw the noise after the first layer when it is a narrowing ``Linear`` (see
    :func:`sampler`): the same law of ``f(x + ε)``, fewer normals, other samples for a seed.
    """
    check_settings(sigma, n0, n, alpha, batch)
    model = on_device(model, device)
    xf = flat_input(model, x)
    start = time.monotonic()
    deadline = None if timeout is None else start + float(timeout)
    gen = _generator(model, seed)
    overlap = default_overlap(model.device) if overlap is None else bool(overlap)
    both, (d0, d1) = sample_counts(model, xf, sigma, [n0, n], batch, gen, deadline, overlap, fold)
    sel_np, cnt_np = both.cpu().numpy()
    elapsed = time.monotonic() - start
    stats = {"time": elapsed, "samples": d0 + d1, "samples_per_second": (d0 + d1) / max(elapsed, 1e-12),
             "overlap": overlap, "fold": fold and foldable(model)}
    settings = {"sigma": float(sigma), "n0": int(n0), "n": int(n), "alpha": float(alpha), "seed": int(seed),
                **({"fold": True} if stats["fold"] else {})}   # a folded seed draws other samples
    if d0 < n0 or d1 < n:
        reason = f"timeout after {d0 + d1} of {n0 + n} samples"
        return _abstention(settings, sel_np, cnt_np, 0.0, reason, stats)
    top = int(np.argmax(sel_np))
    pA = lower_confidence_bound(int(cnt_np[top]), n, alpha)
    if pA < 0.5:
        reason = f"lower bound {pA:.4g} of P(class {top}) is below 1/2"
        return _abstention(settings, sel_np, cnt_np, pA, reason, stats)
    radius = float(sigma * norm.ppf(pA))
    data = {**settings, **_guarantee(alpha), "prediction": top, "radius": radius, "norm": "l2",
            "pA_lower": pA, "count": int(cnt_np[top]),
            "statement": f"with probability at least {1 - alpha:g} over the sampling noise, the smoothed "
                         f"classifier g (Gaussian noise, sigma={sigma:g}) returns class {top} at every "
                         f"input within l2 distance {radius:.6g} of x; this says nothing directly "
                         f"about the network f"}
    cert = Certificate(kind="probabilistic", method=METHOD, data=data)
    return SmoothingResult(top, radius, pA, cnt_np, cert, selection_counts=sel_np, stats=stats)


def _guarantee(alpha: float) -> dict[str, Any]:
    return {"confidence": 1.0 - alpha, "classifier": "smoothed classifier g, not the network f",
            "noise": "isotropic Gaussian N(0, sigma^2 I) in the ONNX input space"}


def _abstention(settings: dict, sel: np.ndarray | None, cnt: np.ndarray, pA: float, reason: str,
                stats: dict, p_value: float | None = None) -> SmoothingResult:
    data = {**settings, **_guarantee(settings["alpha"]), "prediction": ABSTAIN, "radius": 0.0,
            "pA_lower": pA, "reason": reason, "statement": "abstained: no claim is made"}
    cert = Certificate(kind="probabilistic", method=METHOD, data=data)
    return SmoothingResult(ABSTAIN, 0.0, pA, cnt, cert, selection_counts=sel, p_value=p_value,
                           reason=reason, stats=stats)


def predict(model: Graph, x: Any, sigma: float, n: int = 100_000, alpha: float = 0.001,
            batch: int = 1000, seed: int = 0, device: str | torch.device | None = None,
            timeout: float | None = None, overlap: bool | None = None, fold: bool = False) -> SmoothingResult:
    """Cohen et al.'s PREDICT: the top class of ``n`` noisy samples, returned only when a
    two-sided binomial test of the top two counts rejects equality at level ``alpha``
    (then, with probability at least ``1 - alpha``, it is g's class at ``x``); else -1.
    ``overlap``, ``fold``: as for :func:`certify`."""
    check_settings(sigma, 1, n, alpha, batch)
    model = on_device(model, device)
    xf = flat_input(model, x)
    start = time.monotonic()
    deadline = None if timeout is None else start + float(timeout)
    overlap = default_overlap(model.device) if overlap is None else bool(overlap)
    cnt, (drawn,) = sample_counts(model, xf, sigma, [n], batch, _generator(model, seed), deadline, overlap, fold)
    cnt_np = cnt[0].cpu().numpy()
    elapsed = time.monotonic() - start
    stats = {"time": elapsed, "samples": drawn, "samples_per_second": drawn / max(elapsed, 1e-12),
             "overlap": overlap, "fold": fold and foldable(model)}
    settings = {"sigma": float(sigma), "n": int(n), "alpha": float(alpha), "seed": int(seed),
                **({"fold": True} if stats["fold"] else {})}
    if drawn < n:
        return _abstention(settings, None, cnt_np, 0.0, f"timeout after {drawn} of {n} samples", stats)
    order = np.argsort(-cnt_np, kind="stable")
    nA = int(cnt_np[order[0]])
    nB = int(cnt_np[order[1]]) if len(order) > 1 else 0
    p = float(binomtest(nA, nA + nB, 0.5).pvalue)
    if p > alpha:
        reason = f"binomial test of the top two counts: p-value {p:.4g} > alpha"
        return _abstention(settings, None, cnt_np, 0.0, reason, stats, p_value=p)
    top = int(order[0])
    data = {**settings, **_guarantee(alpha), "prediction": top, "p_value": p,
            "statement": f"with probability at least {1 - alpha:g} over the sampling noise, the smoothed "
                         f"classifier g (Gaussian noise, sigma={sigma:g}) returns class {top} at x"}
    cert = Certificate(kind="probabilistic", method=METHOD, data=data)
    return SmoothingResult(top, 0.0, 0.0, cnt_np, cert, p_value=p, stats=stats)
