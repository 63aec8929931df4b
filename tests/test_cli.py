"""The ``verifier`` command end to end, run as a subprocess.

Verdicts are judged against independent sources: the expected verdicts in ``specs/README.md``
and the published ones in ``../shared/benchmarks/ground_truth``. A ``sat`` witness is checked
here without the library: its X values against the VNN-LIB bounds read by a regular
expression, its Y values and the violation against onnxruntime.
"""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS_DIR, SPECS_DIR, benchmark_path, ort_forward, ort_session

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
BOUND_RE = re.compile(rf"\(assert\s+\((<=|>=)\s+X_(\d+)\s+({NUM})\s*\)\s*\)")
ATOM_RE = re.compile(rf"\((<=|>=)\s+(Y_\d+|{NUM})\s+(Y_\d+|{NUM})\s*\)")
WITNESS_RE = re.compile(rf"\(([XY])_(\d+)\s+({NUM}|nan|inf|-inf)\s*\)")
README_ROW = re.compile(r"^\|\s*`([^`]+\.vnnlib)`\s*\|.*\|\s*`(sat|unsat)`\s*\|", re.M)


def verifier_command() -> list[str]:
    exe = Path(sys.executable).with_name("verifier")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "verifier.cli"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*verifier_command(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def expected_verdicts() -> dict[str, str]:
    """vnnlib file name → sat/unsat, from the table in specs/README.md."""
    return dict(README_ROW.findall((SPECS_DIR / "README.md").read_text()))


def spec_instances() -> list[tuple[str, str, float]]:
    with open(SPECS_DIR / "instances.csv", newline="") as f:
        return [(r[0].strip(), r[1].strip(), float(r[2])) for r in csv.reader(f) if r]


# ---- independent VNN-LIB reading (bounds and output atoms by regular expression) ------

def vnnlib_box(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every X_i from ``(assert (<=|>= X_i c))`` lines."""
    found = [(op, int(i), float(v)) for op, i, v in BOUND_RE.findall(text)]
    n = max(i for _, i, _ in found) + 1
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    for op, i, v in found:
        if op == ">=":
            lo[i] = max(lo[i], v)
        else:
            hi[i] = min(hi[i], v)
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    return lo, hi


def _atom_holds(atom: tuple[str, str, str], y: np.ndarray) -> bool:
    op, a, b = atom
    va = y[int(a[2:])] if a.startswith("Y_") else float(a)
    vb = y[int(b[2:])] if b.startswith("Y_") else float(b)
    return va <= vb if op == "<=" else va >= vb


def vnnlib_unsafe(text: str, y: np.ndarray) -> bool:
    """Whether outputs ``y`` satisfy the file's output constraints: top-level atoms joined by
    AND, with at most one ``(assert (or (and ...) ...))`` block."""
    text = re.sub(r";[^\n]*", "", text)
    start = text.find("(assert (or")
    disjuncts: list[list] = []
    if start >= 0:
        depth, end = 0, start
        for end in range(start, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        block = text[start:end + 1]
        disjuncts = [ATOM_RE.findall(group) for group in re.findall(r"\(and((?:[^()]|\([^()]*\))*)\)", block)]
        text = text[:start] + text[end + 1:]
    common = ATOM_RE.findall(text)
    if not all(_atom_holds(a, y) for a in common):
        return False
    return not disjuncts or any(all(_atom_holds(a, y) for a in group) for group in disjuncts)


def check_witness(result_text: str, onnx_path: Path, vnnlib_path: Path) -> None:
    """The result file of a ``sat`` run: X inside the box, Y = onnxruntime(X), Y unsafe."""
    lines = result_text.splitlines()
    assert lines[0] == "sat"
    values = {(kind, int(i)): float(v) for kind, i, v in WITNESS_RE.findall("\n".join(lines[1:]))}
    text = vnnlib_path.read_text()
    lo, hi = vnnlib_box(text)
    x = np.array([values[("X", i)] for i in range(len(lo))])
    assert np.all(x >= lo) and np.all(x <= hi), "witness X outside the input box"
    assert np.array_equal(x.astype(np.float32).astype(np.float64), x), "X values must be exact float32 numbers"
    y_ref = ort_forward(onnx_path, x[None, :])[0]
    y = np.array([values[("Y", j)] for j in range(len(y_ref))])
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    assert vnnlib_unsafe(text, y_ref), "onnxruntime's output on the witness does not violate the property"


# ---- help ------------------------------------------------------------------------------

def _subcommands() -> list[str]:
    import argparse

    from verifier.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_main_help_lists_subcommands() -> None:
    run = run_cli("--help")
    assert run.returncode == 0 and run.stderr == ""
    for name in _subcommands():
        assert name in run.stdout


@pytest.mark.parametrize("command", _subcommands())
def test_subcommand_help_exits_0(command: str) -> None:
    run = run_cli(command, "--help")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage:") and command in run.stdout.splitlines()[0]


def test_no_subcommand_is_a_usage_error() -> None:
    run = run_cli()
    assert run.returncode == 2 and "Traceback" not in run.stderr


# ---- verify on the shipped specs -------------------------------------------------------

def test_readme_lists_every_instance() -> None:
    expected = expected_verdicts()
    assert {v for _, v, _ in spec_instances()} == set(expected)
    assert set(expected.values()) == {"sat", "unsat"}


@pytest.mark.parametrize("onnx,vnnlib,timeout", [pytest.param(*row, id=row[1]) for row in spec_instances()])
def test_verify_shipped_spec(onnx: str, vnnlib: str, timeout: float, tmp_path: Path) -> None:
    expected = expected_verdicts()[vnnlib]
    result_file = tmp_path / "out" / "result.txt"
    run = run_cli("verify", str(SPECS_DIR / onnx), str(SPECS_DIR / vnnlib), "--timeout", str(timeout),
                  "--result-file", str(result_file))
    assert run.returncode == 0, run.stderr
    verdict = run.stdout.splitlines()[0]
    text = result_file.read_text()
    assert text.splitlines()[0] == verdict
    if expected == "sat":
        assert verdict == "sat", f"counterexample not found: {run.stdout}"
        check_witness(text, (SPECS_DIR / onnx).resolve(), SPECS_DIR / vnnlib)
    else:
        assert verdict in ("unsat", "unknown", "timeout"), f"{vnnlib} is robust; got {verdict}"
        assert len(text.splitlines()) == 1, "only a sat result carries a witness"


# ---- info and bounds -------------------------------------------------------------------

def test_info_describes_the_model() -> None:
    path = MODELS_DIR / "digits_cnn.onnx"
    run = run_cli("info", str(path))
    assert run.returncode == 0, run.stderr
    sess = ort_session(path)
    per_sample = list(sess.get_inputs()[0].shape[1:])
    assert f"input shape (per sample): {per_sample}" in run.stdout
    assert f"output shape: {list(sess.get_outputs()[0].shape[1:])}" in run.stdout
    assert "Conv" in run.stdout and "Relu" in run.stdout


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_bounds_contain_onnxruntime_outputs(method: str) -> None:
    onnx, vnnlib = MODELS_DIR / "digits_mlp.onnx", SPECS_DIR / "digits_mlp_eps0.3_idx3.vnnlib"
    run = run_cli("bounds", str(onnx), str(vnnlib), "--method", method, "--timeout", "60")
    assert run.returncode == 0, run.stderr
    pairs = re.findall(rf"Y_(\d+): \[({NUM}), ({NUM})\]", run.stdout)
    assert [int(j) for j, _, _ in pairs] == list(range(10))
    lb = np.array([float(a) for _, a, _ in pairs])
    ub = np.array([float(b) for _, _, b in pairs])
    lo, hi = vnnlib_box(vnnlib.read_text())
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(lo, hi, size=(300, lo.size)), [(lo + hi) / 2, lo, hi]])
    y = ort_forward(onnx, x.astype(np.float32))
    tol = 1e-5 * (1 + np.abs(y))
    assert np.all(y >= lb - tol) and np.all(y <= ub + tol)
    assert "unsafe rows" in run.stdout


# ---- bench -----------------------------------------------------------------------------

def _subset_folder(tmp_path: Path, names: list[str]) -> Path:
    """A bench folder whose instances.csv lists ``names`` (absolute paths into specs/)."""
    folder = tmp_path / "bench"
    folder.mkdir()
    rows = [(str((SPECS_DIR / o).resolve()), str(SPECS_DIR / v), t) for o, v, t in spec_instances() if v in names]
    with open(folder / "instances.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return folder


def _reference(path: Path, instances: list[tuple[str, str, float]]) -> Path:
    expected = expected_verdicts()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["onnx", "vnnlib", "final_ground_truth"])
        writer.writerows((o, v, expected[Path(v).name]) for o, v, _ in instances)
    return path


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _judge_rows(rows: list[dict]) -> None:
    expected = expected_verdicts()
    for r in rows:
        want = expected[Path(r["vnnlib"]).name]
        assert r["reference"] == want
        assert r["verdict"] != "error", r
        if r["verdict"] in ("sat", "unsat"):
            assert r["judgement"] == ("correct" if r["verdict"] == want else "wrong")
        assert r["judgement"] != "wrong", f"wrong verdict: {r}"
        if want == "sat":
            assert r["verdict"] == "sat", f"counterexample not found: {r}"


def test_bench_with_reference_on_a_subset(tmp_path: Path) -> None:
    names = ["digits_mlp_eps0.3_idx3.vnnlib", "digits_cnn_eps0.3_idx4.vnnlib", "digits_mlp_eps0.01_idx0.vnnlib"]
    folder = _subset_folder(tmp_path, names)
    with open(folder / "instances.csv", newline="") as f:
        instances = [(r[0], r[1], float(r[2])) for r in csv.reader(f)]
    ref = _reference(tmp_path / "ref.csv", instances)
    results = tmp_path / "results.csv"
    run = run_cli("bench", str(folder), "--reference", str(ref), "--results", str(results), "--timeout", "30",
                  "--quiet")
    assert run.returncode == 0, run.stderr
    rows = _read_rows(results)
    assert len(rows) == 3
    _judge_rows(rows)
    assert "wrong: 0" in run.stdout


@pytest.mark.slow
def test_bench_specs_folder_with_reference(tmp_path: Path) -> None:
    ref = _reference(tmp_path / "ref.csv", spec_instances())
    results = tmp_path / "results.csv"
    run = run_cli("bench", str(SPECS_DIR), "--reference", str(ref), "--results", str(results), "--quiet")
    assert run.returncode == 0, run.stderr
    rows = _read_rows(results)
    assert [(r["onnx"], r["vnnlib"]) for r in rows] == [(o, v) for o, v, _ in spec_instances()]
    _judge_rows(rows)


def test_bench_resume_completes_without_duplicates(tmp_path: Path) -> None:
    names = ["digits_mlp_eps0.3_idx3.vnnlib", "digits_mlp_eps0.3_idx4.vnnlib", "digits_cnn_eps0.3_idx3.vnnlib"]
    folder = _subset_folder(tmp_path, names)
    results = tmp_path / "results.csv"
    first = run_cli("bench", str(folder), "--results", str(results), "--limit", "2", "--quiet")
    assert first.returncode == 0, first.stderr
    before = _read_rows(results)
    assert len(before) == 2
    second = run_cli("bench", str(folder), "--results", str(results), "--resume", "--quiet")
    assert second.returncode == 0, second.stderr
    after = _read_rows(results)
    keys = [(r["onnx"], r["vnnlib"]) for r in after]
    assert len(keys) == len(set(keys)) == 3, keys
    assert after[:2] == before, "resume must keep the finished rows as they were"
    assert {Path(v).name for _, v in keys} == set(names)
    assert all(r["verdict"] == "sat" for r in after)


def test_bench_shards_split_the_instances_between_processes(tmp_path: Path) -> None:
    names = ["digits_mlp_eps0.3_idx3.vnnlib", "digits_mlp_eps0.3_idx4.vnnlib", "digits_cnn_eps0.3_idx3.vnnlib"]
    folder = _subset_folder(tmp_path, names)
    with open(folder / "instances.csv", newline="") as f:
        order = [Path(r[1]).name for r in csv.reader(f)]
    keys = []
    for k in (0, 1):
        results = tmp_path / f"shard{k}.csv"
        run = run_cli("bench", str(folder), "--results", str(results), "--shard", f"{k}/2", "--quiet")
        assert run.returncode == 0, run.stderr
        keys.append([Path(r["vnnlib"]).name for r in _read_rows(results)])
    assert sorted(order) == sorted(names)
    assert keys[0] == [order[0], order[2]] and keys[1] == [order[1]]
    bad = run_cli("bench", str(folder), "--shard", "2/2", "--quiet")
    assert bad.returncode == 3 and "--shard must be K/N" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_bounds_bench_refuses_bad_batch_sizes() -> None:
    run = run_cli("bounds-bench", "--batches", "1,x")
    assert run.returncode == 3 and "--batches" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_verify_refuses_a_negative_branch_and_bound_batch() -> None:
    run = run_cli("verify", str(MODELS_DIR / "digits_mlp.onnx"), str(SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"),
                  "--bab-batch", "-3")
    assert run.returncode == 3 and "--bab-batch" in run.stderr and len(run.stderr.strip().splitlines()) == 1


# ---- published verdicts ----------------------------------------------------------------

def _test_2022_rows() -> list:
    from conftest import BENCHMARKS_DIR

    path = BENCHMARKS_DIR / "ground_truth" / "test_2022.csv"
    if not path.is_file():
        return [pytest.param(None, id="benchmarks-absent")]
    with open(path, newline="") as f:
        return [pytest.param(r, id=f"{r['onnx']}-{r['vnnlib']}") for r in csv.DictReader(f)]


@pytest.mark.parametrize("row", _test_2022_rows())
def test_verify_matches_published_verdict(row: dict | None, tmp_path: Path) -> None:
    folder = benchmark_path("test_2022")
    truth = row["final_ground_truth"]
    result_file = tmp_path / "result.txt"
    run = run_cli("verify", str(folder / row["onnx"]), str(folder / row["vnnlib"]), "--timeout", "60",
                  "--result-file", str(result_file), "--quiet")
    assert run.returncode == 0, run.stderr
    verdict = run.stdout.splitlines()[0]
    assert verdict == truth, f"published {truth}, got {verdict}"
    if verdict == "sat":
        check_witness(result_file.read_text(), folder / row["onnx"], folder / row["vnnlib"])


def test_memory_limit_too_small_is_a_resource_error_not_a_traceback():
    run = run_cli("verify", str(MODELS_DIR / "digits_mlp.onnx"), str(SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"),
                  "--memory-limit", "1", "--quiet")
    assert run.returncode == 6, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "out of memory" in lines[0] and "Traceback" not in run.stderr


def test_memory_limit_with_room_changes_nothing():
    run = run_cli("verify", str(MODELS_DIR / "digits_mlp.onnx"), str(SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"),
                  "--memory-limit", "4000", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "unsat"
