"""``verifier check`` and ``verifier report``: check a safety report, render it for a reviewer."""
from __future__ import annotations

import argparse
import json
import sys

CHECK_FAILED = 1  # exit code when any check fails (input errors keep their own codes)

CHECK_DESCRIPTION = """\
Check a JSON report written by `verifier verify --report FILE` (or `verifier bench --reports DIR`)
independently of the run that wrote it: re-hash the model, property and sidecar files; for sat,
re-run the counterexample with onnxruntime on the original model and check region membership
and the violation exactly; for unsat, check that the leaves cover every case and re-bound every
leaf with a separate float64 code path that rounds outward.
exit codes: 0 every check passed, 1 some check failed, 3 the report or a file it names cannot
be read, 5 internal error.
"""


def register_check(sub) -> None:
    """Add ``check``."""
    from verifier.cli_commands import add_command

    p = add_command(sub, "check", run_check, "independently check a safety report (JSON + sidecar)",
                    CHECK_DESCRIPTION, [
                        ("report", "report JSON file"),
                        ("--model", "model file to use instead of the one the report names (hash still checked)"),
                        ("--property", "property file to use instead of the one the report names"),
                        ("--json", "also write the check results as JSON to this file")],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")


def _structural(report: str, fn, *args):
    """Run ``fn``; a report whose JSON has the wrong structure (a field of the wrong type, a
    missing key) is an input error naming the report, not a crash."""
    from verifier.errors import InputError

    try:
        return fn(*args)
    except (AttributeError, KeyError, TypeError, IndexError, ValueError) as e:
        raise InputError(f"the report's structure is damaged ({type(e).__name__}: {e})", path=report) from None


def run_check(args) -> int:
    from verifier.evidence.check import check_report

    outcome = _structural(args.report, check_report, args.report, args.model, args.property)
    for item in outcome.items:
        if not (args.quiet and item.ok):
            print(f"{'PASS' if item.ok else 'FAIL'}  {item.name}" + (f": {item.detail}" if item.detail else ""))
    passed = sum(i.ok for i in outcome.items)
    line = (f"{'OK' if outcome.ok else 'FAILED'}: {passed}/{len(outcome.items)} checks passed; "
            f"check time {outcome.check_time:.3f}s")
    if outcome.verify_time:
        line += f", verification time {outcome.verify_time:.3f}s (ratio {outcome.check_time / outcome.verify_time:.3f})"
    print(line)
    if args.json:
        from verifier.resultfile import write_atomic

        data = {"report": args.report, "ok": outcome.ok, "check_time": outcome.check_time,
                "verify_time": outcome.verify_time,
                "items": [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in outcome.items]}
        write_atomic(args.json, json.dumps(data, indent=1) + "\n")
    return 0 if outcome.ok else CHECK_FAILED


def register_report(sub) -> None:
    """Add ``report``."""
    from verifier.cli_commands import add_command

    add_command(sub, "report", run_report, "render a safety report as HTML and/or Markdown",
                "Render a JSON safety report as a self-contained HTML page (plots embedded, no network) "
                "and/or Markdown for a reviewer.",
                [("report", "report JSON file"), ("--html", "write the HTML page here"),
                 ("--md", "write the Markdown text here")])


def run_report(args) -> int:
    from verifier.errors import InputError
    from verifier.evidence.render import render_files

    if not args.html and not args.md:
        raise InputError("give --html FILE and/or --md FILE")
    for path in _structural(args.report, render_files, args.report, args.html, args.md):
        print(f"wrote {path}", file=sys.stderr)
    return 0
