"""Soak run (by hand, not a test): ``verifier bench`` over every benchmark family.

    python tests/soak_run.py ../shared/benchmarks --timeout 2 --sample 20 --out soak/

Each family runs as its own ``verifier bench`` process with a per-instance time cap, judged
against ``ground_truth/<family>.csv``. Per family it reports the instances run, the verdict
counts, wrong verdicts against the published ground truth, errors, the process's peak
resident memory (``os.wait4`` rusage) and the wall time; the table goes to stdout and to
``<out>/summary.md``, the per-instance rows to ``<out>/<family>.csv``.

``--sample N`` runs N instances spread evenly over a family's ``instances.csv`` (written as
a temporary instances file with absolute paths) instead of all of them.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def families(bench_dir: Path, wanted: list[str] | None) -> list[Path]:
    """Family folders (those with an ``instances.csv``), optionally only the named ones."""
    found = sorted(p for p in bench_dir.iterdir() if (p / "instances.csv").is_file())
    return [p for p in found if not wanted or p.name in wanted]


def sampled_folder(family: Path, n: int, tmp: Path) -> Path:
    """A folder whose ``instances.csv`` lists ``n`` instances spread over the family's."""
    with open(family / "instances.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    step = max(1, len(rows) / n) if n < len(rows) else 1
    picked = [rows[int(i * step)] for i in range(min(n, len(rows)))]
    out = tmp / family.name
    out.mkdir()
    with open(out / "instances.csv", "w", newline="") as f:
        csv.writer(f).writerows([str((family / r[0]).resolve()), str((family / r[1]).resolve()), r[2]]
                                for r in picked)
    return out


def run_family(folder: Path, reference: Path | None, results: Path, timeout: float, threads: int) -> dict:
    """One ``verifier bench`` process; returns exit code, wall time and peak RSS (MiB)."""
    exe = Path(sys.executable).with_name("verifier")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "verifier.cli"]
    cmd += ["bench", str(folder), "--timeout", str(timeout), "--results", str(results), "--quiet",
            "--threads", str(threads)]
    if reference is not None and reference.is_file():
        cmd += ["--reference", str(reference)]
    start = time.monotonic()
    with open(results.with_suffix(".log"), "w") as log:
        pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                                                                        (os.POSIX_SPAWN_DUP2, log.fileno(), 2)])
        _pid, status, usage = os.wait4(pid, 0)
    return {"exit": os.waitstatus_to_exitcode(status), "wall_s": time.monotonic() - start,
            "peak_rss_mib": usage.ru_maxrss / 1024.0}


def summarise(name: str, results: Path, run: dict) -> dict:
    rows = list(csv.DictReader(open(results, newline=""))) if results.is_file() else []
    verdicts = Counter(r["verdict"] for r in rows)
    judged = Counter(r["judgement"] for r in rows)
    return {"family": name, "instances": len(rows), **{k: verdicts.get(k, 0) for k in
            ("sat", "unsat", "unknown", "timeout", "error")}, "correct": judged.get("correct", 0),
            "wrong": judged.get("wrong", 0), "peak_rss_mib": round(run["peak_rss_mib"], 1),
            "wall_s": round(run["wall_s"], 1), "exit": run["exit"],
            "wrong_rows": [f"{r['onnx']} {r['vnnlib']}: {r['verdict']} vs {r['reference']}"
                           for r in rows if r["judgement"] == "wrong"],
            "errors": sorted({r["reason"][:120] for r in rows if r["verdict"] == "error"})}


def table(summaries: list[dict]) -> str:
    cols = ["family", "instances", "sat", "unsat", "unknown", "timeout", "error", "correct", "wrong",
            "peak_rss_mib", "wall_s", "exit"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(s[c]) for c in cols) + " |" for s in summaries]
    total = {c: sum(s[c] for s in summaries) for c in cols[1:-3]}
    lines.append("| total | " + " | ".join(str(total[c]) for c in cols[1:-3]) +
                 f" | {max((s['peak_rss_mib'] for s in summaries), default=0)} | "
                 f"{round(sum(s['wall_s'] for s in summaries), 1)} | |")
    for s in summaries:
        lines += [f"- {s['family']}: WRONG {w}" for w in s["wrong_rows"]]
        lines += [f"- {s['family']}: error {e}" for e in s["errors"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmarks", nargs="?", default=str(ROOT.parent / "shared" / "benchmarks"))
    p.add_argument("--timeout", type=float, default=5.0, help="cap on each instance's time limit (s)")
    p.add_argument("--sample", type=int, default=None, help="instances per family, spread evenly (default all)")
    p.add_argument("--families", nargs="*", help="only these families")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="soak", help="folder for results and summary.md (default soak/)")
    args = p.parse_args(argv)
    bench_dir, out = Path(args.benchmarks), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families(bench_dir, args.families):
            folder = sampled_folder(family, args.sample, Path(tmp)) if args.sample else family
            results = out / f"{family.name}.csv"
            results.unlink(missing_ok=True)
            run = run_family(folder, bench_dir / "ground_truth" / f"{family.name}.csv", results, args.timeout,
                             args.threads)
            summaries.append(summarise(family.name, results, run))
            s = summaries[-1]
            print(f"{family.name}: {s['instances']} instances, sat {s['sat']} unsat {s['unsat']} "
                  f"wrong {s['wrong']} error {s['error']}, {s['peak_rss_mib']} MiB, {s['wall_s']} s", flush=True)
    text = table(summaries)
    (out / "summary.md").write_text(f"timeout cap {args.timeout} s, sample {args.sample or 'all'}\n\n{text}\n")
    print(text)
    return 1 if any(s["wrong"] for s in summaries) else 0


if __name__ == "__main__":
    sys.exit(main())
