"""Throughput of :func:`certify` against plain batched forward passes of the same model.

``python -m verifier.engines.smoothing_bench [--model M] [--device cpu|cuda] [--batch B] [--n N]
[--n0 N0] [--threads T] [--repeats R]``

What is measured, each in samples/second over the same batch sizes certify uses (``n0`` then
``n`` samples in batches of ``B``, the last ones smaller), each the best of ``R`` interleaved runs
after one warm-up, all in this process with ``T`` torch intra-op threads:

* plain forward: ``model.forward_flat`` on one fixed input batch, once per certify batch (no
  noise, no argmax, no counting). This is the reference of every ratio;
* noise only: ``normal_`` into a preallocated buffer plus the in-place add of ``x``;
* certify: :func:`certify` with its defaults (noise, forward, argmax and counting, plus the
  statistics). With ``overlap`` (the default on CPU when a core is free of torch's intra-op threads) certify runs one
  extra Python thread that only generates noise, next to the ``T`` intra-op threads: then it
  uses one thread more than the plain forward passes, and the report says so and also gives
  the forward passes with ``T + 1`` intra-op threads, for a like-for-like budget;
* certify without overlap (one thread of control, noise then forward, batch after batch);
* certify with ``fold=True`` when the model starts with a narrowing ``Linear`` layer: the noise
  is drawn after that layer (same law of ``f(x + ε)``, fewer normals, other samples for a seed),
  so certify evaluates a cheaper network than the reference; reported separately, never as
  the main ratio.

The main line is ``ratio certify/forward`` (default certify / plain forward, same ``T``).
Timings on a shared machine are noisy: compare ratios from one run, and repeat the run.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import torch

from verifier.engines.smoothing import certify, default_overlap, foldable


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(model_path: str, device: str, batch: int, n0: int, n: int, sigma: float,
            repeats: int) -> dict[str, float]:
    """Samples per second, by key: ``forward``, ``noise``, ``certify`` (defaults),
    ``certify_serial`` (``overlap=False``), ``certify_fold`` (only for a foldable model),
    ``forward_plus1`` (only when certify overlaps on CPU: forward with one more intra-op
    thread); ``ratio`` (certify / forward), ``ceiling`` (noise then forward, serially),
    ``overlap_ceiling`` (the slower of noise and forward) and ``overlap`` (1.0 when certify's
    default overlaps noise on a second thread)."""
    from verifier import api

    model = api.load_model(model_path).to(device=device)
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(model.n_inputs, generator=gen, device=dev, dtype=model.dtype)
    inputs = torch.rand(batch, model.n_inputs, generator=gen, device=dev, dtype=model.dtype)
    sizes = [min(batch, n0 - i) for i in range(0, n0, batch)] + [min(batch, n - i) for i in range(0, n, batch)]
    overlap = default_overlap(dev)

    def forward() -> None:
        with torch.no_grad():
            for m in sizes:
                model.forward_flat(inputs[:m])

    def noise() -> None:
        buf = torch.empty(batch, model.n_inputs, device=dev, dtype=model.dtype)
        for m in sizes:
            buf[:m].normal_(0.0, sigma, generator=gen).add_(x)

    runs: dict[str, Callable[[], None]] = {
        "forward": forward, "noise": noise,
        "certify": lambda: certify(model, x, sigma, n0=n0, n=n, batch=batch, seed=0),
        "certify_serial": lambda: certify(model, x, sigma, n0=n0, n=n, batch=batch, seed=0, overlap=False)}
    if foldable(model):
        runs["certify_fold"] = lambda: certify(model, x, sigma, n0=n0, n=n, batch=batch, seed=0, fold=True)
    best = {name: math.inf for name in runs}
    for fn in runs.values():
        fn()  # warm-up (lazy initialisation, caches)
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], _timed(fn, dev))
    if overlap and dev.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(threads + 1)
        try:
            forward()
            best["forward_plus1"] = min(_timed(forward, dev) for _ in range(repeats))
        finally:
            torch.set_num_threads(threads)
    out = {k: (n0 + n) / v for k, v in best.items()}
    out["ratio"] = out["certify"] / out["forward"]
    out["ceiling"] = 1.0 / (1.0 / out["forward"] + 1.0 / out["noise"])
    out["overlap_ceiling"] = min(out["forward"], out["noise"])
    out["overlap"] = float(overlap)
    return out


def report(r: dict[str, float], threads: int) -> list[str]:
    """The lines :func:`main` prints for the result ``r`` of :func:`measure`."""
    fwd = r["forward"]
    how = (f"noise on 1 extra thread, {threads} intra-op thread(s) + 1" if r["overlap"]
           else f"one thread of control, {threads} intra-op thread(s)")
    lines = [f"  plain forward passes : {fwd:12,.0f} samples/s ({threads} intra-op thread(s); the reference)",
             f"  noise generation only: {r['noise']:12,.0f} samples/s",
             f"  certify              : {r['certify']:12,.0f} samples/s ({how})",
             f"  certify, no overlap  : {r['certify_serial']:12,.0f} samples/s "
             f"(ratio {r['certify_serial'] / fwd:.3f})",
             f"  noise + forward      : {r['ceiling']:12,.0f} samples/s (serial ceiling for certify)",
             f"  slower of the two    : {r['overlap_ceiling']:12,.0f} samples/s (ceiling with overlap: "
             f"ratio {r['overlap_ceiling'] / fwd:.3f})"]
    if "forward_plus1" in r:
        lines.append(f"  forward, {threads + 1} threads   : {r['forward_plus1']:12,.0f} samples/s (as many threads "
                     f"as certify uses; certify/this {r['certify'] / r['forward_plus1']:.3f})")
    if "certify_fold" in r:
        lines.append(f"  certify, fold=True   : {r['certify_fold']:12,.0f} samples/s (ratio "
                     f"{r['certify_fold'] / fwd:.3f}; first Linear folded into the noise: "
                     f"a cheaper network, other samples)")
    lines.append(f"  ratio certify/forward: {r['ratio']:.3f}   certify/serial ceiling: "
                 f"{r['certify'] / r['ceiling']:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verifier.engines.smoothing_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/digits_smooth.onnx")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    r = measure(args.model, args.device, args.batch, args.n0, args.n, args.sigma, args.repeats)
    print(f"model {args.model}, device {args.device}, batch {args.batch}, {args.n0}+{args.n} samples, "
          f"best of {args.repeats}, torch threads {torch.get_num_threads()}")
    print("\n".join(report(r, torch.get_num_threads())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
