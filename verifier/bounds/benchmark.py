"""``verifier bounds-bench``: time per call of CROWN and α-CROWN on reference problems.

Problems: an ACAS Xu network on the property-1 box, and ``mnist_fc`` 256×4 on an L∞ ball of
radius 0.02 around a test image, bounding the property rows (true label minus each other
label). Batches of identical regions (default 1 and 256; on CUDA also 1024); median of repeated
calls after a warm-up, each call waiting for the device to finish.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from verifier.bounds.crown import alpha_spec_bounds, intermediate_bounds, spec_bounds
from verifier.bounds.linear import Region
from verifier.config import BoundsConfig
from verifier.errors import InputError


def _problems(bench_dir: Path):
    from verifier import api

    acas = bench_dir / "acasxu"
    g = api.load_model(acas / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    p = api.load_property(acas / "vnnlib" / "prop_1.vnnlib", g)
    yield "acasxu_1_1 prop1", g, p.cases[0].region.lower, p.cases[0].region.upper, torch.as_tensor(p.cases[0].unsafe[0].C)
    mn = bench_dir / "mnist_fc_2022"
    g = api.load_model(mn / "onnx" / "mnist-net_256x4.onnx")
    p = api.load_property(mn / "vnnlib" / "prop_0_0.03.vnnlib", g)
    center = (p.cases[0].region.lower + p.cases[0].region.upper) / 2
    label = int(g.forward_flat(torch.as_tensor(center, dtype=torch.float32).unsqueeze(0)).argmax())
    C = torch.zeros(9, 10)
    others = [j for j in range(10) if j != label]
    C[range(9), label], C[range(9), others] = 1.0, -1.0
    yield "mnist_fc 256x4 eps0.02", g, (center - 0.02).clip(0, 1), (center + 0.02).clip(0, 1), C


def _time(fn, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Median seconds per call of ``fn`` after one warm-up call, and its last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        out = fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(bench_dir: Path, device: str, batches=(1, 256), repeats: int = 5) -> list[dict]:
    """Rows of figures: problem, batch, method, ms per call, mean lower bound of the rows."""
    rows = []
    cfg = BoundsConfig(alpha_iterations=20)
    for name, g, lo, hi, C in _problems(bench_dir):
        g = g.to(device=device)
        for B in batches:
            shape = (B, *g.input_full_shape)
            kw = dict(dtype=g.dtype, device=g.device)
            region = Region(torch.as_tensor(lo, **kw).reshape(1, *shape[1:]).expand(shape).contiguous(),
                            torch.as_tensor(hi, **kw).reshape(1, *shape[1:]).expand(shape).contiguous())
            Cb = C.to(**kw).unsqueeze(0).expand(B, -1, -1)

            def crown():
                with torch.no_grad():
                    lines = {}
                    return spec_bounds(g, Cb, intermediate_bounds(g, region, cfg, lines=lines), region, lines=lines)

            def alpha():
                with torch.no_grad():
                    b = intermediate_bounds(g, region, cfg)
                return alpha_spec_bounds(g, Cb, b, region, cfg, time.monotonic() + 600)

            for method, fn in (("crown", crown), ("alpha-crown", alpha)):
                t, lb = _time(fn, repeats if method == "crown" else max(1, repeats // 2), g.device)
                rows.append({"problem": name, "batch": B, "method": method, "ms": 1e3 * t,
                             "mean_lower_bound": float(lb.mean())})
    return rows


def register(sub) -> None:
    p = sub.add_parser("bounds-bench", help="time CROWN and α-CROWN on reference problems")
    p.add_argument("--benchmarks", default="../shared/benchmarks", help="VNN-COMP benchmarks folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", default=None, metavar="B,B,...",
                   help="batch sizes (default 1,256 on the CPU and 1,256,1024 on CUDA)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    batches = _batches(args)
    bench_dir = Path(args.benchmarks)
    if not (bench_dir / "acasxu").is_dir():
        raise InputError("benchmarks folder with acasxu/ and mnist_fc_2022/ not found", path=str(bench_dir))
    print(f"device={args.device} threads={torch.get_num_threads()}")
    print(f"{'problem':26s} {'batch':>5s} {'method':12s} {'ms/call':>9s} {'mean lb':>10s}")
    for r in run(bench_dir, args.device, batches, repeats=args.repeats):
        print(f"{r['problem']:26s} {r['batch']:5d} {r['method']:12s} {r['ms']:9.2f} {r['mean_lower_bound']:10.4f}")
    return 0


def _batches(args) -> tuple[int, ...]:
    text = args.batches or ("1,256,1024" if str(args.device).startswith("cuda") else "1,256")
    try:
        sizes = tuple(int(b) for b in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise InputError(f"--batches '{text}' is not a list of positive integers such as 1,256")
    return sizes
