"""Noise sampling for randomized smoothing (:mod:`verifier.engines.smoothing`): class counts of
``f(x + ε)`` drawn batch by batch from one seeded generator.

Holds the batch plan (:func:`batch_plan`), the noise-to-logits map (:func:`sampler`, with the
optional fold of a narrowing first ``Linear`` layer, :func:`foldable`) and the counting loop
(:func:`sample_counts`, class indices counted in bulk by :class:`_Tally`), which may overlap
noise generation on a worker thread with the forward passes on CPU when a core is free of
torch's intra-op threads (:func:`default_overlap`; ``BUFFERS`` noise buffers ``(batch, d)`` in
turn, the worker started with SIGINT/SIGTERM blocked and always joined). The draws, and so the
counts, are the same with and without the overlap.
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
TALLY_CAPACITY = 1 << 22   # class indices held on the device before they are counted (32 MiB)


def batch_plan(nums: Sequence[int], batch: int) -> list[tuple[int, int]]:
    """``(phase, size)`` of every batch, in drawing order: phase ``p`` draws ``nums[p]`` samples
    in batches of ``batch``, its last batch smaller."""
    return [(p, min(batch, num - i)) for p, num in enumerate(nums) for i in range(0, num, batch)]


def default_overlap(device: torch.device) -> bool:
    """Whether :func:`sample_counts` overlaps noise with forward passes by default: on CPU when
    this process may run on more cores than torch's intra-op threads take, so that the noise
    thread has a core of its own. Measured on 2 cores with 1 intra-op thread: +15% (CNN) to
    +70% (MLPs) when the second core is free, 2-8% slower when another process keeps it busy
    (pass ``overlap=False`` there). With 2 intra-op threads on 2 cores (torch's default) the
    three threads contend and certify ran at half its serial speed on the digits MLP, hence the
    rule. Never on CUDA, where kernels are asynchronous already (measured on an H200: drawing
    the next batch on a second stream made certify 5-18% slower on the MLP and no faster on
    the CNN)."""
    if device.type != "cpu":
        return False
    return _usable_cores() > torch.get_num_threads()


def _usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


class _Tally:
    """Class counts of a phase, kept as the samples' class indices on the device and counted once
    per ``capacity`` samples: ``max(out=)`` writes each batch's indices straight into the buffer,
    where counting every batch would cost a kernel of atomic adds on a few bins (on CUDA the
    largest cost after the forward pass) and ``bincount`` a device sync."""

    def __init__(self, counts: torch.Tensor, capacity: int, dtype: torch.dtype):
        self.counts = counts                       # (phases, n_outputs) int64, on the device
        self.labels = torch.empty(capacity, dtype=torch.int64, device=counts.device)
        self.values = torch.empty(capacity, dtype=dtype, device=counts.device)
        self.phase, self.used = 0, 0

    def add(self, logits: torch.Tensor, phase: int) -> None:
        """File the classes (first maximum, like argmax) of ``logits`` ``(m, n_outputs)``."""
        m = logits.shape[0]
        if phase != self.phase or self.used + m > self.labels.shape[0]:
            self.flush()
            self.phase = phase
        end = self.used + m
        torch.max(logits, dim=1, out=(self.values[self.used:end], self.labels[self.used:end]))
        self.used = end

    def flush(self) -> None:
        if self.used:
            row = self.counts[self.phase]
            row += torch.bincount(self.labels[:self.used], minlength=row.shape[0])
        self.used = 0


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
            _draw(bufs[slot], m, shift, sigma, generator)
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

    ``overlap`` (default :func:`default_overlap`): on CPU a second thread generates the noise of
    the next batch (torch releases the GIL in its kernels) while this one runs forward, argmax
    and counting on the current one, with ``BUFFERS`` buffers in turn; only that thread draws,
    in the same order and batch sizes; signals reach this thread only and the worker is joined
    before returning. The noise, and so the counts, are the same with and without it. It is
    ignored on CUDA.
    """
    counts = torch.zeros(len(nums), model.n_outputs, dtype=torch.int64, device=model.device)
    drawn = [0] * len(nums)
    plan = batch_plan(nums, batch)
    if not plan:
        return counts, drawn
    if overlap is None:
        overlap = default_overlap(model.device)
    overlap = overlap and len(plan) > 1 and model.device.type == "cpu"  # CUDA: see default_overlap
    d, shift, forward = sampler(model, x, fold)
    width = max(m for _, m in plan)
    bufs = [torch.empty(width, d, dtype=model.dtype, device=model.device)
            for _ in range(BUFFERS if overlap else 1)]
    tally = _Tally(counts, max(width, min(max(nums), TALLY_CAPACITY)), model.dtype)
    loop = _overlapped if overlap else _serial
    with torch.no_grad():
        loop(plan, bufs, shift, sigma, generator, forward, tally, drawn, deadline)
        tally.flush()
    return counts, drawn


def _draw(buf: torch.Tensor, m: int, shift, sigma: float, generator) -> torch.Tensor:
    """The first ``m`` rows of ``buf`` ``(batch, d)`` filled with ``ε + shift``."""
    noise = buf[:m].normal_(0.0, sigma, generator=generator)
    return noise if shift is None else noise.add_(shift)


def _serial(plan, bufs: list[torch.Tensor], shift, sigma: float, generator, forward: Forward, tally: _Tally,
            drawn: list[int], deadline: float | None) -> None:
    """Noise then forward, batch after batch, in this thread (one buffer ``(batch, d)``)."""
    for phase, m in plan:
        if deadline is not None and time.monotonic() > deadline:
            return
        tally.add(forward(_draw(bufs[0], m, shift, sigma, generator)), phase)
        drawn[phase] += m


def _overlapped(plan, bufs: list[torch.Tensor], shift, sigma: float, generator, forward: Forward,
                tally: _Tally, drawn: list[int], deadline: float | None) -> None:
    """Noise on a worker thread into ``bufs`` in turn, forward and counting in this one."""
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
            tally.add(forward(bufs[slot][:m]), phase)
            drawn[phase] += m
            free.put(slot)
    finally:
        _stop(worker, stop, free)


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
