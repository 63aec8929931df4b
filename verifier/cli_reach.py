"""The ``verifier reach`` sub-command: guaranteed output range of an objective over a box."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Guaranteed range [min, max] of an objective of the outputs over the input box of the first
case of a VNN-LIB file, by branch and bound with sound Lipschitz (interval Jacobian) and
CROWN bounds. Each end is printed as an interval that contains it, with the input (float32,
inside the box) that attains the inner value and that value as onnxruntime computes it.

objectives: Y_0 | Y_1 - Y_0 | 2*Y_3 + Y_1 - 0.5 | max(Y) | min(Y) | max(Y_0, Y_2)
tolerance: absolute, or with --relative a fraction of the range width found so far
"""


def register_reach(sub) -> None:
    """Add the ``reach`` sub-command to an argparse sub-parser collection."""
    from verifier.cli_commands import _add_common  # the shared --device/--seed/--threads/--quiet

    p = sub.add_parser("reach", help="guaranteed output range of an objective over an input box",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--region", required=True, help="VNN-LIB file; its first case's input box is used")
    p.add_argument("--objective", default="Y_0", help="objective of the outputs (default Y_0)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="stop when upper - lower <= this (default 1e-3)")
    p.add_argument("--relative", action="store_true", help="tolerance relative to the range width")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for both ends together (default 60)")
    p.add_argument("--plot", help="write a PNG of the lower/upper bounds over time")
    _add_common(p)
    p.set_defaults(func=run_reach)


def run_reach(args) -> int:
    import math

    from verifier import api
    from verifier.cli_commands import _progress
    from verifier.errors import InputError, UnsupportedError

    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    model = api.load_model(args.model)
    prop = api.load_property(args.region, model)
    if not prop.cases:
        raise InputError("the property has no input region", path=args.region)
    region = prop.cases[0].region
    if region.l2_center is not None:
        raise UnsupportedError("reach needs a box; the region has an L2 ball", path=args.region)
    shape = model.input_shape
    result = api.reach(model, region.lower.reshape(shape), region.upper.reshape(shape), args.objective,
                       tolerance=args.tolerance, timeout=args.timeout, relative=args.relative,
                       progress=_progress(args), device=args.device, seed=args.seed)
    print(report(result, args.region, len(prop.cases)))
    if args.plot:
        plot_history(result, args.plot)
    return 0


def report(result, region_name: str, n_cases: int) -> str:
    """The human summary of a :class:`~verifier.engines.reach.ReachResult`."""
    import numpy as np

    kind = "relative" if result.relative else "absolute"
    lines = [f"objective: {result.objective}",
             f"region: {region_name} (input box of case 1 of {n_cases})",
             f"Lipschitz bound on the region (l_inf inputs): {result.lipschitz:.6g}",
             f"tolerance: {result.tolerance:.3g} ({kind}); time {result.time:.2f}s; boxes bounded {result.boxes}"]
    for name, end, attained in (("min", result.min, "upper"), ("max", result.max, "lower")):
        state = "converged" if end.converged else "not converged"
        lines.append(f"{name} in [{end.lower:.9g}, {end.upper:.9g}]  gap {end.gap:.3g}  {state}")
        if end.witness is None:
            lines.append("  no witness: the region holds no float32 input")
            continue
        ort = "n/a" if end.witness_value is None else f"{end.witness_value:.9g}"
        lines.append(f"  witness ({attained} end; onnxruntime value {ort}): "
                     + np.array2string(end.witness.reshape(-1), precision=9, threshold=20,
                                       max_line_width=100, separator=", "))
    return "\n".join(lines)


def plot_history(result, path: str) -> None:
    """PNG of each end's lower and upper bound over time (matplotlib, no GUI backend)."""
    import numpy as np
    from matplotlib.figure import Figure

    from verifier.errors import InputError

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for name, end, colour in (("min", result.min, "tab:blue"), ("max", result.max, "tab:red")):
        t, lo, up = (np.array(v) for v in zip(*end.history))
        ax.step(t, lo, where="post", color=colour, label=f"{name}: lower bound")
        ax.step(t, up, where="post", color=colour, linestyle="--", label=f"{name}: upper bound")
    span = max(result.max.upper - result.min.lower, 1e-12)
    ax.set_ylim(result.min.lower - 0.5 * span, result.max.upper + 0.5 * span)  # early bounds are far off
    ax.set_xlabel("time (s)")
    ax.set_ylabel(result.objective)
    ax.set_title("guaranteed range: bounds over time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise InputError(f"cannot write plot ({e.strerror})", path=path) from None
