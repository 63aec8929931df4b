"""``verifier bench``: run a VNN-COMP style folder, one result row per instance as it goes.

Rows are appended (and flushed to disk) one at a time, so a crash or kill loses nothing
finished; ``--resume`` skips rows already in the results file.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from collections import Counter
from pathlib import Path

from verifier.errors import InputError, VerifierError

FIELDS = ["onnx", "vnnlib", "timeout", "verdict", "time_s", "reason", "reference", "judgement"]


def add_arguments(p) -> None:
    p.add_argument("dir", help="folder with instances.csv (onnx_path,vnnlib_path,timeout_seconds)")
    p.add_argument("--timeout", type=float, default=None, help="cap on every instance's timeout (s)")
    p.add_argument("--reference", help="CSV of published verdicts (columns onnx, vnnlib, final_ground_truth)")
    p.add_argument("--results", help="results CSV (default: bench_<folder>.csv in the current folder)")
    p.add_argument("--resume", action="store_true", help="skip instances already in the results file")
    p.add_argument("--limit", type=int, default=None, help="run only the first N instances")
    p.add_argument("--method", default="alpha-crown", choices=["ibp", "crown", "alpha-crown"])
    p.add_argument("--no-bab", action="store_true", help="stop after bound propagation")
    p.add_argument("--bab", default="auto", choices=["auto", "input", "relu"])
    p.add_argument("--reports", metavar="DIR", help="write a JSON safety report per instance into DIR "
                   "(named after the row: <onnx>__<vnnlib>.json)")


def read_instances(folder: Path) -> list[tuple[str, str, float]]:
    """Rows of ``instances.csv`` as (onnx path, vnnlib path, timeout)."""
    path = folder / "instances.csv"
    if not path.is_file():
        raise InputError("no instances.csv in the folder", path=str(folder))
    rows = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise InputError("expected onnx_path,vnnlib_path,timeout_seconds", path=str(path),
                                 where=f"line {line_no}")
            try:
                rows.append((row[0].strip(), row[1].strip(), float(row[2])))
            except ValueError:
                raise InputError(f"timeout '{row[2]}' is not a number", path=str(path),
                                 where=f"line {line_no}") from None
    return rows


def read_reference(path: str) -> dict[tuple[str, str], str]:
    """(onnx, vnnlib) → reference verdict, keyed by normalised relative paths and basenames."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            verdict = row.get("final_ground_truth") or row.get("ground_truth") or ""
            out[_key(row["onnx"], row["vnnlib"])] = verdict.strip()
            out[_key(Path(row["onnx"]).name, Path(row["vnnlib"]).name)] = verdict.strip()
    return out


def _key(onnx: str, vnnlib: str) -> tuple[str, str]:
    return os.path.normpath(onnx), os.path.normpath(vnnlib)


def judge(verdict: str, reference: str) -> str:
    """``correct``, ``wrong`` or ``unsolved`` (only sat/unsat references are reliable)."""
    if verdict not in ("sat", "unsat"):
        return "unsolved"
    if reference not in ("sat", "unsat"):
        return "unchecked"
    return "correct" if verdict == reference else "wrong"


def _done_rows(path: Path) -> list[dict]:
    """Complete rows of an existing results file; a torn last line (crash mid-write) is dropped."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("judgement") is not None and r.get("verdict")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def run_bench(args) -> int:
    folder = Path(args.dir)
    instances = read_instances(folder)[: args.limit]
    reference = read_reference(args.reference) if args.reference else {}
    out_path = Path(args.results or f"bench_{folder.resolve().name}.csv")
    done = _done_rows(out_path) if args.resume else []
    finished = {(r["onnx"], r["vnnlib"]) for r in done}
    if not args.resume:
        with open(out_path, "w", newline="") as f:
            csv.DictWriter(f, FIELDS).writeheader()
    rows = list(done)
    runner = _InstanceRunner(folder, args)
    for i, (onnx, vnnlib, timeout) in enumerate(instances, start=1):
        if (onnx, vnnlib) in finished:
            continue
        row = runner.run(onnx, vnnlib, min(timeout, args.timeout or timeout))
        ref = reference.get(_key(onnx, vnnlib)) or reference.get(_key(Path(onnx).name, Path(vnnlib).name), "")
        row.update(reference=ref, judgement=judge(row["verdict"], ref))
        _append(out_path, row)
        rows.append(row)
        print(f"[{i:4d}/{len(instances)}] {onnx} {vnnlib}: {row['verdict']} ({row['time_s']}s)"
              f"{' ' + row['judgement'] if ref else ''}", file=sys.stderr, flush=True)
    print(summary(rows, bool(reference), out_path))
    return 0


def _append(path: Path, row: dict) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, FIELDS).writerow(row)
        f.flush()
        os.fsync(f.fileno())


class _InstanceRunner:
    """Runs one instance in-process, reusing the last loaded model; errors become rows."""

    def __init__(self, folder: Path, args):
        self.folder, self.args = folder, args
        self.model_path, self.model = None, None

    def run(self, onnx: str, vnnlib: str, timeout: float) -> dict:
        from verifier import api
        from verifier.cli_commands import _config

        start = time.monotonic()
        row = {"onnx": onnx, "vnnlib": vnnlib, "timeout": timeout}
        try:
            if self.model_path != onnx:
                self.model, self.model_path = api.load_model(self.folder / onnx), onnx
            prop = api.load_property(self.folder / vnnlib, self.model)
            remaining = max(0.1, timeout - (time.monotonic() - start))
            config, started = _config(self.args, remaining), time.time()
            result = api.verify(self.model, prop, config=config)
            row.update(verdict=result.verdict, reason=result.reason)
            if getattr(self.args, "reports", None):
                from verifier.evidence.report import write_bench_report

                row["reason"] += write_bench_report(self.args.reports, self.folder, onnx, vnnlib, result, config,
                                                    self.model, prop, started)
        except VerifierError as e:
            row.update(verdict="error", reason=f"{e.kind}: {e.one_line()}")
        except Exception as e:  # keep going: one broken instance must not end the run
            row.update(verdict="error", reason=f"internal error: {type(e).__name__}: {e}")
        row["time_s"] = f"{time.monotonic() - start:.3f}"
        return row


def summary(rows: list[dict], with_reference: bool, path: Path) -> str:
    """A few lines: counts per verdict, and correct/wrong/unsolved against the reference."""
    verdicts = Counter(r["verdict"] for r in rows)
    times = sorted(float(r["time_s"]) for r in rows) or [0.0]
    lines = [f"instances: {len(rows)}  " + "  ".join(f"{k}: {v}" for k, v in sorted(verdicts.items())),
             f"time: total {sum(times):.1f}s, median {times[len(times) // 2]:.2f}s",
             f"results: {path}"]
    if with_reference:
        j = Counter(r["judgement"] for r in rows)
        lines.insert(1, f"correct: {j['correct']}  wrong: {j['wrong']}  unsolved: {j['unsolved']}  "
                        f"unchecked: {j['unchecked']}")
    return "\n".join(lines)
