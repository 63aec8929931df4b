"""Noise sampling for randomized smoothing (:mod:`verifier.engines.smoothing`): class counts of
``f(x + ε)`` drawn batch by batch from one seeded generator.

Holds the batch plan (:func:`batch_plan`), the noise-to-logits map (:func:`sampler`, with the
optional fold of a narrowing first ``Linear`` layer, :func:`foldable`) and the counting loop
(:func:`sample_counts`), which may overlap noise generation on a worker thread with the forward
passes (:func:`default_overlap`; ``BUFFERS`` noise buffers ``(batch, d)`` in turn, the worker
started with SIGINT/SIGTERM blocked and always joined). The draws, and so the counts, are the
same with and without the overlap.
"""
from __future__ import annotations

import math
import os
import queue
import signal
import threading
import time
from typing import Callable, Sequence

import torch

from verifier.ir.graph import Graph

BUFFERS = 3   # noise buffers in turn when overlapping (measured: 3 absorb jitter better than 2)


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
    overlap = overlap and model.device.type == "cpu"  # CUDA: a freed buffer may still be read by queued kernels
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
