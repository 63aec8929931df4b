"""Sub-commands of the ``verifier`` command line: each registers its parser and handler."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed for attacks (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: verification works on many small tensors, "
                        "where more threads cost more than they give; raise it for large CNNs)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_memory_limit(p)


def add_memory_limit(p: argparse.ArgumentParser) -> None:
    """The ``--memory-limit`` option (applied by :func:`verifier.cli.main` before the command)."""
    p.add_argument("--memory-limit", type=float, default=None, metavar="MiB",
                   help="cap this process's memory (CPU: data segment; CUDA: share of the GPU); batches "
                        "that do not fit are bounded in halves, and what still does not fit ends as unknown")


def _progress(args):
    if args.quiet:
        return lambda _m: None
    start = time.monotonic()
    return lambda m: print(f"[{time.monotonic() - start:7.2f}s] {m}", file=sys.stderr, flush=True)


def _config(args, timeout: float):
    import dataclasses

    from verifier.config import BabConfig, BoundsConfig, VerifyConfig

    bounds = BoundsConfig(method=getattr(args, "method", "alpha-crown"), solver=getattr(args, "solver", "HIGHS"),
                          layer_alpha_iterations=getattr(args, "layer_alpha", BoundsConfig.layer_alpha_iterations))
    batch = getattr(args, "bab_batch", BabConfig.batch)
    if batch < 0:
        from verifier.errors import InputError

        raise InputError(f"--bab-batch must be a positive number of sub-domains (0: the device's default), got {batch}")
    bab = BabConfig(enabled=not getattr(args, "no_bab", False), strategy=getattr(args, "bab", "auto"),
                    milp_after=getattr(args, "milp_after", BabConfig.milp_after), batch=batch)
    cfg = VerifyConfig(timeout=timeout, device=args.device, seed=args.seed, bounds=bounds, bab=bab)
    return dataclasses.replace(cfg)


def add_command(sub, name: str, handler: Callable[[argparse.Namespace], int], summary: str, description: str,
                arguments: list[tuple[str, str]], **parser_options) -> argparse.ArgumentParser:
    """Add the sub-command ``name`` run by ``handler``: ``summary`` in the command list,
    ``description`` in its help, plain string ``arguments`` as ``(name or --flag, help)`` pairs.
    Returns its parser for the arguments that need more than a help text."""
    p = sub.add_parser(name, help=summary, description=description, **parser_options)
    for argument, text in arguments:
        p.add_argument(argument, help=text)
    p.set_defaults(func=handler)
    return p


def register_verify(sub) -> None:
    p = add_command(sub, "verify", run_verify, "decide a VNN-LIB property on an ONNX model",
                    "Decide a property: prints sat (counterexample, confirmed by onnxruntime), unsat (proven), "
                    "unknown or timeout.", [("model", "ONNX model file"), ("spec", "VNN-LIB property file")])
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--result-file", help="write the VNN-COMP result file (witness after sat)")
    p.add_argument("--report", metavar="FILE", help="write a JSON safety report (+ FILE's .npz sidecar); "
                   "check it with `verifier check FILE`")
    p.add_argument("--method", default="alpha-crown", choices=["ibp", "crown", "alpha-crown", "lp", "milp"],
                   help="strongest bound method before branching (default alpha-crown); lp / milp decide "
                        "with the LP relaxation / exact MILP instead")
    p.add_argument("--solver", default="HIGHS", help="cvxpy solver for lp / milp (default HIGHS)")
    p.add_argument("--bab", default="auto", choices=["auto", "input", "relu"],
                   help="branch-and-bound strategy (default: by input dimension)")
    p.add_argument("--no-bab", action="store_true", help="stop after bound propagation")
    add_milp_after(p)
    _add_common(p)


def add_milp_after(p) -> None:
    """The ``--milp-after``, ``--layer-alpha`` and ``--bab-batch`` options shared by ``verify`` and
    ``bench``."""
    from verifier.config import BabConfig, BoundsConfig

    p.add_argument("--layer-alpha", type=int, default=BoundsConfig.layer_alpha_iterations, metavar="STEPS",
                   help="when alpha-CROWN leaves a case open on an input of 17+ values, optimise each "
                        "intermediate layer's unstable neurons with their own slopes for STEPS steps per layer "
                        f"(at most {BoundsConfig.layer_alpha_share:g} of the time left; default "
                        f"{BoundsConfig.layer_alpha_iterations}; 0 turns it off)")

    p.add_argument("--milp-after", type=float, default=BabConfig.milp_after, metavar="SHARE",
                   help="input-split branch and bound hands its worst open boxes to the exact MILP once "
                        f"this share of its time is used (small ReLU nets only; default {BabConfig.milp_after:g}; "
                        "1 turns it off)")
    p.add_argument("--bab-batch", type=int, default=BabConfig.batch, metavar="N",
                   help="sub-domains bounded at once in branch and bound (default: 256 on the CPU, 2048 on "
                        "CUDA; memory grows with it, and batches that do not fit are bounded in halves)")


def run_verify(args) -> int:
    from verifier import api
    from verifier.resultfile import vnncomp_text, write_atomic

    progress = _progress(args)
    model = api.load_model(args.model)
    prop = api.load_property(args.spec, model)
    remaining = max(0.1, args.timeout - (time.monotonic() - args.started))  # start-up counts
    config = _config(args, remaining)
    started = time.time() - (time.monotonic() - args.started)
    result = api.verify(model, prop, config=config, progress=progress)
    finished = time.time()
    print(result.verdict)
    print(_summary(result), file=sys.stderr if args.quiet else sys.stdout)
    if args.result_file:
        write_atomic(args.result_file, vnncomp_text(result))
    if args.report:
        from verifier.evidence.report import write_verify_report

        write_verify_report(args.report, result, args.model, args.spec, config, model, prop, started, finished)
    return 0


def _summary(result) -> str:
    parts = [f"status: {result.status.value}", f"time: {result.stats.get('time', 0):.2f}s"]
    if result.reason:
        parts.append(f"reason: {result.reason}")
    cex = result.counterexample
    if cex is not None:
        parts.append(f"counterexample: case {cex.case_index}, disjunct {cex.disjunct_index}, "
                     f"margin {cex.margin:.4g} (onnxruntime)")
    return "; ".join(parts)


def register_bounds(sub) -> None:
    p = sub.add_parser("bounds", help="bound the property rows (or outputs) over the input region")
    p.add_argument("model")
    p.add_argument("spec")
    p.add_argument("--method", default="crown", choices=["ibp", "crown", "alpha-crown", "lp"])
    p.add_argument("--timeout", type=float, default=60.0)
    _add_common(p)
    p.set_defaults(func=run_bounds)


def run_bounds(args) -> int:
    import torch

    from verifier import api
    from verifier.engines.incomplete import stacked_rows

    model = api.load_model(args.model).to(device=args.device)
    prop = api.load_property(args.spec, model)
    for i, case in enumerate(prop.cases):
        lo = torch.as_tensor(case.region.lower).reshape(1, *model.input_shape)
        hi = torch.as_tensor(case.region.upper).reshape(1, *model.input_shape)
        lb, ub = api.compute_bounds(model, lo, hi, method=args.method, timeout=args.timeout)
        print(f"case {i}: output bounds ({args.method})")
        for j in range(model.n_outputs):
            print(f"  Y_{j}: [{lb[0, j].item():.6g}, {ub[0, j].item():.6g}]")
        C, d, _ = stacked_rows(case, model)
        if C.shape[1]:
            rl, _ru = api.compute_bounds(model, lo, hi, method=args.method, C=C[0], timeout=args.timeout)
            margins = rl[0].double().cpu().numpy() - d
            print("  unsafe rows C·y - d, lower bounds: " + " ".join(f"{m:.6g}" for m in margins))
    return 0


def register_info(sub) -> None:
    p = sub.add_parser("info", help="print the model's graph: ops, shapes, parameter count")
    p.add_argument("model")
    p.set_defaults(func=run_info)


def run_info(args) -> int:
    from verifier import api

    g = api.load_model(args.model)
    s = g.summary()
    print(f"model: {args.model}")
    print(f"input shape (per sample): {s['input_shape']}  output shape: {s['output_shape']}")
    print(f"nodes: {s['n_nodes']}  parameters: {s['n_params']}")
    print("ops: " + ", ".join(f"{k}×{v}" for k, v in sorted(s["ops"].items())))
    for node in g.nodes:
        print(f"  {node.op:10s} {str(list(node.out_shape)):18s} {node.name}  <- {', '.join(node.inputs)}")
    return 0


def register_bench(sub) -> None:
    from verifier.bench import add_arguments, run_bench

    p = sub.add_parser("bench", help="run every instance of a VNN-COMP style folder (instances.csv)")
    add_arguments(p)
    _add_common(p)
    p.set_defaults(func=run_bench)


from verifier.cli_certify import register_certify  # noqa: E402  (imports only verifier.errors)

from verifier.cli_evidence import register_check, register_report  # noqa: E402

from verifier.cli_reach import register_reach  # noqa: E402  (imports only the standard library)

def register_bounds_bench(sub) -> None:
    from verifier.bounds.benchmark import register

    register(sub)


REGISTRARS = [register_verify, register_bounds, register_info, register_bench, register_certify,
              register_check, register_report, register_reach, register_bounds_bench]
