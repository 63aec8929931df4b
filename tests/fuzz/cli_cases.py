"""Bad input for every sub-command of ``verifier``: the files, the command line, and the exit
code and words the one-line message must have (3 input error, 4 unsupported)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import MODELS_DIR, SPECS_DIR

MODEL = str(MODELS_DIR / "digits_mlp.onnx")
SMOOTH = str(MODELS_DIR / "digits_smooth.onnx")
SPEC = str(SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib")
DATA = str(MODELS_DIR / "digits_test.npz")


@dataclass(frozen=True)
class CliCase:
    """``argv`` (after ``verifier``) must end with ``code`` and one stderr line holding ``words``."""

    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...] = ()


def make_files(tmp: Path) -> dict[str, str]:
    """Bad files in ``tmp``; returns name → path."""
    f = {}

    def put(name: str, data: bytes | str) -> None:
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = str(p)

    put("junk.onnx", b"\x08\x07junk\xff\x00" * 40)
    put("junk.vnnlib", b"\xff\xfe(assert\x00")
    put("junk.json", b"\xff{not json")
    put("list.json", "[1, 2, 3]")
    put("other_schema.json", json.dumps({"schema": "someone.else/2"}))
    put("erf.onnx", (Path(__file__).parent / "corpus" / "models" / "unsupported_erf.onnx").read_bytes())
    put("no_instances/readme.txt", "no instances.csv here")
    put("bad_timeout/instances.csv", "a.onnx,b.vnnlib,soon\n")
    put("short_row/instances.csv", "a.onnx\n")
    put("latin1/instances.csv", b"\xe9t\xe9.onnx,b.vnnlib,5\n")
    put("no_columns.csv", "model,property,verdict\nm,p,sat\n")
    put("foreign_results.csv", "index,label\n1,2\n")
    put("x_wrong_shape.npz", _npz(x=np.zeros((3, 5), np.float32), y=np.zeros(3, np.int64)))
    put("no_y.npz", _npz(x=np.zeros((3, 64), np.float32)))
    put("nan_x.npz", _npz(x=np.full((2, 64), np.nan, np.float32), y=np.zeros(2, np.int64)))
    put("object_arrays.npz", _npz(x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, np.int64)))
    put("object_input.npy", _npy(np.array([{"a": 1}], dtype=object)))
    (tmp / "a_folder").mkdir(exist_ok=True)
    f["a_folder"] = str(tmp / "a_folder")
    f["absent"] = str(tmp / "absent.file")
    return f


def _npz(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def cases(f: dict[str, str]) -> dict[str, CliCase]:
    """Case name (``<command>_<what>``) → :class:`CliCase`, at least one per sub-command;
    ``f`` maps the names of :func:`make_files` to paths."""
    return {**_model_cases(f), **_file_cases(f)}


def _model_cases(F: dict[str, str]) -> dict[str, CliCase]:
    """verify, bounds, info, reach, bounds-bench."""
    return {
        "verify_junk_model": CliCase(("verify", F["junk.onnx"], SPEC), 3, ("junk.onnx", "not an ONNX model")),
        "verify_junk_spec": CliCase(("verify", MODEL, F["junk.vnnlib"]), 3, ("junk.vnnlib", "UTF-8")),
        "verify_unsupported_op": CliCase(("verify", F["erf.onnx"], SPEC), 4, ("Erf",)),
        "verify_unknown_device": CliCase(("verify", MODEL, SPEC, "--device", "tpu9"), 3, ("tpu9",)),
        "bounds_junk_model": CliCase(("bounds", F["junk.onnx"], SPEC), 3, ("junk.onnx",)),
        "bounds_missing_spec": CliCase(("bounds", MODEL, F["absent"]), 3, ("absent.file",)),
        "bounds_unknown_device": CliCase(("bounds", MODEL, SPEC, "--device", "tpu9"), 3, ("tpu9",)),
        "info_missing": CliCase(("info", F["absent"]), 3, ("absent.file", "not found")),
        "info_folder": CliCase(("info", F["a_folder"]), 3, ("a_folder",)),
        "info_unsupported_op": CliCase(("info", F["erf.onnx"]), 4, ("Erf",)),
        "reach_junk_model": CliCase(("reach", F["junk.onnx"], "--region", SPEC), 3, ("junk.onnx",)),
        "reach_junk_region": CliCase(("reach", MODEL, "--region", F["junk.vnnlib"]), 3, ("junk.vnnlib",)),
        "reach_bad_objective": CliCase(("reach", MODEL, "--region", SPEC, "--objective", "Y_0 ** 2"), 3,
                                       ("objective",)),
        "reach_output_out_of_range": CliCase(("reach", MODEL, "--region", SPEC, "--objective", "Y_99"), 3,
                                             ("Y_99",)),
        "reach_nan_timeout": CliCase(("reach", MODEL, "--region", SPEC, "--timeout", "nan"), 3, ("--timeout",)),
        "reach_unsupported_op": CliCase(("reach", F["erf.onnx"], "--region", SPEC), 4, ("Erf",)),
        "bounds_bench_no_folder": CliCase(("bounds-bench", "--benchmarks", F["absent"]), 3, ("absent.file",)),
    }


def _file_cases(F: dict[str, str]) -> dict[str, CliCase]:
    """bench, certify, check, report."""
    return {
        "bench_no_instances": CliCase(("bench", str(Path(F["no_instances/readme.txt"]).parent)), 3,
                                      ("instances.csv",)),
        "bench_bad_timeout": CliCase(("bench", str(Path(F["bad_timeout/instances.csv"]).parent)), 3,
                                     ("soon", "line 1")),
        "bench_short_row": CliCase(("bench", str(Path(F["short_row/instances.csv"]).parent)), 3, ("line 1",)),
        "bench_not_utf8": CliCase(("bench", str(Path(F["latin1/instances.csv"]).parent)), 3, ("UTF-8",)),
        "bench_missing_reference": CliCase(("bench", str(SPECS_DIR), "--reference", F["absent"], "--limit", "0"),
                                           3, ("absent.file",)),
        "bench_reference_columns": CliCase(("bench", str(SPECS_DIR), "--reference", F["no_columns.csv"],
                                            "--limit", "0"), 3, ("onnx", "vnnlib")),
        "bench_results_is_folder": CliCase(("bench", str(SPECS_DIR), "--results", F["a_folder"], "--limit", "0"),
                                           3, ("a_folder",)),
        "bench_resume_foreign_file": CliCase(("bench", str(SPECS_DIR), "--results", F["foreign_results.csv"],
                                              "--resume", "--limit", "0"), 3, ("foreign_results.csv",)),
        "bench_negative_limit": CliCase(("bench", str(SPECS_DIR), "--limit", "-2"), 3, ("--limit",)),
        "bench_nan_timeout": CliCase(("bench", str(SPECS_DIR), "--timeout", "nan"), 3, ("--timeout",)),
        "certify_junk_model": CliCase(("certify", F["junk.onnx"], "--data", DATA, "--sigma", "0.25"), 3,
                                      ("junk.onnx",)),
        "certify_junk_data": CliCase(("certify", SMOOTH, "--data", F["junk.json"], "--sigma", "0.25"), 3,
                                     ("junk.json",)),
        "certify_pickled_data": CliCase(("certify", SMOOTH, "--data", F["object_arrays.npz"], "--sigma", "0.25"),
                                        3, ("object_arrays.npz",)),
        "certify_pickled_input": CliCase(("certify", SMOOTH, "--input", F["object_input.npy"], "--sigma", "0.25"),
                                         3, ("object_input.npy",)),
        "certify_wrong_shape": CliCase(("certify", SMOOTH, "--data", F["x_wrong_shape.npz"], "--sigma", "0.25"),
                                       3, ("shape",)),
        "certify_missing_y": CliCase(("certify", SMOOTH, "--data", F["no_y.npz"], "--sigma", "0.25"), 3, ("'y'",)),
        "certify_nan_x": CliCase(("certify", SMOOTH, "--data", F["nan_x.npz"], "--sigma", "0.25"), 3, ("finite",)),
        "certify_negative_sigma": CliCase(("certify", SMOOTH, "--data", DATA, "--sigma", "-1"), 3, ("sigma",)),
        "certify_no_data": CliCase(("certify", SMOOTH, "--sigma", "0.25"), 3, ("--data", "--input")),
        "certify_results_is_folder": CliCase(("certify", SMOOTH, "--data", DATA, "--sigma", "0.25", "--n", "10",
                                              "--limit", "1", "--results", F["a_folder"]), 3, ("a_folder",)),
        "check_missing": CliCase(("check", F["absent"]), 3, ("absent.file",)),
        "check_not_json": CliCase(("check", F["junk.json"]), 3, ("junk.json", "JSON")),
        "check_json_list": CliCase(("check", F["list.json"]), 3, ("list.json",)),
        "check_other_schema": CliCase(("check", F["other_schema.json"]), 3, ("schema",)),
        "report_no_output": CliCase(("report", F["list.json"]), 3, ("--html",)),
        "report_not_json": CliCase(("report", F["junk.json"], "--md", F["absent"]), 3, ("junk.json",)),
        "report_other_schema": CliCase(("report", F["other_schema.json"], "--html", F["absent"]), 3, ("schema",)),
    }


COMMANDS = ("verify", "bounds", "info", "bench", "certify", "check", "report", "reach", "bounds-bench")
