"""Nothing is lost: killed runs leave complete results, ``--resume`` finishes them, files are
replaced atomically; and untrusted input files cannot run code or reach outside their folder.

``verifier bench`` and ``verifier certify`` run as real processes and are stopped with
SIGINT, SIGTERM or SIGKILL once their results file holds a row or two. The file must then be
a valid CSV of complete rows (no torn line), SIGINT/SIGTERM must end the process promptly
with exit code 130 and one clear line, and a ``--resume`` run must finish the work with every
instance exactly once and every row written before the kill unchanged.
"""
from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import MODELS_DIR, ROOT, SPECS_DIR
from fuzz import mutate
from verifier.cli import main
from verifier.errors import InputError
from verifier.resultfile import write_atomic

PROMPT = 60.0   # seconds a process may take to stop after SIGINT/SIGTERM (a hang check, not a timing)


def verifier_command() -> list[str]:
    exe = Path(sys.executable).with_name("verifier")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "verifier.cli"]


def complete_rows(path: Path) -> list[dict]:
    """The rows of a results file, asserting it is whole: ends with a line end, every row has
    every column of the header."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"torn last line in {path.name}: {text.splitlines()[-1]!r}"
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    for r in rows:
        assert None not in r and None not in r.values(), f"incomplete row {r}"
    return rows


def _default_signals() -> None:
    """In the child before exec: default SIGINT/SIGTERM handling, so that a test run from a
    background job (where the shell ignores SIGINT, and Python then installs no handler for
    it) still sends the verifier a signal it acts on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_and_stop(argv: list[str], results: Path, sig: signal.Signals, rows: int, cwd: Path) -> tuple[list[dict], int]:
    """Start ``verifier argv``, send ``sig`` once ``results`` holds ``rows`` rows; returns the
    rows present after the process ended and its exit status."""
    proc = subprocess.Popen([*verifier_command(), *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if results.is_file() and results.read_text().count("\n") > rows:   # header + rows
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be stopped:\n{proc.stderr.read()}"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=PROMPT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig != signal.SIGKILL:
        assert proc.returncode == 130, f"exit {proc.returncode} after {sig.name}:\n{err}"
        assert "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("verifier: interrupted"), err
        assert sum(line.startswith("verifier:") for line in err.splitlines()) == 1, err
    else:
        assert proc.returncode == -signal.SIGKILL
    return complete_rows(results), proc.returncode


def resume(argv: list[str], cwd: Path) -> None:
    done = subprocess.run([*verifier_command(), *argv, "--resume"], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr


def _slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


# ---- verifier bench ------------------------------------------------------------------------
@pytest.mark.parametrize("sig, rows", [(signal.SIGTERM, 1), (signal.SIGKILL, 2), _slow(signal.SIGINT, 1),
                                       _slow(signal.SIGKILL, 1), _slow(signal.SIGTERM, 2)],
                         ids=lambda v: v.name if isinstance(v, signal.Signals) else f"after{v}")
def test_bench_killed_then_resumed(tmp_path: Path, sig: signal.Signals, rows: int) -> None:
    results = tmp_path / "bench.csv"
    argv = ["bench", str(SPECS_DIR), "--results", str(results)]
    before, _code = run_and_stop(argv, results, sig, rows, tmp_path)
    instances = [tuple(r[:2]) for r in csv.reader(open(SPECS_DIR / "instances.csv", newline="")) if r]
    assert rows <= len(before) < len(instances)
    resume(argv, tmp_path)
    after = complete_rows(results)
    keys = [(r["onnx"], r["vnnlib"]) for r in after]
    assert sorted(keys) == sorted(instances), "every instance exactly once"
    assert after[: len(before)] == before, "rows written before the kill are unchanged"


# ---- verifier certify ----------------------------------------------------------------------
N_CERTIFY = 8   # the first inputs of the test set, some 50 ms each at n=200,000, so that the signal
# sent after the first rows reaches a run still working (at n=20,000 an input takes a few
# milliseconds and the run could finish between the check and the signal)
CERTIFY = ["certify", str(MODELS_DIR / "digits_smooth.onnx"), "--data", str(MODELS_DIR / "digits_test.npz"),
           "--sigma", "0.25", "--n", "200000", "--limit", str(N_CERTIFY), "--quiet"]


@pytest.mark.parametrize("sig, rows", [(signal.SIGINT, 1), _slow(signal.SIGTERM, 2), _slow(signal.SIGKILL, 1)],
                         ids=lambda v: v.name if isinstance(v, signal.Signals) else f"after{v}")
def test_certify_killed_then_resumed(tmp_path: Path, sig: signal.Signals, rows: int) -> None:
    results = tmp_path / "certify.csv"
    argv = [*CERTIFY, "--results", str(results)]
    before, _code = run_and_stop(argv, results, sig, rows, tmp_path)
    n = N_CERTIFY
    assert rows <= len(before) < n
    resume(argv, tmp_path)
    after = complete_rows(results)
    assert sorted(int(r["index"]) for r in after) == list(range(n)), "every input exactly once"
    assert after[: len(before)] == before, "rows written before the kill are unchanged"


# ---- bench --resume on damaged files (in-process) -----------------------------------------
HEADER = "onnx,vnnlib,timeout,verdict,time_s,reason,reference,judgement\n"
ROW = "../models/digits_mlp.onnx,{},30.0,unsat,0.5,proved,,unchecked\n"


@pytest.mark.parametrize("tail", ["../models/digits_mlp.onnx,digits_mlp_eps0.01_idx1.vnnlib,30.0,uns",
                                  ROW.format("digits_mlp_eps0.01_idx1.vnnlib")[:-8] + "\n",
                                  ROW.format("digits_mlp_eps0.01_idx0.vnnlib")],
                         ids=["torn_line", "cut_inside_a_field", "repeated_row"])
def test_bench_resume_drops_torn_and_repeated_rows(tmp_path: Path, tail: str, capsys) -> None:
    """A torn last line, a row cut inside a field and a repeated row are dropped; the kept
    row is not run again."""
    results = tmp_path / "r.csv"
    results.write_text(HEADER + ROW.format("digits_mlp_eps0.01_idx0.vnnlib") + tail)
    assert main(["bench", str(SPECS_DIR), "--results", str(results), "--resume", "--limit", "2", "--quiet"]) == 0
    rows = complete_rows(results)
    assert [r["vnnlib"] for r in rows] == ["digits_mlp_eps0.01_idx0.vnnlib", "digits_mlp_eps0.01_idx1.vnnlib"]
    assert rows[0]["reason"] == "proved"   # kept, not recomputed
    capsys.readouterr()


def test_bench_resume_rewrite_is_atomic(tmp_path: Path, monkeypatch) -> None:
    """A failure while ``--resume`` rewrites the results file leaves the old file intact."""
    results = tmp_path / "r.csv"
    original = HEADER + ROW.format("digits_mlp_eps0.01_idx0.vnnlib") + "torn,li"
    results.write_text(original)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    assert main(["bench", str(SPECS_DIR), "--results", str(results), "--resume", "--limit", "1"]) == 3
    assert results.read_text() == original
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"], "no temporary file is left behind"


# ---- atomic files ----------------------------------------------------------------------------
@pytest.mark.parametrize("fail_in", ["write", "fsync", "replace"])
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()],
                         ids=["disk_full", "interrupt"])
def test_write_atomic_failure_keeps_the_old_file(tmp_path: Path, monkeypatch, fail_in: str, error) -> None:
    """A failure at any step (after part of the text is written) leaves the old file whole and
    no temporary file; an OSError becomes an input error, an interrupt stays an interrupt."""
    target = tmp_path / "result.txt"
    target.write_text("sat\n((X_0 0.5)\n (Y_0 1.0))\n")
    old = target.read_text()

    def fail(*_a, **_k):
        raise error

    if fail_in == "write":
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, text):
                self.f.write(text[: len(text) // 2])
                self.f.flush()
                raise error

            def __getattr__(self, name):
                return getattr(self.f, name)

        monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))
    else:
        monkeypatch.setattr(os, fail_in, fail)
    expected = InputError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_atomic(target, "unsat\n" * 10_000)
    assert target.read_text() == old
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_write_atomic_killed_never_leaves_a_half_file(tmp_path: Path) -> None:
    """SIGKILL at random moments of a loop of large atomic writes: the file always holds one
    whole version."""
    target = tmp_path / "out.txt"
    size = 4_000_000
    child = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from verifier.resultfile import write_atomic
        i = 0
        while True:
            write_atomic({str(target)!r}, "AB"[i % 2] * {size})
            if i == 0:
                print("ready", flush=True)
            i += 1
    """)
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            proc.kill()
        finally:
            proc.wait()
        text = target.read_text()
        assert len(text) == size and text in ("A" * size, "B" * size)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.txt"]
    assert all(p.startswith(".out.txt.") for p in leftovers), leftovers   # hidden temporaries only


def test_result_file_and_report_survive_a_failed_write(tmp_path: Path, monkeypatch, capsys) -> None:
    """``verify --result-file/--report`` over existing files: a write that fails keeps the old
    files whole and ends in one input-error line."""
    result_file, report = tmp_path / "result.txt", tmp_path / "report.json"
    result_file.write_text("unknown\n")
    report.write_text('{"old": true}\n')
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name in ("result.txt", "report.json"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    for flag, path in (("--result-file", result_file), ("--report", report)):
        code = main(["verify", str(MODELS_DIR / "digits_mlp.onnx"), str(SPECS_DIR / "digits_mlp_eps0.3_idx3.vnnlib"),
                     "--quiet", "--timeout", "20", flag, str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 3 and err[-1].startswith("verifier: input error: ") and path.name in err[-1]
    assert result_file.read_text() == "unknown\n" and report.read_text() == '{"old": true}\n'


def test_sigterm_handler_is_restored(capsys) -> None:
    before = signal.getsignal(signal.SIGTERM)
    main(["info", str(MODELS_DIR / "digits_mlp.onnx")])
    capsys.readouterr()
    assert signal.getsignal(signal.SIGTERM) is before


# ---- untrusted files -----------------------------------------------------------------------
def test_numpy_never_unpickles() -> None:
    """Every ``np.load`` in the package refuses pickles explicitly."""
    calls = []
    for path in (ROOT / "verifier").rglob("*.py"):
        for m in re.finditer(r"np\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, m.group(1)))
    assert calls and all("allow_pickle=False" in args for _, args in calls), calls
    assert not any(re.search(r"\bpickle\b|torch\.load|yaml\.load\b", p.read_text())
                   for p in (ROOT / "verifier").rglob("*.py"))


def test_pickle_payload_is_refused_and_never_run(tmp_path: Path, capsys) -> None:
    """An .npy/.npz whose object array would run code when unpickled: refused, not run."""
    import pickle

    class Payload:
        def __init__(self, target: Path):
            self.target = target

        def __reduce__(self):
            return (Path.touch, (self.target,))

    proof, marker = tmp_path / "unpickling_runs_it", tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(proof)))
    assert proof.exists()   # the payload is real: unpickling it creates a file
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    npy = tmp_path / "evil.npy"
    np.save(npy, arr, allow_pickle=True)
    np.savez(tmp_path / "evil.npz", x=arr, y=np.zeros(1, np.int64))
    smooth = str(MODELS_DIR / "digits_smooth.onnx")
    assert main(["certify", smooth, "--input", str(npy), "--sigma", "0.25"]) == 3
    assert main(["certify", smooth, "--data", str(tmp_path / "evil.npz"), "--sigma", "0.25"]) == 3
    capsys.readouterr()
    assert not marker.exists()


def test_protobuf_size_limit_is_checked(monkeypatch) -> None:
    """A model file over protobuf's 2 GiB limit is refused before it is read."""
    from verifier import api
    from verifier.errors import InputError
    from verifier.ir import onnx_file

    real_stat = Path.stat

    def huge_stat(self, *a, **k):
        st = real_stat(self, *a, **k)
        if self.name != "digits_mlp.onnx":
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                               onnx_file.MAX_FILE_BYTES + 1, st.st_atime, st.st_mtime, st.st_ctime))

    monkeypatch.setattr(Path, "stat", huge_stat)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    with pytest.raises(InputError, match="2 GiB"):
        api.load_model(MODELS_DIR / "digits_mlp.onnx")


@pytest.mark.parametrize("how", ["file_symlink", "folder_symlink", "parent", "absolute"])
def test_external_data_stays_in_the_model_folder(tmp_path: Path, how: str) -> None:
    """External tensor data may not leave the model's folder: not by '..', an absolute path,
    a symlinked file or a symlinked sub-folder (the target holds valid weights)."""
    from verifier import api
    from verifier.errors import InputError

    outside, inner = tmp_path / "outside", tmp_path / "model"
    outside.mkdir()
    inner.mkdir()
    W1 = onnx.numpy_helper.to_array(mutate.mlp_model().graph.initializer[0])
    (outside / "w.bin").write_bytes(np.ascontiguousarray(W1).tobytes())
    location = {"parent": "../outside/w.bin", "absolute": str(outside / "w.bin"),
                "file_symlink": "w.bin", "folder_symlink": "data/w.bin"}[how]
    if how == "file_symlink":
        os.symlink(outside / "w.bin", inner / "w.bin")
    if how == "folder_symlink":
        os.symlink(outside, inner / "data")
    path = inner / "m.onnx"
    path.write_bytes(mutate.set_external(mutate.mlp_model(), "W1", location).SerializeToString())
    with pytest.raises(InputError, match="outside the model's folder"):
        api.load_model(path)
    (inner / "ok.bin").write_bytes(np.ascontiguousarray(W1).tobytes())   # the same weights inside load
    path.write_bytes(mutate.set_external(mutate.mlp_model(), "W1", "ok.bin").SerializeToString())
    assert api.load_model(path).n_inputs == mutate.N_IN
