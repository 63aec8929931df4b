"""``verifier bench``: run a VNN-COMP style folder, one result row per instance as it goes.

Rows are appended (and flushed to disk) one at a time, so a crash or kill loses nothing
finished; ``--resume`` skips rows already in the results file.
"""
from __future__ import annotations

import csv
import io
import math
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
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run only instances K, K+N, K+2N, ... (K from 0): N processes with shards 0/N..N-1/N and "
                        "their own --results files split a family across cores, GPUs or machines (one process "
                        "per GPU: processes sharing one slow each other down far more than their share)")
    p.add_argument("--method", default="alpha-crown", choices=["ibp", "crown", "alpha-crown", "lp", "milp"])
    p.add_argument("--solver", default="HIGHS", help="cvxpy solver for lp / milp (default HIGHS)")
    p.add_argument("--no-bab", action="store_true", help="stop after bound propagation")
    p.add_argument("--bab", default="auto", choices=["auto", "input", "relu"])
    from verifier.cli_commands import add_milp_after

    add_milp_after(p)
    p.add_argument("--reports", metavar="DIR", help="write a JSON safety report per instance into DIR "
                   "(named after the row: <onnx>__<vnnlib>.json)")


def read_instances(folder: Path) -> list[tuple[str, str, float]]:
    """Rows of ``instances.csv`` as (onnx path, vnnlib path, timeout)."""
    path = folder / "instances.csv"
    if not path.is_file():
        raise InputError("no instances.csv in the folder", path=str(folder))
    rows = []
    for line_no, row in enumerate(_csv_rows(path, "instances file"), start=1):
        if not row or row[0].startswith("#"):
            continue
        if len(row) < 3:
            raise InputError("expected onnx_path,vnnlib_path,timeout_seconds", path=str(path),
                             where=f"line {line_no}")
        try:
            timeout = float(row[2])
        except ValueError:
            timeout = math.nan
        if not (timeout > 0 and math.isfinite(timeout)):
            raise InputError(f"timeout '{row[2].strip()}' is not a positive number of seconds", path=str(path),
                             where=f"line {line_no}")
        rows.append((row[0].strip(), row[1].strip(), timeout))
    return rows


def _csv_rows(path: Path, what: str) -> list[list[str]]:
    """The rows of a CSV text file; unreadable or non-UTF-8 files are input errors."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        reason = (e.strerror or "unreadable") if isinstance(e, OSError) else \
            "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else "malformed CSV"
        raise InputError(f"cannot read the {what} ({reason})", path=str(path)) from None


def read_reference(path: str) -> dict[tuple[str, str], str]:
    """(onnx, vnnlib) → reference verdict, keyed by normalised relative paths and basenames."""
    rows = _csv_rows(Path(path), "reference file")
    header = [h.strip() for h in rows[0]] if rows else []
    if "onnx" not in header or "vnnlib" not in header:
        raise InputError("the reference file needs a header with columns onnx, vnnlib and "
                         "final_ground_truth", path=path)
    out = {}
    for row in rows[1:]:
        row = dict(zip(header, row))
        verdict = row.get("final_ground_truth") or row.get("ground_truth") or ""
        onnx, vnnlib = row.get("onnx", ""), row.get("vnnlib", "")
        out[_key(onnx, vnnlib)] = verdict.strip()
        out[_key(Path(onnx).name, Path(vnnlib).name)] = verdict.strip()
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


VERDICTS = ("sat", "unsat", "unknown", "timeout", "error")
JUDGEMENTS = ("correct", "wrong", "unsolved", "unchecked")


def _done_rows(path: Path) -> list[dict]:
    """Complete rows of an existing results file, each instance once; the file is rewritten
    (atomically) with just those rows. A torn last line (a crash mid-write) is dropped."""
    from verifier.resultfile import write_atomic

    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise InputError(f"cannot read the results file to resume it ({reason})", path=str(path)) from None
    text = text[: text.rfind("\n") + 1]  # a line without its end was torn by a crash
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if text and reader.fieldnames != FIELDS:
            raise InputError("is not a results file of 'verifier bench' (header differs); "
                             "use another --results file", path=str(path))
        rows, seen = [], set()
        for r in reader:
            key = (r.get("onnx"), r.get("vnnlib"))
            if _complete(r) and key not in seen:
                seen.add(key)
                rows.append(r)
    except csv.Error:
        raise InputError("cannot read the results file to resume it (malformed CSV)", path=str(path)) from None
    write_atomic(path, _csv_text(rows))
    return rows


def _complete(row: dict) -> bool:
    """Whether a row read back from the results file was written whole."""
    if None in row or None in row.values() or row["verdict"] not in VERDICTS or row["judgement"] not in JUDGEMENTS:
        return False
    try:
        return math.isfinite(float(row["time_s"])) and math.isfinite(float(row["timeout"]))
    except ValueError:
        return False


def _csv_text(rows: list[dict], header: bool = True) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, FIELDS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _check_arguments(args) -> None:
    """Refuse settings that would silently run something else than asked."""
    if args.limit is not None and args.limit < 0:
        raise InputError(f"--limit must be >= 0, got {args.limit}")
    if args.timeout is not None and not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.reports and Path(args.reports).exists() and not Path(args.reports).is_dir():
        raise InputError("--reports must name a folder", path=args.reports)
    shard(args.shard, [])


def shard(text: str | None, instances: list) -> list:
    """The instances of shard ``K/N`` (every N-th from the K-th); all of them when ``text`` is None."""
    if text is None:
        return instances
    k, _, n = text.partition("/")
    if not (k.strip().isdigit() and n.strip().isdigit() and int(k) < int(n)):
        raise InputError(f"--shard must be K/N with 0 <= K < N, got '{text}'")
    return instances[int(k)::int(n)]


def run_bench(args) -> int:
    from verifier.resultfile import write_atomic

    _check_arguments(args)
    folder = Path(args.dir)
    instances = shard(args.shard, read_instances(folder)[: args.limit])
    reference = read_reference(args.reference) if args.reference else {}
    out_path = Path(args.results or f"bench_{folder.resolve().name}.csv")
    done = _done_rows(out_path) if args.resume else []
    finished = {(r["onnx"], r["vnnlib"]) for r in done}
    if not args.resume or not out_path.is_file():
        write_atomic(out_path, _csv_text([]))
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
    """Append one row with a single write and push it to disk."""
    try:
        with open(path, "a", newline="") as f:
            f.write(_csv_text([row], header=False))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise InputError(f"cannot append to the results file ({e.strerror})", path=str(path)) from None


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
            row.update(verdict=result.verdict, reason=result.reason,
                       time_s=f"{time.monotonic() - start:.3f}")  # writing the report is not verifying
            if getattr(self.args, "reports", None):
                from verifier.evidence.report import write_bench_report

                row["reason"] += write_bench_report(self.args.reports, self.folder, onnx, vnnlib, result, config,
                                                    self.model, prop, started)
        except VerifierError as e:
            row.update(verdict="error", reason=f"{e.kind}: {e.one_line()}")
        except Exception as e:  # keep going: one broken instance must not end the run
            row.update(verdict="error", reason=f"internal error: {type(e).__name__}: {e}")
        row.setdefault("time_s", f"{time.monotonic() - start:.3f}")
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
