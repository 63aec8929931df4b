"""``verifier certify``: randomized-smoothing certificates for one input or a data set."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from verifier.errors import InputError

DESCRIPTION = """\
Certify the smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I), of an
ONNX model f (Cohen et al. 2019). Each certificate is probabilistic: with probability at least
1 - alpha over the sampling noise, g returns the printed class within the printed l2 radius.
It says nothing directly about the network f itself. The noise is added in the ONNX input space.
"""

EXAMPLES = """\
examples:
  verifier certify models/digits_smooth.onnx --data models/digits_test.npz --sigma 0.25 --n 10000 \\
      --results certify.csv --plot certified.png
  verifier certify models/digits_smooth.onnx --data models/digits_test.npz --sigma 0.25 \\
      --results certify.csv --resume
  verifier certify models/digits_smooth.onnx --input x.npy --sigma 0.25
"""


def register_certify(sub) -> None:
    """Add the ``certify`` sub-command to an argparse sub-parser collection."""
    import argparse

    from verifier.cli_commands import add_memory_limit

    p = sub.add_parser("certify", help="randomized-smoothing certificates (probabilistic, l2)",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX model file (the base classifier f)")
    p.add_argument("--data", help=".npz with inputs x (N, *input shape) and integer labels y (N,)")
    p.add_argument("--input", help=".npy with one input (the model's input shape, or flat)")
    p.add_argument("--sigma", type=float, required=True, help="noise standard deviation (> 0)")
    p.add_argument("--n0", type=int, default=100, help="selection samples per input (default 100)")
    p.add_argument("--n", type=int, default=100_000, help="estimation samples per input (default 100000)")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability (default 0.001)")
    p.add_argument("--batch", type=int, default=1000, help="noisy samples per forward pass (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="base seed; input i uses seed + i (default 0)")
    p.add_argument("--limit", type=int, default=None, help="certify at most K inputs")
    p.add_argument("--skip", type=int, default=0, help="start at input M (default 0)")
    p.add_argument("--results", help="results CSV (default certify_<model>.csv in the current folder)")
    p.add_argument("--resume", action="store_true", help="keep the rows in --results and skip their inputs")
    p.add_argument("--plot", help="write a PNG of certified accuracy against radius")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, one per core; for small models "
                        "1 is often fastest: it leaves a core to the noise thread)")
    p.add_argument("--no-overlap", action="store_true",
                   help="draw the noise on the main thread (default on CPU when torch's threads leave a core "
                        "free: a second thread draws the next batch while the network runs; the counts are "
                        "the same either way; turn it off when another process keeps that core busy)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_memory_limit(p)
    p.set_defaults(func=run_certify)


def run_certify(args) -> int:
    from verifier import api
    from verifier.engines.smoothing import check_settings, on_device

    if (args.data is None) == (args.input is None):
        raise InputError("give exactly one of --data FILE.npz or --input FILE.npy")
    check_settings(args.sigma, args.n0, args.n, args.alpha, args.batch)
    if args.skip < 0 or (args.limit is not None and args.limit < 0):
        raise InputError("--skip and --limit must be >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.plot and not Path(args.plot).resolve().parent.is_dir():
        raise InputError("the plot's folder does not exist", path=args.plot)
    model = on_device(api.load_model(args.model), args.device)
    if args.input is not None:
        return _certify_one(model, args)
    return _certify_data(model, args)


def _certify_one(model, args) -> int:
    from verifier.engines.smoothing import certify
    from verifier.engines.smoothing_data import load_single

    x = load_single(args.input)
    res = certify(model, x, args.sigma, n0=args.n0, n=args.n, alpha=args.alpha, batch=args.batch,
                  seed=args.seed, overlap=False if args.no_overlap else None)
    print("prediction: " + ("abstain" if res.abstained else str(res.prediction)))
    print(f"radius (l2): {res.radius:.6g}")
    print(f"pA lower bound: {res.pA_lower:.6g}")
    print("counts: " + " ".join(str(int(c)) for c in res.counts))
    print(f"certificate: {res.certificate.kind}, {res.certificate.method}, "
          f"confidence {1 - args.alpha:g}; {res.certificate.data['statement']}")
    if res.reason:
        print(f"reason: {res.reason}")
    return 0


def _certify_data(model, args) -> int:
    from verifier.engines import smoothing_data as sd

    x, y = sd.load_dataset(args.data, model)
    end = len(x) if args.limit is None else min(len(x), args.skip + args.limit)
    indices = list(range(min(args.skip, len(x)), end))
    settings = sd.Settings(args.sigma, args.n0, args.n, args.alpha, args.seed, args.batch,
                           overlap=False if args.no_overlap else None)
    path = Path(args.results or f"certify_{Path(args.model).stem}.csv")
    done_rows = sd.start_results(path, args.resume, settings)
    done = {int(r["index"]) for r in done_rows}
    progress = _progress(args.quiet)
    if done & set(indices):
        progress(f"resuming: {len(done & set(indices))} of {len(indices)} inputs already in {path}")
    new_rows = sd.certify_rows(model, x, y, indices, settings, path, done, progress)
    wanted = set(indices)
    rows = [r for r in done_rows + new_rows if int(r["index"]) in wanted]
    print(sd.summary_text(rows, settings, path))
    if args.plot:
        title = (f"{Path(args.model).name}: sigma={args.sigma:g}, n={args.n}, alpha={args.alpha:g}, "
                 f"{len(rows)} inputs\n(smoothed classifier g; probabilistic certificates)")
        sd.plot_certified_accuracy(rows, args.plot, title)
        print(f"plot: {args.plot}")
    return 0


def _progress(quiet: bool):
    if quiet:
        return lambda _m: None
    start = time.monotonic()
    return lambda m: print(f"[{time.monotonic() - start:7.2f}s] {m}", file=sys.stderr, flush=True)
