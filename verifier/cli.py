"""The ``verifier`` command: parse arguments, run the API, write results.

Exit codes: 0 a verdict was reached (whatever it is), 2 bad command line, 3 bad input file,
4 unsupported model or property feature, 5 internal error, 6 resource exhausted, 130 interrupted.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import traceback

from verifier.errors import InternalError, ResourceError, VerifierError

EPILOG = """\
examples:
  verifier verify models/digits_mlp.onnx specs/digits_mlp_eps0.01_idx0.vnnlib
  verifier verify net.onnx prop.vnnlib --timeout 120 --result-file out.txt
  verifier bounds net.onnx prop.vnnlib --method crown
  verifier info net.onnx
  verifier bench ../shared/benchmarks/acasxu --reference ../shared/benchmarks/ground_truth/acasxu.csv

verdicts (VNN-LIB words): sat = a counterexample exists (confirmed with onnxruntime),
unsat = the property is proven, unknown / timeout = neither.
exit codes: 0 verdict, 2 usage, 3 bad input, 4 unsupported, 5 internal error, 6 out of resources.
"""


def build_parser() -> argparse.ArgumentParser:
    from verifier import cli_commands as cmd

    parser = argparse.ArgumentParser(prog="verifier", description="Sound verification of neural networks "
                                     "(ONNX models, VNN-LIB properties).", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show a full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in cmd.REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(max(1, args.threads))
    previous = _install_sigterm()
    try:
        if getattr(args, "device", None) is not None:
            from verifier.api import _check_device

            _check_device(args.device)
        if getattr(args, "memory_limit", None):
            from verifier.engines.memory import cap_memory

            cap_memory(args.memory_limit, getattr(args, "device", "cpu"))
        return int(args.func(args) or 0)
    except VerifierError as e:
        return _report(e, args.debug)
    except KeyboardInterrupt as e:
        print(f"verifier: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 130
    except MemoryError:
        print("verifier: resource error: out of memory", file=sys.stderr)
        return 6
    except Exception as e:  # a bug: say so plainly, keep the traceback for --debug
        from verifier.engines.memory import is_out_of_memory

        if is_out_of_memory(e):
            return _report(ResourceError(f"out of memory ({str(e).splitlines()[0][:200]})"), args.debug)
        err = InternalError(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        return _report(err, args.debug)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, _frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _install_sigterm():
    """Make SIGTERM stop the command like Ctrl-C (finished rows and files are kept, the exit
    code is 130); returns the handler to restore, None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    return signal.SIG_DFL if previous is None else previous


def _report(e: VerifierError, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"verifier: {e.kind}: {e.one_line()}", file=sys.stderr)
    return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
