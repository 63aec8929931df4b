"""Tests for the VNN-LIB parser and the robustness property builder.

The parser is checked against an independent oracle: a small recursive S-expression reader
and evaluator, defined here, that decides a VNN-LIB formula directly on concrete ``(x, y)``.
"""
from __future__ import annotations

import math
import re
import time
import timeit
from pathlib import Path

import numpy as np
import pytest

from verifier.errors import InputError, UnsupportedError
from verifier.spec.robustness import robustness_property
from verifier.spec.vnnlib import parse_vnnlib, parse_vnnlib_text

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")



class Ambiguous(Exception):
    """A non-trivial comparison too close to call under different float rounding."""


def read_sexprs(text: str) -> list:
    """All top-level S-expressions of ``text`` (``;`` comments removed), as nested lists."""
    stack: list[list] = [[]]
    for tok in re.findall(r"[()]|[^\s()]+", re.sub(r";[^\n]*", "", text)):
        if tok == "(":
            stack.append([])
        elif tok == ")":
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(tok)
    assert len(stack) == 1, "unbalanced test input"
    return stack[0]


def term_value(expr, env: dict) -> float:
    """The value of an arithmetic term."""
    if isinstance(expr, str):
        return env[expr] if expr in env else float(expr)
    op, *args = expr
    vals = [term_value(a, env) for a in args]
    if op == "-":
        return -vals[0] if len(vals) == 1 else vals[0] - sum(vals[1:])
    return {"+": sum, "*": math.prod}[op](vals)


def holds(expr, env: dict) -> bool:
    """The truth of a formula; every atom is evaluated so that ties are always detected."""
    op, *args = expr
    if op in ("and", "or"):
        vals = [holds(a, env) for a in args]
        return all(vals) if op == "and" else any(vals)
    a, b = (term_value(t, env) for t in args)
    simple = all(isinstance(t, str) for t in args)
    if not simple and abs(a - b) <= 1e-9 * (1.0 + abs(a) + abs(b)):
        raise Ambiguous
    return {"<=": a <= b, ">=": a >= b, "=": a == b}[op]


def oracle(forms: list, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether ``(x, y)`` satisfies the conjunction of all asserts."""
    env = {f"X_{i}": float(v) for i, v in enumerate(x)}
    env.update({f"Y_{j}": float(v) for j, v in enumerate(y)})
    return all([holds(f[1], env) for f in forms if f[0] == "assert"])


def sample_point(prop, consts: list[float], rng: np.random.Generator):
    """A point near the interesting boundaries of ``prop`` (inside boxes, near constants)."""
    n_in, n_out = prop.n_inputs, prop.n_outputs
    if prop.cases and rng.random() < 0.85:
        region = prop.cases[rng.integers(len(prop.cases))].region
        x = rng.uniform(region.lower, region.upper)
        snap = rng.random(n_in) < 0.1
        x[snap] = np.where(rng.random(snap.sum()) < 0.5, region.lower[snap], region.upper[snap])
        if rng.random() < 0.2:
            i = rng.integers(n_in)
            x[i] += rng.choice([-1.0, 1.0]) * 1e-3 * (1.0 + abs(x[i]))
    else:
        x = rng.normal(0.0, 1.0, n_in)
    scale = max([1.0] + [abs(c) for c in consts])
    y = rng.normal(0.0, 1.0, n_out)
    for j in range(n_out):
        r = rng.random()
        if r < 0.3 and consts:
            y[j] = rng.choice(consts) + rng.choice([0.0, 1e-3, -1e-3, 0.1, -0.1])
        elif r < 0.5:
            y[j] = y[rng.integers(n_out)] + rng.choice([0.0, 1e-3, -1e-3])
    if rng.random() < 0.4:
        y[rng.integers(n_out)] += rng.choice([-5.0, 5.0]) * scale
    return x, y


def check_against_oracle(text: str, prop, n_points: int, seed: int = 0) -> tuple[int, int]:
    """Compare ``prop.violated_by`` with the oracle; return (#true, #false) compared."""
    forms = read_sexprs(text)
    consts = sorted({float(t) for t in re.findall(r"[^\s();]+", re.sub(r";[^\n]*", "", text))
                     if NUMBER.match(t)})
    rng = np.random.default_rng(seed)
    counts = [0, 0]
    for _ in range(n_points):
        x, y = sample_point(prop, consts, rng)
        try:
            expected = oracle(forms, x, y)
        except Ambiguous:
            continue
        got = prop.violated_by(x, y) is not None
        assert got == expected, f"x={x.tolist()} y={y.tolist()}: parser {got}, oracle {expected}"
        counts[expected] += 1
    return counts[1], counts[0]


HEADER = "".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + "".join(
    f"(declare-const Y_{j} Real)\n" for j in range(4))
BOX = "".join(f"(assert (<= X_{i} 1.0))\n(assert (>= X_{i} -1.0))\n" for i in range(3))

HAND_WRITTEN = {
    "nested_and_or": BOX + """
(assert (or (and (<= Y_0 Y_1) (or (>= Y_2 0.5) (and (<= Y_3 -0.25) (>= Y_3 -1.5))))
            (and (>= (- Y_0 Y_2) 1e-3) (<= Y_1 1.5E+2))))""",
    "equality_and_unary_minus": BOX + """
(assert (or (= Y_0 Y_1) (and (= Y_2 0.5) (<= (- Y_3) -.5)) (>= (- Y_0) (+ Y_1 Y_2 -0.1))))""",
    "products_both_orders": BOX + """
(assert (or (<= (* 2 Y_0) (* Y_1 -3.0)) (>= (* Y_2 0.5) (+ (* -1 Y_3) 1e-1))
            (<= (- Y_0 Y_1 Y_2) (* 2 (- Y_3 0.25)))))""",
    "input_disjuncts_and_comments": """
; a comment (with parentheses) ((
(assert (or (and (<= X_0 0.5) (>= X_0 -0.5) (<= Y_0 Y_1)) ; trailing comment
            (and (>= X_0 0.25) (<= X_0 1) (>= Y_2 -1e-3))
            (and (<= 0.25 X_0) (>= 1 X_0) (<= Y_3 Y_0))))
(assert (<= X_1 1)) (assert (>= X_1 -1)) (assert (<= -1 X_2)) (assert (>= 1 X_2))
""",
    "multiple_asserts_with_or": """
(assert (and (<= X_0 1) (>= X_0 -1) (<= X_1 1) (>= X_1 -1)))
(assert (or (and (<= X_2 0) (>= X_2 -1)) (and (>= X_2 0) (<= X_2 1))))
(assert (or (<= Y_0 Y_1) (<= Y_2 Y_3)))
(assert (or (>= Y_0 -0.5) (<= Y_3 0.5)))
(assert (<= Y_1 2.5))
""",
    "repeated_and_looser_bounds": BOX + """
(assert (<= X_2 0.5))
(assert (<= X_2 0.75))
(assert (or (and (<= X_0 2) (>= X_0 -0.5) (<= Y_0 0.0))
            (and (<= X_1 0.5) (>= X_1 -3) (>= X_1 -0.25) (>= Y_1 0.0))))""",
    "constants_on_both_sides": BOX + """
(assert (or (<= (+ Y_0 1) (- Y_1 0.5)) (>= (+ 3 Y_2) (* 2 Y_3)) (<= 1 2) ))
(assert (<= (+ Y_0 Y_1 Y_2 Y_3) 4.0))""",
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_formulas_agree_with_oracle(name):
    text = HEADER + HAND_WRITTEN[name]
    prop = parse_vnnlib_text(text, source=f"{name}.vnnlib")
    assert (prop.n_inputs, prop.n_outputs) == (3, 4)
    n_true, n_false = check_against_oracle(text, prop, 1500)
    assert n_true >= 20 and n_false >= 20, (n_true, n_false)


def summary(prop) -> list:
    """Cases as plain lists: ``[(lower, upper, [(C, d), ...]), ...]``."""
    return [(c.region.lower.tolist(), c.region.upper.tolist(),
             [(u.C.tolist(), u.d.tolist()) for u in c.unsafe]) for c in prop.cases]


def test_disjuncts_grouped_by_box_in_first_seen_order():
    prop = parse_vnnlib_text(HEADER + HAND_WRITTEN["input_disjuncts_and_comments"])
    assert summary(prop) == [  # the 2nd and 3rd disjuncts share a box
        ([-0.5, -1, -1], [0.5, 1, 1], [([[1, -1, 0, 0]], [0])]),
        ([0.25, -1, -1], [1, 1, 1], [([[0, 0, -1, 0]], [1e-3]), ([[-1, 0, 0, 1]], [0])])]


def test_term_without_output_atoms_is_empty_conjunction():
    text = HEADER + BOX + "(assert (or (and (<= X_0 0) (>= X_0 -1)) (and (<= X_0 1) (<= Y_0 0))))"
    prop = parse_vnnlib_text(text)
    empty = prop.cases[0].unsafe[0]
    assert len(prop.cases) == 2 and empty.C.dtype == np.float64
    assert empty.C.shape == (0, 4) and empty.d.shape == (0,)
    assert prop.violated_by(np.array([-0.5, 0, 0]), np.array([9.0, 9, 9, 9])) is not None
    assert prop.violated_by(np.array([0.5, 0, 0]), np.array([9.0, 9, 9, 9])) is None


def test_deep_nesting_needs_no_recursion():
    depth = 20000
    formula = "(and " * depth + "(<= Y_0 1)" + ")" * depth
    term = "(+ " * depth + "Y_1" + " 1)" * depth
    prop = parse_vnnlib_text(HEADER + BOX + f"(assert {formula})\n(assert (<= {term} 0))")
    assert summary(prop)[0][2] == [([[1, 0, 0, 0], [0, 1, 0, 0]], [1, -depth])]


def test_input_bounds_outputs_and_constants():
    text = HEADER + """(assert (= X_0 0.5)) (assert (<= (- X_1) 1)) (assert (>= 2 X_1))
(assert (<= (+ X_2 1) 3)) (assert (>= (* -1 X_2) -4)) (assert (>= X_2 -.5))
(assert (<= X_2 1.5E+0)) (assert (or (<= 2 1) (and (>= Y_0 -0.5) (<= Y_1 .5e1))))"""
    assert summary(parse_vnnlib_text(text)) == [
        ([0.5, -1, -0.5], [0.5, 2, 1.5], [([[-1, 0, 0, 0], [0, 1, 0, 0]], [0.5, 5.0])])]


def test_crlf_line_endings_and_error_lines():
    text = (HEADER + BOX + "(assert (<= Y_0 Y_1))\n").replace("\n", "\r\n")
    assert summary(parse_vnnlib_text(text))[0][2] == [([[1, -1, 0, 0]], [0])]
    with pytest.raises(UnsupportedError, match="line 15, column 10"):
        parse_vnnlib_text(text + "(assert (< Y_0 1))", source="crlf.vnnlib")


def benchmark_files() -> list[Path]:
    """All .vnnlib files under ../shared/benchmarks, or skip the test."""
    files = sorted(BENCHMARKS.rglob("*.vnnlib")) if BENCHMARKS.is_dir() else []
    if not files:
        pytest.skip(f"../shared/benchmarks not found: no .vnnlib files under {BENCHMARKS}")
    return files


def declared_counts(text: str) -> tuple[int, int]:
    """Numbers of declared X and Y variables, checking they are X_0..X_{n-1}, Y_0..Y_{m-1}."""
    xs = [int(i) for i in re.findall(r"\(\s*declare-const\s+X_(\d+)\s+Real\s*\)", text)]
    ys = [int(i) for i in re.findall(r"\(\s*declare-const\s+Y_(\d+)\s+Real\s*\)", text)]
    assert sorted(xs) == list(range(len(xs))) and sorted(ys) == list(range(len(ys)))
    return len(xs), len(ys)


def simple_bounds(text: str, n_inputs: int):
    """The input box from top-level ``(assert (<= X_i c))`` lines, if they bound every input."""
    lower, upper = np.full(n_inputs, -np.inf), np.full(n_inputs, np.inf)
    pattern = r"\(assert\s*\(\s*(<=|>=)\s+X_(\d+)\s+([^\s()]+)\s*\)\s*\)"
    for op, i, c in re.findall(pattern, text):
        if op == "<=":
            upper[int(i)] = min(upper[int(i)], float(c))
        else:
            lower[int(i)] = max(lower[int(i)], float(c))
    return (lower, upper) if np.isfinite(lower).all() and np.isfinite(upper).all() else None


def check_structure(prop, text: str) -> None:
    """Shapes, dtypes and (where the file has only top-level bounds) the exact input box."""
    n_in, n_out = declared_counts(text)
    assert (prop.n_inputs, prop.n_outputs) == (n_in, n_out)
    assert prop.cases
    box = simple_bounds(text, n_in)
    for case in prop.cases:
        r = case.region
        assert r.lower.shape == r.upper.shape == (n_in,) and r.lower.dtype == np.float64
        assert np.all(r.lower <= r.upper) and np.isfinite(r.lower).all()
        if box is not None:
            np.testing.assert_array_equal(r.lower, box[0])
            np.testing.assert_array_equal(r.upper, box[1])
        for conj in case.unsafe:
            assert conj.C.shape == (conj.d.shape[0], n_out) and conj.C.dtype == np.float64


def test_every_benchmark_file_parses():
    failures = []
    start = time.perf_counter()
    for path in benchmark_files():
        text = path.read_text()
        try:
            n_in, n_out = declared_counts(text)
            prop = parse_vnnlib(path, n_inputs=n_in, n_outputs=n_out)
            check_structure(prop, text)
            assert prop.source == str(path)
        except (AssertionError, InputError) as exc:
            failures.append(f"{path.relative_to(BENCHMARKS)}: {exc}")
    elapsed = time.perf_counter() - start
    assert not failures, "\n".join(failures[:20])
    assert elapsed < 120, f"parsing all benchmark files took {elapsed:.1f} s"


def oracle_sample() -> list[Path]:
    """All of acasxu and test_2022, three files per other family, and the 3 largest files."""
    files = benchmark_files()
    by_family: dict[str, list[Path]] = {}
    for f in files:
        by_family.setdefault(f.relative_to(BENCHMARKS).parts[0], []).append(f)
    chosen = []
    for family, fs in sorted(by_family.items()):
        chosen += fs if family in ("acasxu", "test_2022") else [fs[0], fs[len(fs) // 2], fs[-1]]
    largest = sorted(files, key=lambda f: (-f.stat().st_size, str(f)))[:3]
    return list(dict.fromkeys(chosen + largest))


def test_benchmark_files_agree_with_oracle():
    for path in oracle_sample():
        text = path.read_text()
        prop = parse_vnnlib(path)
        n_true, n_false = check_against_oracle(text, prop, 60, seed=len(text))
        assert n_true > 0 and n_false > 0, (path, n_true, n_false)


def test_acasxu_property_6_cases():
    path = BENCHMARKS / "acasxu" / "vnnlib" / "prop_6.vnnlib"
    if not path.is_file():
        pytest.skip(f"../shared/benchmarks not found: {path}")
    prop = parse_vnnlib(path, n_inputs=5, n_outputs=5)
    assert len(prop.cases) == 2
    np.testing.assert_array_equal(prop.cases[0].region.lower[1], 0.11140846)
    np.testing.assert_array_equal(prop.cases[1].region.upper[1], -0.11140846)
    for case in prop.cases:
        assert len(case.unsafe) == 4
        np.testing.assert_array_equal(case.unsafe[2].C, [[-1, 0, 0, 1, 0]])



DECL = "(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
DB = DECL + "(assert (<= X_0 1))\n(assert (>= X_0 0))\n"  # 4 lines; the next is line 5
IE, UE = InputError, UnsupportedError

MALFORMED = [  # name, text, error class, fragments the one-line message must contain
    ("extra_paren", DB + "(assert (<= Y_0 1)))\n", IE, ["line 5, column 20", "unexpected"]),
    ("unclosed", DB + "(assert (<= Y_0 1)\n", IE, ["line 5, column 1", "never closed"]),
    ("unknown_command", DECL + "(declare-fun Z () Real)\n", UE, ["line 3", "declare-fun"]),
    ("unknown_operator", DB + "(assert (foo Y_0 1))\n", UE, ["line 5, column 10", "foo"]),
    ("undeclared", DB + "(assert\n  (<= Y_1 1))\n", IE, ["line 6, column 7", "Y_1"]),
    ("duplicate", DECL + "(declare-const X_0 Real)\n", IE, ["line 3, column 16", "X_0"]),
    ("int_type", "(declare-const X_0 Int)\n", UE, ["line 1", "Int"]),
    ("bad_name", "(declare-const Z_0 Real)\n", UE, ["line 1", "Z_0"]),
    ("strict_less", DB + "(assert (< Y_0 1))\n", UE, ["line 5, column 10", "strict"]),
    ("strict_greater", DB + "(assert (or (<= Y_0 0)\n (> Y_0 1)))", UE, ["line 6, column 3"]),
    ("nan", DB + "(assert (<= Y_0 nan))\n", IE, ["line 5", "nan"]),
    ("inf", DB + "(assert (<= Y_0 -inf))\n", IE, ["line 5", "-inf"]),
    ("overflow", DB + "(assert (<= Y_0 1e999))\n", IE, ["line 5", "1e999"]),
    ("bad_constant", DB + "(assert (<= Y_0 1.2.3))\n", IE, ["line 5, column 17", "1.2.3"]),
    ("non_linear", DB + "(assert (<= (* Y_0 Y_0) 1))\n", UE, ["line 5", "non-linear"]),
    ("linear_inputs", "(declare-const X_1 Real)\n" + DB + "(assert (<= (+ X_0 X_1) 1))\n", UE,
     ["line 6", "linear"]),
    ("mixed", DB + "(assert (<= X_0 Y_0))\n", UE, ["line 5", "mixes"]),
    ("no_lower_bound", DECL + "(assert (<= X_0 1))\n(assert (<= Y_0 0))\n", IE, ["X_0", "lower"]),
    ("no_upper_bound_in_case", DECL + "(assert (>= X_0 0))\n(assert (or (and (<= X_0 1) (<= Y_0 0))"
     " (<= Y_0 1)))\n", IE, ["X_0", "upper bound", "case 2"]),
    ("empty_region", DB + "(assert (>= X_0 2))\n", IE, ["line 5", "X_0", "empty"]),
    ("gap_in_inputs", DB + "(declare-const X_2 Real)\n", IE, ["X_1"]),
    ("empty_file", "", IE, ["empty"]),
    ("only_comments", "; nothing here\n\n", IE, ["empty"]),
    ("no_asserts", DECL, IE, ["no assertions"]),
    ("commented_assert", DECL + "; (assert (<= Y_0 1))\n", IE, ["no assertions"]),
    ("outside_parens", DECL + "assert\n", IE, ["line 3", "outside"]),
]


@pytest.mark.parametrize("name,text,cls,fragments", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files(tmp_path, name, text, cls, fragments):
    path = tmp_path / f"{name}.vnnlib"
    path.write_text(text)
    with pytest.raises(cls) as info:
        parse_vnnlib(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    if cls is InputError:
        assert type(info.value) is InputError, message


def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.vnnlib"
    with pytest.raises(InputError, match="cannot read") as info:
        parse_vnnlib(missing)
    assert "nope.vnnlib" in str(info.value) and info.value.where is None
    with pytest.raises(InputError, match="cannot read"):
        parse_vnnlib(tmp_path)
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(DECL.encode() + b"\x1f\x8b\xff\xfe")
    with pytest.raises(InputError, match="not UTF-8") as info:
        parse_vnnlib(binary)
    assert "bin.vnnlib" in str(info.value) and "line 3" in str(info.value)


def test_model_size_mismatch(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(HEADER + BOX + "(assert (<= Y_0 Y_1))\n")
    with pytest.raises(InputError, match="property declares 3 inputs, model has 784"):
        parse_vnnlib(path, n_inputs=784, n_outputs=4)
    with pytest.raises(InputError, match="property declares 4 outputs, model has 10"):
        parse_vnnlib(path, n_inputs=3, n_outputs=10)
    assert parse_vnnlib(path, n_inputs=3, n_outputs=4).n_inputs == 3



def disjunctive_text(n: int, n_inputs: int = 50) -> str:
    """A property with global bounds and an ``or`` of ``n`` boxes with output rows."""
    lines = [f"(declare-const X_{i} Real)" for i in range(n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(5)]
    lines += [f"(assert (<= X_{i} 1))\n(assert (>= X_{i} -1))" for i in range(n_inputs)]
    lines.append("(assert (or")
    for k in range(n):
        lo = -1 + 2 * k / n
        lines.append(f" (and (>= X_{k % n_inputs} {lo!r}) (<= X_{k % n_inputs} {lo + 2 / n!r})"
                     f" (<= Y_{k % 5} Y_{(k + 1) % 5}) (>= (- Y_0 (* 2 Y_1)) -0.5e-3))")
    lines.append("))")
    return "\n".join(lines)


def best_time(text: str) -> float:
    """Best of three parse times."""
    return min(timeit.repeat(lambda: parse_vnnlib_text(text), number=1, repeat=3))


def test_parsing_is_linear_in_disjuncts():
    small, large = disjunctive_text(5000), disjunctive_text(10000)
    prop = parse_vnnlib_text(small)
    assert len(prop.cases) == 5000 and all(len(c.unsafe) == 1 for c in prop.cases)
    t_small, t_large = best_time(small), best_time(large)
    assert t_large < 3.0 * t_small, f"5000: {t_small:.3f} s, 10000: {t_large:.3f} s"



def test_robustness_box_and_clipping():
    center = np.array([[0.05, 0.5], [0.97, 0.3]])
    prop = robustness_property(center, 0.1, label=2, n_outputs=4, lower=0.0,
                               upper=np.array([1.0, 1.0, 1.0, 0.35]))
    (case,) = prop.cases
    np.testing.assert_allclose(case.region.lower, [0.0, 0.4, 0.87, 0.2])
    np.testing.assert_allclose(case.region.upper, [0.15, 0.6, 1.0, 0.35])
    assert case.region.l2_center is None
    assert (prop.n_inputs, prop.n_outputs) == (4, 4)
    assert prop.meta == {"kind": "robustness", "epsilon": 0.1, "norm": "inf", "label": 2}
    assert len(case.unsafe) == 3
    np.testing.assert_array_equal(case.unsafe[0].C, [[-1, 0, 1, 0]])
    np.testing.assert_array_equal(case.unsafe[2].C, [[0, 0, 1, -1]])


def test_robustness_matches_argmax():
    rng = np.random.default_rng(1)
    prop = robustness_property(np.zeros(3), 0.5, label=1, n_outputs=5)
    x = np.full(3, 0.25)
    for _ in range(2000):
        y = np.round(rng.normal(size=5), 1)  # rounding makes ties frequent
        kept = bool(np.all(np.delete(y, 1) < y[1]))
        assert (prop.violated_by(x, y) is not None) == (not kept), y
    assert prop.violated_by(np.full(3, 0.75), np.array([9.0, 0, 0, 0, 0])) is None


def test_robustness_l2_region():
    center = np.array([0.5, 0.5, 0.5])
    prop = robustness_property(center, 0.2, label=0, n_outputs=2, norm="2", lower=0, upper=1)
    region = prop.cases[0].region
    assert region.l2_radius == 0.2 and prop.meta["norm"] == "2"
    rng = np.random.default_rng(2)
    for _ in range(500):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        r = rng.uniform(0, 0.4)
        if abs(r - 0.2) < 1e-9:
            continue
        assert region.contains(center + r * direction) == (r < 0.2)
    assert not region.contains(center + np.array([0.19, 0.19, 0.0]))  # in the box, not the ball


@pytest.mark.parametrize("kwargs,fragment", [
    ({"epsilon": -0.1}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"), ({"label": 3}, "label"),
    ({"label": -1}, "label"), ({"n_outputs": 1, "label": 0}, "at least 2"), ({"norm": "1"}, "norm"),
    ({"center": [0.0, float("inf")]}, "finite"), ({"lower": 2.0}, "misses"),
    ({"lower": [0.0, 0.0, 0.0]}, "lower"),
    ({"norm": "2", "center": [2.0, 2.0], "upper": 1.0, "epsilon": 1.2}, "L2 ball"),
])
def test_robustness_validation(kwargs, fragment):
    args = {"center": [0.0, 0.5], "epsilon": 0.1, "label": 0, "n_outputs": 3}
    args.update(kwargs)
    with pytest.raises(InputError, match=fragment):
        robustness_property(**args)
