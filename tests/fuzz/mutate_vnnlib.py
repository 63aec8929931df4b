"""Mutations of VNN-LIB text for the fuzz tests: each is ``(text, rng) -> (text, note)`` with
``rng`` a ``random.Random`` (hypothesis supplies it). The base texts come from
``fuzz.mutate.base_property`` or the shipped specs."""
from __future__ import annotations

import random
from typing import Callable


def _spans(text: str, token: str) -> list[int]:
    out, i = [], text.find(token)
    while i >= 0:
        out.append(i)
        i = text.find(token, i + 1)
    return out


def _replace_one(text: str, old: str, new: str, rng: random.Random) -> str:
    spans = _spans(text, old)
    if not spans:
        return text + new
    i = rng.choice(spans)
    return text[:i] + new + text[i + len(old):]


def unbalanced(text, rng):
    ch = rng.choice("()")
    if rng.random() < 0.5:
        return _replace_one(text, ch, "", rng), f"one '{ch}' removed"
    i = rng.randrange(len(text) + 1)
    return text[:i] + ch * rng.choice((1, 2, 50)) + text[i:], f"extra '{ch}'"


def unknown_operator(text, rng):
    old = rng.choice((">=", "<=", "assert", "and", "declare-const", "Real"))
    new = rng.choice(("<", ">", "!=", "not", "ite", "=>", "distinct", "foo", "/", "Int", "Bool", "asser",
                      "declare-fun", "check-sat", "", "+", "*", "-", "or", "and", "="))
    return _replace_one(text, old, new, rng), f"'{old}' → '{new}'"


def undeclared_variable(text, rng):
    old = rng.choice(("X_0", "X_1", "Y_0", "Y_1"))
    new = rng.choice(("X_99", "Y_99", "Z_0", "X_01", "x_0", "X_-1", "X_", "X_0.5", "Y_1e3", "_", "X_\u0663"))
    return _replace_one(text, old, new, rng), f"'{old}' → '{new}'"


def empty_region(text, rng):
    i = rng.randrange(4)
    return text + f"(assert (>= X_{i} 5.0))\n(assert (<= X_{i} -5.0))\n", f"X_{i} in [5, -5]"


def duplicate_declaration(text, rng):
    name = rng.choice(("X_0", "Y_2", "X_3"))
    return f"(declare-const {name} Real)\n" + text, f"{name} declared twice"


def drop_line(text, rng):
    lines = text.splitlines(keepends=True)
    if not lines:
        return text, "no line to remove"
    k = rng.randrange(len(lines))
    return "".join(lines[:k] + lines[k + 1:]), f"line {k + 1} removed"


def weird_number(text, rng):
    old = rng.choice(("0.4", "0.6", "0.5", "Y_1"))
    new = rng.choice(("1e400", "-1e400", "1e-400", "NaN", "nan", "inf", "-inf", "+Infinity", "1e308",
                      "-1e308", "3.4e38", "1.", ".5", "5e", "0x10", "1_000", "--1", "1e+", "\u0661", "1,5"))
    return _replace_one(text, old, new, rng), f"'{old}' → '{new}'"


def deep_nesting(text, rng):
    depth = rng.choice((50, 2000, 100_000))
    op = rng.choice(("and", "or"))
    inner = "(>= Y_0 Y_1)"
    return (text + "(assert " + f"({op} " * depth + inner + ")" * depth + ")\n",
            f"{op} nested {depth} deep")


def wide_disjunction(text, rng):
    n = rng.choice((2, 30, 2000))
    k = rng.choice((1, 3, 25))
    ors = " ".join(f"(or (>= Y_0 {j}) (<= Y_1 {-j}))" for j in range(k))
    return text + f"(assert (and {ors}))\n" * (n // 1000 + 1), f"{k} two-way ors in one and"


def replace_all(text, rng):
    new = rng.choice(("", " \n\t ", "; only a comment\n", "\ufeff", "\x00" * 10, "()", "(assert)",
                      "(declare-const X_0 Real)", "(assert (>= X_0 0))", "\u202e(assert)\u202c",
                      "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))"))
    return new, f"whole file → {new!r}"


def junk(text, rng):
    k = rng.randrange(len(text) + 1)
    blob = bytes(rng.randrange(256) for _ in range(rng.choice((1, 16, 300)))).decode("latin-1")
    return text[:k] + blob + text[k:], f"{len(blob)} junk characters at {k}"


def unicode_text(text, rng):
    new = rng.choice(("\u00a0", "\u2003", "\u200b", "é", "∧", "（", "≥", "\u0085", "\u2028", "X\u0301"))
    k = rng.randrange(len(text) + 1)
    return text[:k] + new + text[k:], f"{new!r} inserted at {k}"


PROPERTY_MUTATIONS: dict[str, Callable[[str, random.Random], tuple[str, str]]] = {
    f.__name__: f for f in (unbalanced, unknown_operator, undeclared_variable, empty_region,
                            duplicate_declaration, drop_line, weird_number, deep_nesting, wide_disjunction,
                            replace_all, junk, unicode_text)}
