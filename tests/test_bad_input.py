"""Bad input gives a classified error: one line on stderr, exit code 3 (input error) or 4
(unsupported), never a traceback; the Python API raises the matching ``VerifierError``.

Every case is a file written into a temporary folder. The command's entry point runs in this
process for every case; a few cases also run the installed command as a separate process.
"""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS_DIR, SPECS_DIR, build_onnx
from verifier import api
from verifier.errors import InputError, UnsupportedError, VerifierError

GOOD_MODEL = MODELS_DIR / "digits_mlp.onnx"
GOOD_SPEC = SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"


@dataclass
class Case:
    """A bad-input scenario: the files to run and what must come back."""

    model: Path
    spec: Path
    exit_code: int
    words: tuple[str, ...] = ()   # each must appear in the message (case-insensitive)


def _spec_text(n_inputs: int, n_outputs: int, bounds: dict[int, tuple[float, float]] | None = None) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_outputs)]
    for i in range(n_inputs):
        lo, hi = (bounds or {}).get(i, (0.0, 1.0))
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    lines.append("(assert (>= Y_1 Y_0))")
    return "\n".join(lines) + "\n"


def _gemm_model(path: Path, W: np.ndarray) -> Path:
    node = helper.make_node("Gemm", ["x", "W"], ["y"])
    return build_onnx(path, [node], [("x", (1, W.shape[0]))], [("y", (1, W.shape[1]))], {"W": W}, check=False)


def _external_data_model(path: Path, location: str, data_file: Path) -> Path:
    """A Gemm whose weight lives in ``data_file``, referenced as ``location``."""
    W = np.arange(12, dtype=np.float32).reshape(4, 3)
    data_file.write_bytes(W.tobytes())
    tensor = numpy_helper.from_array(W, "W")
    onnx.external_data_helper.set_external_data(tensor, location=location, offset=0, length=W.nbytes)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=[tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _single_op(path: Path, op: str, **attrs) -> Path:
    node = helper.make_node(op, ["x"], ["y"], name=f"my_{op.lower()}_node", **attrs)
    return build_onnx(path, [node], [("x", (1, 4))], [("y", (1, 4))], check=False)


def build_cases(tmp: Path) -> dict[str, Case]:
    models = tmp / "models"
    models.mkdir()
    good = GOOD_MODEL.read_bytes()
    (models / "empty.onnx").write_bytes(b"")
    (tmp / "empty.vnnlib").write_text("")
    (models / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (models / "text.onnx").write_text("This is a plain text file, not an ONNX model.\n" * 20)
    nan_w = np.ones((4, 3), np.float32)
    nan_w[1, 2] = np.nan
    inf_w = np.ones((4, 3), np.float32)
    inf_w[0, 0] = -np.inf
    two_inputs = build_onnx(models / "two_inputs.onnx", [helper.make_node("Add", ["a", "b"], ["y"])],
                            [("a", (1, 4)), ("b", (1, 4))], [("y", (1, 4))])
    dynamic = build_onnx(models / "dynamic.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                         [("x", (1, "width"))], [("y", (1, "width"))])
    (tmp / "mismatch.vnnlib").write_text(_spec_text(5, 10))
    (tmp / "empty_region.vnnlib").write_text(_spec_text(64, 10, {7: (0.6, 0.4)}))
    (tmp / "malformed.vnnlib").write_text(_spec_text(64, 10).replace("(assert (>= Y_1 Y_0))", "(assert (>= Y_1 Y_0)"))
    return {
        "missing_model": Case(models / "absent.onnx", GOOD_SPEC, 3, ("not found",)),
        "missing_spec": Case(GOOD_MODEL, tmp / "absent.vnnlib", 3, ("absent.vnnlib",)),
        "empty_model": Case(models / "empty.onnx", GOOD_SPEC, 3, ("empty",)),
        "empty_spec": Case(GOOD_MODEL, tmp / "empty.vnnlib", 3, ("empty",)),
        "truncated_onnx": Case(models / "truncated.onnx", GOOD_SPEC, 3, ("truncated.onnx",)),
        "text_file_as_onnx": Case(models / "text.onnx", GOOD_SPEC, 3, ("text.onnx",)),
        "unsupported_erf": Case(_single_op(models / "erf.onnx", "Erf"), GOOD_SPEC, 4,
                                ("Erf", "my_erf_node", "supported ops", "Relu", "Gemm")),
        "unsupported_einsum": Case(_single_op(models / "einsum.onnx", "Einsum", equation="ij->ij"), GOOD_SPEC, 4,
                                   ("Einsum", "my_einsum_node", "supported ops")),
        "external_data_parent": Case(_external_data_model(models / "ext_parent.onnx", "../w.bin", tmp / "w.bin"),
                                     GOOD_SPEC, 3, ("../w.bin", "outside")),
        "external_data_absolute": Case(_external_data_model(models / "ext_abs.onnx", str(tmp / "abs.bin"),
                                                            tmp / "abs.bin"), GOOD_SPEC, 3, ("abs.bin", "outside")),
        "nan_weights": Case(_gemm_model(models / "nan.onnx", nan_w), GOOD_SPEC, 3, ("NaN",)),
        "inf_weights": Case(_gemm_model(models / "inf.onnx", inf_w), GOOD_SPEC, 3, ("Inf",)),
        "two_graph_inputs": Case(two_inputs, GOOD_SPEC, 4, ("input",)),
        "dynamic_non_batch_dim": Case(dynamic, GOOD_SPEC, 4, ("width", "dynamic")),
        "variable_count_mismatch": Case(GOOD_MODEL, tmp / "mismatch.vnnlib", 3, ("5 inputs", "64")),
        "empty_input_region": Case(GOOD_MODEL, tmp / "empty_region.vnnlib", 3, ("X_7", "empty")),
        "malformed_vnnlib": Case(GOOD_MODEL, tmp / "malformed.vnnlib", 3, ("parenthes", "line")),
    }


def verifier_command() -> list[str]:
    exe = Path(sys.executable).with_name("verifier")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "verifier.cli"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    return build_cases(tmp_path_factory.mktemp("bad_input"))


SUBPROCESS_CASES = ["missing_model", "unsupported_erf", "external_data_parent", "malformed_vnnlib",
                    "dynamic_non_batch_dim"]


@pytest.fixture(scope="module")
def cli_runs(cases: dict[str, Case]) -> dict[str, subprocess.CompletedProcess]:
    """``verifier verify MODEL SPEC`` as a real process for a few cases, three at a time."""
    def run(name: str) -> subprocess.CompletedProcess:
        c = cases[name]
        return subprocess.run([*verifier_command(), "verify", str(c.model), str(c.spec), "--timeout", "20", "--quiet"],
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(SUBPROCESS_CASES, pool.map(run, SUBPROCESS_CASES)))


CASE_NAMES = [
    "missing_model", "missing_spec", "empty_model", "empty_spec", "truncated_onnx", "text_file_as_onnx",
    "unsupported_erf", "unsupported_einsum", "external_data_parent", "external_data_absolute", "nan_weights",
    "inf_weights", "two_graph_inputs", "dynamic_non_batch_dim", "variable_count_mismatch", "empty_input_region",
    "malformed_vnnlib"]


def test_case_list_is_complete(cases: dict[str, Case]) -> None:
    assert sorted(cases) == sorted(CASE_NAMES)
    assert set(SUBPROCESS_CASES) <= set(CASE_NAMES)


def _check_report(case: Case, returncode: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert returncode == case.exit_code, f"exit {returncode} != {case.exit_code}: {lines[0]}"
    kind = "unsupported" if case.exit_code == 4 else "input error"
    assert lines[0].startswith(f"verifier: {kind}: "), lines[0]
    for word in case.words:
        assert word.lower() in lines[0].lower(), f"'{word}' missing from: {lines[0]}"
    assert stdout.strip() == "", f"no verdict may be printed: {stdout!r}"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_cli_reports_one_classified_line(name: str, cases: dict[str, Case], capsys) -> None:
    """``verifier.cli.main`` in this process (the command's own code path)."""
    from verifier.cli import main

    case = cases[name]
    code = main(["verify", str(case.model), str(case.spec), "--timeout", "20", "--quiet"])
    out = capsys.readouterr()
    _check_report(case, code, out.out, out.err)


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_cli_process_reports_one_classified_line(name: str, cases: dict[str, Case], cli_runs) -> None:
    """The installed command as a separate process: exit status and stderr as a user sees them."""
    run = cli_runs[name]
    _check_report(cases[name], run.returncode, run.stdout, run.stderr)


def _api_call(case: Case) -> None:
    model = api.load_model(case.model)
    api.load_property(case.spec, model)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_api_raises_the_classified_error(name: str, cases: dict[str, Case]) -> None:
    case = cases[name]
    expected = UnsupportedError if case.exit_code == 4 else InputError
    with pytest.raises(VerifierError) as info:
        _api_call(case)
    err = info.value
    assert type(err) is expected, f"{type(err).__name__} raised, {expected.__name__} expected: {err}"
    assert err.exit_code == case.exit_code
    message = str(err)
    assert "\n" not in message and message == err.one_line()
    for word in case.words:
        assert word.lower() in message.lower(), f"'{word}' missing from: {message}"
    bad_file = case.model if case.spec == GOOD_SPEC else case.spec
    assert str(bad_file) in message, f"the message must name the file {bad_file}: {message}"


def test_api_verify_refuses_a_property_of_another_size(cases: dict[str, Case]) -> None:
    model = api.load_model(GOOD_MODEL)
    prop = api.load_property(cases["variable_count_mismatch"].spec)   # parsed without the model
    with pytest.raises(InputError, match="5 inputs"):
        api.verify(model, prop, timeout=5)


def test_api_compute_bounds_refuses_an_empty_box() -> None:
    import torch

    model = api.load_model(GOOD_MODEL)
    lower = torch.zeros(1, 64)
    upper = torch.ones(1, 64)
    upper[0, 3] = -0.5
    with pytest.raises(InputError, match="lower bound exceeds"):
        api.compute_bounds(model, lower, upper, method="crown")
