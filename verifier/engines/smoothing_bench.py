"""Throughput of :func:`certify` against plain batched forward passes of the same model.

``python -m verifier.engines.smoothing_bench [--model M] [--device cpu|cuda] [--batch B] [--n N]
[--threads T]``

Prints samples/second of (a) ``model.forward_flat`` on one fixed batch, repeated as many times
as certify runs batches, (b) noise generation alone (``normal_`` + add, same batches) and
(c) :func:`certify` (noise + forward + argmax + counting), each the best of ``--repeats``
interleaved runs, and the ratio certify / forward. Timings on a shared machine are noisy;
compare ratios from one run.
"""
from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import torch

from verifier.engines.smoothing import certify


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
    """Samples per second of forward, noise-only and certify; keys ``forward``, ``noise``,
    ``certify``, ``ratio`` (certify / forward) and ``ceiling`` (noise then forward, serially:
    the most certify can reach without overlapping the two)."""
    from verifier import api

    model = api.load_model(model_path).to(device=device)
    dev = model.device
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(model.n_inputs, generator=gen, device=dev, dtype=model.dtype)
    inputs = torch.rand(batch, model.n_inputs, generator=gen, device=dev, dtype=model.dtype)
    sizes = [min(batch, n0 - i) for i in range(0, n0, batch)] + [min(batch, n - i) for i in range(0, n, batch)]
    total = n0 + n

    def forward() -> None:
        with torch.no_grad():
            for m in sizes:
                model.forward_flat(inputs[:m])

    def noise() -> None:
        buf = torch.empty(batch, model.n_inputs, device=dev, dtype=model.dtype)
        for m in sizes:
            buf[:m].normal_(0.0, sigma, generator=gen).add_(x)

    def run_certify() -> None:
        certify(model, x, sigma, n0=n0, n=n, batch=batch, seed=0)

    best = {"forward": math.inf, "noise": math.inf, "certify": math.inf}
    run_certify()  # warm-up (lazy initialisation, caches)
    forward()
    for _ in range(repeats):
        for name, fn in (("forward", forward), ("noise", noise), ("certify", run_certify)):
            best[name] = min(best[name], _timed(fn, dev))
    out = {k: total / v for k, v in best.items()}
    out["ratio"] = out["certify"] / out["forward"]
    out["ceiling"] = 1.0 / (1.0 / out["forward"] + 1.0 / out["noise"])
    return out


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
    print(f"  plain forward passes : {r['forward']:12,.0f} samples/s")
    print(f"  noise generation only: {r['noise']:12,.0f} samples/s")
    print(f"  certify              : {r['certify']:12,.0f} samples/s")
    print(f"  noise + forward      : {r['ceiling']:12,.0f} samples/s (serial ceiling for certify)")
    print(f"  ratio certify/forward: {r['ratio']:.3f}   certify/ceiling: {r['certify'] / r['ceiling']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
