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
on CPU with two or more cores) a second thread draws the next batch while the network runs on
the current one: the same draws in the same order, so the same counts. With ``fold=True``
(off by default) the noise is drawn after a narrowing first ``Linear`` layer instead, as
``(m, h)`` normals (see :func:`sampler`): the same law of ``f(x + ε)``, other samples for a seed.
Every sample is fresh: no noise is ever reused.
"""
from __future__ import annotations

import math
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import beta, binomtest, norm

from verifier.errors import InputError
from verifier.ir.graph import Graph
from verifier.result import Certificate

ABSTAIN = -1
METHOD = "randomized smoothing"
BUFFERS = 3   # noise buffers in turn when overlapping (measured: 3 absorb jitter better than 2)


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


def batch_plan(nums: Sequence[int], batch: int) -> list[tuple[int, int]]:
    """``(phase, size)`` of every batch, in drawing order: phase ``p`` draws ``nums[p]`` samples
    in batches of ``batch``, its last batch smaller."""
    return [(p, min(batch, num - i)) for p, num in enumerate(nums) for i in range(0, num, batch)]


def default_overlap(device: torch.device) -> bool:
    """Whether :func:`sample_counts` overlaps noise with forward passes by default: on CPU
    when this process may run on at least two cores (on CUDA kernels are asynchronous already).
    Measured on 2 cores: +15% (CNN) to +70% (MLPs) when the second core is free, 2-8% slower when
    another process keeps it busy (pass ``overlap=False`` there)."""
    if device.type != "cpu":
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores >= 2


def foldable(model: Graph) -> bool:
    """Whether the model starts with a :func:`sampler` ``fold``-able layer: a ``Linear`` on the
    flat input (``W`` ``(n_inputs, h)``, ``h < n_inputs``) whose input nothing else reads."""
    first = model.nodes[0] if model.nodes else None
    if first is None or first.op != "Linear" or first.inputs != (model.input_name,):
        return False
    if any(model.input_name in node.inputs for node in model.nodes[1:]):
        return False
    W, b = first.params.get("W"), first.params.get("b")
    if W is None or W.dim() != 2 or W.shape[0] != model.n_inputs or W.shape[1] >= model.n_inputs:
        return False
    out = math.prod(first.out_shape)
    return out == W.shape[1] and (b is None or tuple(b.shape) == (out,))


Forward = Callable[[torch.Tensor], torch.Tensor]


def sampler(model: Graph, x: torch.Tensor, fold: bool = False) -> tuple[int, torch.Tensor | None, Forward]:
    """How noise becomes logits: ``(d, shift, forward)``. A noise batch ``ε`` ``(m, d)`` is drawn
    as ``normal_(0, sigma)``, ``shift`` ``(d,)`` (if any) is added to it in place, and
    ``forward(batch)`` gives the logits ``(m, n_outputs)``.

    Plain: ``d = n_inputs``, ``shift = x``, ``forward = model.forward_flat``. With ``fold`` (and
    :func:`foldable`), the first layer ``y = u @ W + b`` is folded into the noise: with the
    reduced QR ``W = Q R`` (``R`` ``(h, h)``), ``ε @ W = (ε @ Q) @ R`` and ``ε @ Q`` is exactly
    ``N(0, sigma² I_h)``, so ``y(x + ε)`` has the law of ``z @ R + (x @ W + b)`` with ``z``
    ``(m, h)`` Gaussian: ``d = h`` normals per sample instead of ``n_inputs``, the same law of
    ``f(x + ε)`` (samples still i.i.d.), but not the same samples for a seed.
    """
    if not (fold and foldable(model)):
        return model.n_inputs, x, model.forward_flat
    first = model.nodes[0]
    W = first.params["W"].to(torch.float64).cpu()
    c = x.to(torch.float64).cpu() @ W
    if "b" in first.params:
        c = c + first.params["b"].to(torch.float64).cpu()
    R = torch.linalg.qr(W, mode="reduced").R
    R, c = (t.to(device=model.device, dtype=model.dtype) for t in (R, c))

    def forward(z: torch.Tensor) -> torch.Tensor:
        values = {first.name: torch.addmm(c, z, R).reshape(z.shape[0], *first.out_shape)}
        for node in model.nodes[1:]:
            values[node.name] = model.ops[node.name].forward(*[values[i] for i in node.inputs])
        return values[model.output_name].reshape(z.shape[0], -1)

    return R.shape[0], None, forward


def _count(forward: Forward, batch: torch.Tensor, counts: torch.Tensor, ones: torch.Tensor) -> None:
    """Add the classes of ``forward(batch)`` (``batch``: ``(m, d)``) to ``counts`` ``(n_outputs,)``
    int64; ``ones``: ``(>= m,)`` int64 ones (one fused ``index_add_``, cheaper than bincount + add)."""
    top = forward(batch).max(dim=1).indices   # first maximum, like argmax; faster
    counts.index_add_(0, top, ones[:top.numel()])


def _noise_worker(bufs: list[torch.Tensor], plan: list[tuple[int, int]], shift: torch.Tensor | None,
                  sigma: float, generator: torch.Generator, free: queue.SimpleQueue,
                  full: queue.SimpleQueue, stop: threading.Event) -> None:
    """Producer of :func:`sample_counts`: for each planned batch, take a free buffer ``(batch,
    d)``, fill its first ``m`` rows with ``ε + shift`` and hand ``(slot, phase, m)`` on. It alone
    uses ``generator``, strictly in plan order; an exception is handed on instead."""
    try:
        for phase, m in plan:
            slot = free.get()
            if stop.is_set():
                return
            noise = bufs[slot][:m].normal_(0.0, sigma, generator=generator)
            if shift is not None:
                noise.add_(shift)
            full.put((slot, phase, m))
    except BaseException as e:  # noqa: BLE001 - re-raised by the consumer
        full.put(e)


def sample_counts(model: Graph, x: torch.Tensor, sigma: float, nums: Sequence[int], batch: int,
                  generator: torch.Generator, deadline: float | None = None,
                  overlap: bool | None = None, fold: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Class counts of ``f(x + ε)`` for consecutive phases of ``nums[p]`` Gaussian samples each,
    drawn ``batch`` at a time (:func:`batch_plan`) from one ``generator``, strictly in order.

    ``x``: flat ``(n_inputs,)`` on the model's device. Returns ``(counts, drawn)``: counts
    ``(len(nums), n_outputs)`` int64 on the device and the samples drawn per phase (fewer than
    ``nums[p]`` only when ``deadline`` (``time.monotonic()`` value) passed between batches).
    ``fold``: see :func:`sampler`.

    ``overlap`` (default :func:`default_overlap`): a second thread generates the noise of the
    next batch (torch releases the GIL in its kernels) while this one runs forward, argmax and
    counting on the current one, with ``BUFFERS`` buffers in turn. The noise, and so the
    counts, are the same with and without it: only that thread draws, in the same order and
    batch sizes. Signals reach this thread only; the worker is joined before returning.
    """
    counts = torch.zeros(len(nums), model.n_outputs, dtype=torch.int64, device=model.device)
    drawn = [0] * len(nums)
    plan = batch_plan(nums, batch)
    if not plan:
        return counts, drawn
    if overlap is None:
        overlap = default_overlap(model.device)
    d, shift, forward = sampler(model, x, fold)
    width = max(m for _, m in plan)
    bufs = [torch.empty(width, d, dtype=model.dtype, device=model.device)
            for _ in range(BUFFERS if overlap and len(plan) > 1 else 1)]
    ones = torch.ones(width, dtype=torch.int64, device=model.device)
    with torch.no_grad():
        if len(bufs) == 1:
            for phase, m in plan:
                if deadline is not None and time.monotonic() > deadline:
                    break
                noise = bufs[0][:m].normal_(0.0, sigma, generator=generator)
                _count(forward, noise if shift is None else noise.add_(shift), counts[phase], ones)
                drawn[phase] += m
            return counts, drawn
        free: queue.SimpleQueue = queue.SimpleQueue()
        full: queue.SimpleQueue = queue.SimpleQueue()
        for slot in range(len(bufs)):
            free.put(slot)
        stop = threading.Event()
        worker = threading.Thread(target=_noise_worker, name="smoothing-noise", daemon=True,
                                  args=(bufs, plan, shift, sigma, generator, free, full, stop))
        try:
            _start(worker)
            for _ in plan:
                if deadline is not None and time.monotonic() > deadline:
                    break
                item = full.get()
                if isinstance(item, BaseException):
                    raise item
                slot, phase, m = item
                _count(forward, bufs[slot][:m], counts[phase], ones)
                drawn[phase] += m
                free.put(slot)
        finally:
            _stop(worker, stop, free)
    return counts, drawn


def _start(worker: threading.Thread) -> None:
    """Start ``worker`` with SIGINT and SIGTERM blocked: it keeps that mask, so signals reach
    this thread only; one that came meanwhile is delivered here right after."""
    mask = getattr(signal, "pthread_sigmask", None)   # not on Windows
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if mask else None
    try:
        worker.start()
    finally:
        if mask:
            mask(signal.SIG_SETMASK, old)


def _stop(worker: threading.Thread, stop: threading.Event, free: queue.SimpleQueue) -> None:
    """Stop the noise worker and wait for its end, even when a signal handler raises meanwhile
    (re-raised afterwards): a daemon thread still inside a torch kernel when the interpreter
    exits aborts the process ("terminate called without an active exception")."""
    error: BaseException | None = None
    while True:
        try:
            stop.set()
            free.put(0)   # wakes the worker if it waits for a buffer
            while worker.is_alive():
                worker.join()
            break
        except BaseException as e:  # noqa: BLE001 - re-raised below
            error = e
    if error is not None:
        raise error


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
    :func:`sample_counts`; default: on CPU with two or more cores); same counts either way.
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
