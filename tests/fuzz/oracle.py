"""Random VNN-LIB properties with an independent meaning: a small formula tree, its VNN-LIB
text, and an exact evaluator (``fractions.Fraction``) that decides whether a concrete
``(x, y)`` satisfies every assertion, i.e. is a counterexample.

The evaluator shares no code with ``verifier.spec``; together with onnxruntime it judges the
verdicts of ``verifier`` on these properties: a ``sat`` witness must satisfy the formula on
onnxruntime's output, and an ``unsat`` property must have no sampled counterexample.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# a term: ("var", "X_3") | ("num", float) | ("+", [terms]) | ("-", [terms]) | ("*", float, term)
# a formula: ("and", [formulas]) | ("or", [formulas]) | (op, term, term) with op in <=, >=, =
EPS_CHOICES = (0.0, 1e-3, 0.02, 0.1, 0.5, 3.0, 1e3, 1e30)


@dataclass
class RandomProperty:
    """A property: input boxes to sample, assertions, and the numbers of variables."""

    n_inputs: int
    n_outputs: int
    asserts: list
    boxes: list[tuple[np.ndarray, np.ndarray]]   # regions to sample for violations

    def text(self) -> str:
        lines = [f"(declare-const X_{i} Real)" for i in range(self.n_inputs)]
        lines += [f"(declare-const Y_{j} Real)" for j in range(self.n_outputs)]
        lines += [f"(assert {render(f)})" for f in self.asserts]
        return "\n".join(lines) + "\n"

    def holds(self, x: np.ndarray, y: np.ndarray) -> bool | None:
        """Whether flat ``x``, ``y`` satisfy every assertion, exactly for finite values; an
        overflowed output (±inf) compares as itself, and ``inf - inf``, ``0 * inf`` or a NaN
        output leave the answer undecided (None)."""
        if np.any(np.isnan(y)):
            return None
        env = {f"X_{i}": _number(v) for i, v in enumerate(np.asarray(x).reshape(-1))}
        env.update({f"Y_{j}": _number(v) for j, v in enumerate(np.asarray(y).reshape(-1))})
        return _all([_truth(f, env) for f in self.asserts])


def render(node) -> str:
    """VNN-LIB text of a term or formula."""
    kind = node[0]
    if kind == "var":
        return node[1]
    if kind == "num":
        return repr(float(node[1]))
    if kind == "*":
        return f"(* {repr(float(node[1]))} {render(node[2])})"
    if kind in ("+", "-", "and", "or"):
        return f"({kind} {' '.join(render(a) for a in node[1])})"
    return f"({kind} {render(node[1])} {render(node[2])})"


def _number(v) -> Fraction | float:
    """An exact rational for a finite value; ±inf stays a float (arithmetic with it gives
    ±inf or NaN)."""
    v = float(v)
    return Fraction(v) if math.isfinite(v) else v


def _all(values: list) -> bool | None:
    return False if False in values else None if None in values else True


def _any(values: list) -> bool | None:
    return True if True in values else None if None in values else False


def _value(term, env) -> Fraction | float:
    kind = term[0]
    if kind == "var":
        return env[term[1]]
    if kind == "num":
        return Fraction(float(term[1]))
    if kind == "*":
        return Fraction(float(term[1])) * _value(term[2], env)
    vals = [_value(a, env) for a in term[1]]
    if kind == "+":
        return sum(vals, Fraction(0))
    if len(vals) == 1:
        return -vals[0]
    return vals[0] - sum(vals[1:], Fraction(0))


def _truth(f, env) -> bool | None:
    """Three-valued: None where an infinite output makes a term undefined."""
    kind = f[0]
    if kind == "and":
        return _all([_truth(g, env) for g in f[1]])
    if kind == "or":
        return _any([_truth(g, env) for g in f[1]])
    a, b = _value(f[1], env), _value(f[2], env)
    if any(isinstance(v, float) and math.isnan(v) for v in (a, b)):
        return None
    return a <= b if kind == "<=" else a >= b if kind == ">=" else a == b


def _box_asserts(lo: np.ndarray, hi: np.ndarray) -> list:
    out = []
    for i, (a, b) in enumerate(zip(lo, hi)):
        out += [(">=", ("var", f"X_{i}"), ("num", float(a))), ("<=", ("var", f"X_{i}"), ("num", float(b)))]
    return out


def _other(rng: random.Random, n_out: int, j: int) -> int:
    """Mostly an output index other than ``j``; now and then ``j`` itself (``Y_j - Y_j`` and
    ``Y_j <= Y_j`` give disjuncts without output rows: trivially true or false)."""
    return j if rng.random() < 0.1 else (j + rng.randrange(1, n_out)) % n_out


def _output_term(rng: random.Random, n_out: int):
    j = rng.randrange(n_out)
    shape = rng.random()
    if shape < 0.5:
        return ("var", f"Y_{j}")
    if shape < 0.7:
        return ("-", [("var", f"Y_{j}"), ("var", f"Y_{_other(rng, n_out, j)}")])
    if shape < 0.85:
        return ("*", rng.choice((-2.0, 0.5, 3.0)), ("var", f"Y_{j}"))
    return ("+", [("var", f"Y_{j}"), ("num", rng.uniform(-1, 1))])


def _output_formula(rng: random.Random, n_out: int, depth: int):
    if depth == 0 or rng.random() < 0.4:
        op = rng.choice(("<=", ">=", ">=", "<="))
        lhs = _output_term(rng, n_out)
        if rng.random() < 0.6 and lhs[0] == "var":
            return (op, lhs, ("var", f"Y_{_other(rng, n_out, int(lhs[1][2:]))}"))
        return (op, lhs, ("num", rng.uniform(-3, 3)))
    kind = rng.choice(("and", "or"))
    return (kind, [_output_formula(rng, n_out, depth - 1) for _ in range(rng.randint(1, 3))])


def random_property(rng: random.Random, n_inputs: int, n_outputs: int, centre: np.ndarray,
                    clip: tuple[float, float] | None = None) -> RandomProperty:
    """A box of radius eps (one of :data:`EPS_CHOICES`) around ``centre`` (flat), possibly
    split into sub-boxes by an ``or``, and a random output formula of depth <= 2."""
    eps = rng.choice(EPS_CHOICES)
    lo, hi = centre - eps, centre + eps
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    asserts = _box_asserts(lo, hi)
    boxes = [(lo, hi)]
    if rng.random() < 0.3 and eps > 0:   # several input regions, each with its own output set
        i = rng.randrange(n_inputs)
        mid = float(centre[i])
        parts = []
        for a, b in ((float(lo[i]), mid), (mid, float(hi[i]))):
            sub_lo, sub_hi = lo.copy(), hi.copy()
            sub_lo[i], sub_hi[i] = a, b
            boxes.append((sub_lo, sub_hi))
            parts.append(("and", [(">=", ("var", f"X_{i}"), ("num", a)), ("<=", ("var", f"X_{i}"), ("num", b)),
                                  _output_formula(rng, n_outputs, 1)]))
        asserts.append(("or", parts))
    else:
        asserts.append(_output_formula(rng, n_outputs, 2))
    return RandomProperty(n_inputs, n_outputs, asserts, boxes)


def sample_points(prop: RandomProperty, n: int, seed: int) -> np.ndarray:
    """``(len(boxes) * (n + 2**min(d, 6) + 1), n_inputs)`` float32 points: uniform samples,
    vertices (of the first six axes) and the centre of every sampling box."""
    gen = np.random.default_rng(seed)
    out = []
    for lo, hi in prop.boxes:
        out.append(gen.uniform(lo, hi, size=(n, lo.size)))
        corners = np.array(np.meshgrid(*[[0, 1]] * min(lo.size, 6))).reshape(min(lo.size, 6), -1).T
        vert = np.tile((lo + hi) / 2, (len(corners), 1))
        k = min(lo.size, 6)
        vert[:, :k] = np.where(corners == 1, hi[:k], lo[:k])
        out += [vert, ((lo + hi) / 2)[None]]
    with np.errstate(over="ignore"):
        return np.concatenate(out).astype(np.float32)


def box_property(n_inputs: int, n_outputs: int, centre: float = 0.5, eps: float = 0.1) -> RandomProperty:
    """Every input in ``[centre - eps, centre + eps]``; unsafe: ``Y_0 >= Y_1`` (the meaning of
    ``fuzz.mutate.base_property``)."""
    lo, hi = np.full(n_inputs, centre - eps), np.full(n_inputs, centre + eps)
    return RandomProperty(n_inputs, n_outputs, _box_asserts(lo, hi) + [(">=", ("var", "Y_0"), ("var", "Y_1"))],
                          [(lo, hi)])
