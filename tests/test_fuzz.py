"""Fuzzing: malformed models and properties end in a verdict or a classified error.

Every case must end in a verdict or a :class:`~verifier.errors.VerifierError` that is not an
internal error: never another exception, never a hang (``verify`` gets 2 s and must stay
within 2 s + 2 s of CPU time; a watchdog aborts anything still running after a minute), and
never a wrong verdict: a ``sat`` witness is re-run with onnxruntime and must violate the
property, an ``unsat`` property must have no violation among dense samples of its boxes.
Properties generated as formula trees are judged by an exact evaluator of their own
(``fuzz/oracle.py``); mutated texts by the parse they got.

Sources of cases: the committed corpus (``fuzz/corpus``, rebuilt by ``fuzz/make_corpus.py``)
and hypothesis strategies over the mutations of ``fuzz/mutate.py``. The default run keeps
hypothesis small and derandomized; ``-m slow`` runs a longer, random exploration.
"""
from __future__ import annotations

import collections
import csv
import os
import random
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import MODELS_DIR, SPECS_DIR, ort_forward
from fuzz import cli_cases, mutate, mutate_vnnlib, oracle
from fuzz.harness import Outcome, check_verdict, parsed_boxes, parsed_holds, run_case, watchdog
from verifier.cli import main

CORPUS = Path(__file__).resolve().parent / "fuzz" / "corpus"
ROOT = Path(__file__).resolve().parents[1]
DIGITS = MODELS_DIR / "digits_mlp.onnx"
DIGITS_SPEC = SPECS_DIR / "digits_mlp_eps0.01_idx0.vnnlib"
FAST = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOWER = settings(FAST, max_examples=50)   # cases that run verify to its time limit more often
LONG = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _corpus_rows() -> list[dict]:
    with open(CORPUS / "MANIFEST.csv", newline="") as f:
        return list(csv.DictReader(f))


def _corpus_path(name: str) -> Path:
    return ROOT / name[1:] if name.startswith("@") else CORPUS / name


def _one_line_error(code: int, err: str, out: str) -> str:
    """The single stderr line of a failed command (checked: no traceback, no verdict)."""
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    kind = {3: "input error", 4: "unsupported"}[code]
    assert lines[0].startswith(f"verifier: {kind}: "), lines[0]
    return lines[0]


# ---- the committed corpus ----------------------------------------------------------------
def test_corpus_is_small_and_complete() -> None:
    rows = _corpus_rows()
    files = {p for p in CORPUS.rglob("*") if p.is_file()}
    named = {_corpus_path(r[k]) for r in rows for k in ("model", "property")}
    assert sum(p.stat().st_size for p in files) < 1_000_000
    assert {p for p in files if p.parent.name in ("models", "properties")} <= named
    assert all(p.exists() for p in named)
    assert (CORPUS / "base.vnnlib").read_text() == mutate.base_property()


@pytest.mark.parametrize("row", _corpus_rows(),
                         ids=lambda r: Path(r["property"] if r["model"] == "tiny.onnx" else r["model"]).stem)
def test_corpus_entry(row: dict, tmp_path: Path, capsys) -> None:
    """``verifier verify`` on each corpus pair: the expected classified error, or a verdict
    whose VNN-COMP result file holds a witness that onnxruntime confirms."""
    model, spec = _corpus_path(row["model"]), _corpus_path(row["property"])
    result_file = tmp_path / "result.txt"
    with watchdog():
        code = main(["verify", str(model), str(spec), "--timeout", "2", "--quiet", "--result-file", str(result_file)])
    out = capsys.readouterr()
    allowed = {0, 3, 4} if row["expect"] == "any" else {int(c) for c in row["expect"].split("|")}
    assert code in allowed, f"exit {code}, expected {row['expect']}: {out.err}"
    if code:
        _one_line_error(code, out.err, out.out)
        return
    verdict = result_file.read_text().splitlines()[0]
    assert out.out.strip() == verdict
    if verdict == "sat":
        _check_result_file(model, spec, result_file)
    if verdict == "unsat":
        from verifier import api

        prop = api.load_property(spec)
        check_verdict(Outcome(verdict="unsat"), model, parsed_holds(prop), parsed_boxes(prop))


def _check_result_file(model: Path, spec: Path, result_file: Path) -> None:
    """The witness of a VNN-COMP result file: Y as onnxruntime computes it on X, and X, Y in
    the property (our parse of it)."""
    from verifier import api

    text = result_file.read_text()
    xs = [float(v) for v in re.findall(r"\(X_\d+ ([^)\s]+)\)", text)]
    ys = [float(v) for v in re.findall(r"\(Y_\d+ ([^)\s]+)\)", text)]
    y_ort = ort_forward(model, np.array([xs], np.float32))[0]
    np.testing.assert_array_equal(np.float32(ys), np.float32(y_ort))
    prop = api.load_property(spec)
    assert parsed_holds(prop)(np.array(xs), y_ort) is True


# ---- mutated models ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A folder for mutated models, with a file outside it and a symlink escaping it."""
    top = tmp_path_factory.mktemp("fuzz_models")
    (top / "outside.bin").write_bytes(np.zeros(64, np.float32).tobytes())
    inner = top / "models"
    inner.mkdir()
    os.symlink(top / "outside.bin", inner / "link_out.bin")
    (inner / "missing.bin").write_bytes(b"\0" * 8)   # too short for any weight
    return inner


def _judge_model(path: Path, n_inputs: int = mutate.N_IN, n_outputs: int = mutate.N_OUT) -> None:
    """Verify the base property on a (mutated) model and judge the outcome exactly."""
    prop = oracle.box_property(n_inputs, n_outputs)
    spec = path.with_suffix(".vnnlib")
    spec.write_text(prop.text())
    out = run_case(path, spec)
    if out.verdict is not None:
        check_verdict(out, path, prop.holds, prop.boxes)


BASES = {"mlp": mutate.mlp_model, "conv": mutate.conv_model}
mutation_names = st.lists(st.sampled_from(sorted(mutate.MODEL_MUTATIONS)), min_size=1, max_size=3)


@FAST
@given(base=st.sampled_from(sorted(BASES)), names=mutation_names, rng=st.randoms(use_true_random=True))
def test_structurally_mutated_models(model_dir: Path, base: str, names: list[str], rng: random.Random) -> None:
    model, _notes = mutate.apply(BASES[base](), names, rng)
    path = model_dir / "mutated.onnx"
    path.write_bytes(model.SerializeToString())
    _judge_model(path)


@FAST
@given(base=st.sampled_from(["mlp", "conv", "digits"]), kind=st.sampled_from(sorted(mutate.BYTE_MUTATIONS)),
       rng=st.randoms(use_true_random=True))
def test_byte_mutated_models(model_dir: Path, base: str, kind: str, rng: random.Random) -> None:
    data = DIGITS.read_bytes() if base == "digits" else BASES[base]().SerializeToString()
    data, _note = mutate.BYTE_MUTATIONS[kind](data, rng)
    path = model_dir / "bytes.onnx"
    path.write_bytes(data)
    if base != "digits":
        _judge_model(path)
        return
    out = run_case(path, DIGITS_SPEC)
    if out.verdict is not None:
        check_verdict(out, path, parsed_holds(out.prop), parsed_boxes(out.prop))


# ---- mutated and random properties ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz_tiny") / "tiny.onnx"
    path.write_bytes(mutate.mlp_model(1).SerializeToString())
    return path


text_mutations = st.lists(st.sampled_from(sorted(mutate_vnnlib.PROPERTY_MUTATIONS)), min_size=1, max_size=3)


@FAST
@given(on_digits=st.booleans(), names=text_mutations, rng=st.randoms(use_true_random=True))
def test_mutated_property_texts(tiny_model: Path, tmp_path_factory, on_digits: bool, names: list[str],
                                rng: random.Random) -> None:
    model = DIGITS if on_digits else tiny_model
    text = DIGITS_SPEC.read_text() if on_digits else mutate.base_property()
    for name in names:
        text, _note = mutate_vnnlib.PROPERTY_MUTATIONS[name](text, rng)
    spec = tmp_path_factory.mktemp("prop") / "mutated.vnnlib"
    spec.write_bytes(text.encode("utf-8", "surrogatepass"))
    out = run_case(model, spec)
    if out.verdict is not None:
        check_verdict(out, model, parsed_holds(out.prop), parsed_boxes(out.prop))


@SLOWER
@given(on_digits=st.booleans(), rng=st.randoms(use_true_random=True))
def test_random_property_verdicts(tiny_model: Path, tmp_path_factory, on_digits: bool, rng: random.Random) -> None:
    """Random formula trees (several regions, nested and/or, eps up to 1e30): the verdict is
    judged by the exact evaluator, and our parse agrees with it on every sampled point."""
    if on_digits:
        with np.load(MODELS_DIR / "digits_test.npz", allow_pickle=False) as data:
            centre = data["x"][rng.randrange(20)].astype(np.float64)
        model, prop = DIGITS, oracle.random_property(rng, 64, 10, centre, rng.choice([(0.0, 1.0), None]))
    else:
        centre = np.array([rng.uniform(-1, 1) for _ in range(mutate.N_IN)])
        model, prop = tiny_model, oracle.random_property(rng, mutate.N_IN, mutate.N_OUT, centre)
    spec = tmp_path_factory.mktemp("prop") / "random.vnnlib"
    spec.write_text(prop.text())
    out = run_case(model, spec)
    assert out.error is None, f"a well-formed property was refused: {out.error}"
    check_verdict(out, model, prop.holds, prop.boxes)
    points = oracle.sample_points(prop, 100, seed=rng.randrange(1 << 30))
    ours = parsed_holds(out.prop)
    for x, y in zip(points, ort_forward(model, points)):
        exact = prop.holds(x, y) if np.all(np.isfinite(y)) else None
        assert exact is None or ours(x, y) == exact, f"parse disagrees with the formula at x={x}"


@pytest.mark.slow
@LONG
@given(base=st.sampled_from(sorted(BASES)), names=mutation_names, rng=st.randoms(use_true_random=True))
def test_structurally_mutated_models_long(model_dir: Path, base: str, names: list[str], rng: random.Random) -> None:
    test_structurally_mutated_models.hypothesis.inner_test(model_dir, base, names, rng)


@pytest.mark.slow
@LONG
@given(on_digits=st.booleans(), names=text_mutations, rng=st.randoms(use_true_random=True))
def test_mutated_property_texts_long(tiny_model: Path, tmp_path_factory, on_digits: bool, names: list[str],
                                     rng: random.Random) -> None:
    test_mutated_property_texts.hypothesis.inner_test(tiny_model, tmp_path_factory, on_digits, names, rng)


@pytest.mark.slow
@LONG
@given(on_digits=st.booleans(), rng=st.randoms(use_true_random=True))
def test_random_property_verdicts_long(tiny_model: Path, tmp_path_factory, on_digits: bool,
                                       rng: random.Random) -> None:
    test_random_property_verdicts.hypothesis.inner_test(tiny_model, tmp_path_factory, on_digits, rng)


def test_thousands_of_disjuncts_keep_the_deadline(tiny_model: Path, tmp_path: Path) -> None:
    """Conjunctions of two-way ORs that expand to 8192 disjuncts (a case the random run found):
    the attack's sampling works in smaller chunks and stops at the deadline (it once used 15 s
    of a 2 s limit, nearly all of it allocating gigabytes), and the verdict is judged by the
    exact evaluator."""
    rng = random.Random(712602)
    text = mutate.base_property()
    for _ in range(3):
        text, _note = mutate_vnnlib.PROPERTY_MUTATIONS["wide_disjunction"](text, rng)
    spec = tmp_path / "wide.vnnlib"
    spec.write_text(text)
    out = run_case(tiny_model, spec)
    assert out.prop is not None and len(out.prop.cases[0].unsafe) == 8192
    # few points: the evaluator walks 8192 disjuncts per point in Python
    check_verdict(out, tiny_model, parsed_holds(out.prop), parsed_boxes(out.prop), samples=16)


def test_case_without_output_rows_is_bounded(tiny_model: Path) -> None:
    """A disjunct with no output rows (``Y_0 <= Y_0``: every output is unsafe) is bounded,
    never proven (it once crashed CROWN when the attack had not found a witness first)."""
    from verifier import api
    from verifier.config import BoundsConfig
    from verifier.engines.incomplete import bound_case

    text = "".join(f"(declare-const X_{i} Real)(assert (>= X_{i} 0))(assert (<= X_{i} 1))" for i in range(4))
    text += "".join(f"(declare-const Y_{j} Real)" for j in range(3)) + "(assert (<= Y_0 Y_0))"
    from verifier.spec.vnnlib import parse_vnnlib_text

    graph = api.load_model(tiny_model)
    case = parse_vnnlib_text(text, "t", 4, 3).cases[0]
    assert case.unsafe[0].C.shape == (0, 3)   # the unsafe set is everything
    stages = bound_case(graph, case, "crown", BoundsConfig(), 1e-6, float("inf"))
    assert not stages[-1].proven


@pytest.mark.slow
def test_verify_honours_its_deadline_on_a_resnet() -> None:
    """A 1 s limit on a CIFAR ResNet (one CROWN pass there once ran about 10 s past it)."""
    from conftest import benchmark_path

    family = benchmark_path("cifar10_resnet_2021")
    run_case(family / "onnx" / "resnet_4b.onnx",
             family / "vnnlib_properties_pgd_filtered" / "resnet4b_pgd_filtered" / "prop_2_eps_0.004.vnnlib",
             timeout=1.0)


def test_model_file_replaced_after_loading_is_classified(tmp_path: Path) -> None:
    """onnxruntime refusing the model file (here replaced after loading) is a classified error."""
    from verifier import api
    from verifier.errors import VerifierError

    path, spec = tmp_path / "m.onnx", tmp_path / "p.vnnlib"
    path.write_bytes(mutate.mlp_model().SerializeToString())
    spec.write_text(mutate.base_property())
    graph = api.load_model(path)
    prop = api.load_property(spec, graph)
    path.write_bytes(b"replaced by something else")
    with pytest.raises(VerifierError):
        api.verify(graph, prop, timeout=2)


# ---- every command: bad input gives one classified line ----------------------------------
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    return cli_cases.make_files(tmp_path_factory.mktemp("cli_bad"))


CLI_CASES = sorted(cli_cases.cases(collections.defaultdict(str)))


def _command(case_name: str) -> str:
    return max((c for c in cli_cases.COMMANDS if case_name.startswith(c.replace("-", "_") + "_")), key=len)


def test_every_command_has_bad_input_cases() -> None:
    from verifier.cli import build_parser

    registered = set(build_parser()._subparsers._group_actions[0].choices)
    assert {_command(n) for n in CLI_CASES} == registered == set(cli_cases.COMMANDS)


@pytest.mark.parametrize("name", CLI_CASES)
def test_bad_input_gives_one_classified_line(name: str, bad_files: dict[str, str], tmp_path: Path, capsys,
                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)   # default result files land here
    case = cli_cases.cases(bad_files)[name]
    with watchdog():
        code = main([*case.argv])
    out = capsys.readouterr()
    assert code == case.code, f"exit {code}, expected {case.code}: {out.err}"
    line = _one_line_error(code, out.err, "")
    for word in case.words:
        assert word.lower() in line.lower(), f"'{word}' missing from: {line}"


PROCESS_CASES = ["bench_not_utf8", "certify_pickled_data", "check_other_schema", "reach_bad_objective"]


@pytest.fixture(scope="module")
def process_runs(bad_files: dict[str, str], tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """A few cases as real ``verifier`` processes, two at a time."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    exe = Path(sys.executable).with_name("verifier")
    command = [str(exe)] if exe.is_file() else [sys.executable, "-m", "verifier.cli"]
    cwd = tmp_path_factory.mktemp("processes")

    def run(name: str) -> subprocess.CompletedProcess:
        argv = cli_cases.cases(bad_files)[name].argv
        return subprocess.run([*command, *argv], cwd=cwd, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(PROCESS_CASES, pool.map(run, PROCESS_CASES)))


@pytest.mark.parametrize("name", PROCESS_CASES)
def test_bad_input_as_a_process(name: str, bad_files: dict[str, str], process_runs) -> None:
    """The exit status and stderr a user sees from the installed command."""
    case, run = cli_cases.cases(bad_files)[name], process_runs[name]
    assert run.returncode == case.code, run.stderr
    _one_line_error(run.returncode, run.stderr, "")


def test_debug_shows_the_traceback(bad_files: dict[str, str], capsys) -> None:
    code = main(["--debug", "info", bad_files["junk.onnx"]])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" in err and err.strip().splitlines()[-1].startswith("verifier: input error: ")


def test_bench_turns_a_broken_instance_into_an_error_row(tmp_path: Path, capsys) -> None:
    (tmp_path / "instances.csv").write_text("missing.onnx,x.vnnlib,5\n")
    assert main(["bench", str(tmp_path), "--results", str(tmp_path / "r.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "r.csv", newline="")))
    assert [r["verdict"] for r in rows] == ["error"] and rows[0]["reason"].startswith("input error:")


DAMAGE = {"model_not_an_object": (("model",), True),
          "summary_number_is_text": (("property", "summary", "cases", 0, "width_mean"), "x")}


@pytest.mark.parametrize("command, damage", [
    ("check", "model_not_an_object"), ("report", "model_not_an_object"),
    ("report", "summary_number_is_text")])
def test_damaged_report_structure_is_an_input_error(tmp_path: Path, command: str, damage: str, capsys) -> None:
    import json

    report = tmp_path / "r.json"
    assert main(["verify", str(DIGITS), str(DIGITS_SPEC), "--quiet", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    keys, value = DAMAGE[damage]
    target = data
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    report.write_text(json.dumps(data))
    capsys.readouterr()
    argv = [command, str(report)] + (["--md", str(tmp_path / "r.md")] if command == "report" else [])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3, err
    _one_line_error(code, err, "")
