"""VNN-LIB parser for the subset used by VNN-COMP.

The conjunction of all asserts describes the counterexample (unsafe) set. It is normalised to
DNF; each term gives a box over the inputs ``X_i`` and a conjunction ``C · y <= d`` over the
outputs ``Y_j``; terms with the same box share one :class:`Case`. Lists are reduced when they
close, on an explicit stack (no recursion). Encodings: variable code ``i`` for ``X_i``,
``-1 - j`` for ``Y_j``; a formula is a list of DNF terms (``[]`` is false); a term is ``None``
(true), a bound ``(0, i, is_upper, value, offset)``, a row ``(1, {j: coeff}, rhs)`` for
``sum coeff·Y_j <= rhs``, or a concatenation ``(2, left, right)``, flattened once at the end.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedError
from .property import Case, Conjunction, InputRegion, Property

_TOKEN = re.compile(r"(\()|(\))|;[^\n]*|([^\s();]+)")
_VAR = re.compile(r"([XY])_(0|[1-9][0-9]*)\Z")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
_NONFINITE = frozenset({"nan", "inf", "infinity"})
_MAX_TERMS = 1_000_000
_COMMANDS = frozenset({"declare-const", "assert", "check-sat", "get-model", "exit", "set-logic",
                       "set-info"})
_STRICT = "strict '{0}' is not supported (use '{0}='; reading it as '{0}=' could give a wrong" \
    " counterexample)"
_UNSUPPORTED_OPS = {"<": _STRICT.format("<"), ">": _STRICT.format(">"), "/": "'/' is not supported",
                    **{op: f"'{op}' is not supported" for op in ("not", "=>", "ite", "distinct")}}


@dataclass(slots=True)
class _Lin:
    """A linear expression ``sum(coeffs[code] * var) + const`` starting at offset ``pos``."""

    coeffs: dict[int, float]
    const: float
    pos: int


def _cat(a, b):
    """Concatenate two DNF terms in O(1)."""
    return b if a is None else a if b is None else (2, a, b)


def _flatten(term) -> list:
    """The atoms of a DNF term, left to right."""
    out, stack = [], [term]
    while stack:
        t = stack.pop()
        if t is not None and t[0] == 2:
            stack += (t[2], t[1])
        elif t is not None:
            out.append(t)
    return out


class _Parser:
    """One parse of one VNN-LIB text."""

    def __init__(self, text: str, source: str):
        self.text, self.source = text, source
        self.codes: dict[str, int] = {}
        self.n_x = self.n_y = self.n_asserts = 0
        self.common = None  # the conjunction of all single-term asserts
        self.multi: list[list] = []  # the other asserts' DNFs

    def error(self, message: str, pos: int | None = None, cls=InputError) -> InputError:
        """An error located at character offset ``pos`` of the text."""
        if pos is None:
            return cls(message, path=self.source)
        line, col = self.text.count("\n", 0, pos) + 1, pos - self.text.rfind("\n", 0, pos)
        return cls(message, path=self.source, where=f"line {line}, column {col}")

    def run(self) -> None:
        """Tokenise and reduce the whole text."""
        stack: list[list] = []
        for m in _TOKEN.finditer(self.text):
            kind = m.lastindex
            if kind == 1:
                stack.append([m.start()])
            elif kind == 2:
                if not stack:
                    raise self.error("unbalanced parentheses: unexpected ')'", m.start())
                frame = stack.pop()
                if stack:
                    stack[-1].append(self.reduce(frame))
                else:
                    self.command(frame)
            elif kind == 3:
                if not stack:
                    raise self.error(f"unexpected '{m.group(3)}' outside parentheses", m.start())
                if len(stack) == 1 and len(stack[0]) == 1 and m.group(3) not in _COMMANDS:
                    raise self.error(f"unknown command '{m.group(3)}'", m.start(), UnsupportedError)
                stack[-1].append((m.group(3), m.start()))
        if stack:
            raise self.error("unbalanced parentheses: '(' is never closed", stack[0][0])

    def head(self, frame: list) -> str:
        """The operator symbol of a list."""
        if len(frame) < 2 or not isinstance(frame[1], tuple):
            raise self.error("expected an operator name after '('", frame[0])
        return frame[1][0]

    def command(self, frame: list) -> None:
        """Execute a top-level command."""
        name = self.head(frame)
        if name == "declare-const":
            self.declare(frame)
        elif name == "assert":
            if len(frame) != 3:
                raise self.error("'assert' takes exactly one formula", frame[0])
            terms = self.formula(frame[2], frame[0])
            self.n_asserts += 1
            if len(terms) == 1:
                self.common = _cat(self.common, terms[0])
            else:
                self.multi.append(terms)

    def declare(self, frame: list) -> None:
        """``(declare-const X_i Real)``."""
        if len(frame) != 4 or not all(isinstance(t, tuple) for t in frame[2:]):
            raise self.error("expected (declare-const <name> Real)", frame[0])
        (name, npos), (sort, spos) = frame[2], frame[3]
        m = _VAR.match(name)
        if m is None:
            raise self.error(f"variable '{name}' must be named X_<i> (input) or Y_<j> (output)",
                             npos, UnsupportedError)
        if name in self.codes:
            raise self.error(f"duplicate declaration of '{name}'", npos)
        if sort != "Real":
            raise self.error(f"variable '{name}' has type '{sort}'; only Real is supported",
                             spos, UnsupportedError)
        is_x = m.group(1) == "X"
        self.codes[name] = int(m.group(2)) if is_x else -1 - int(m.group(2))
        self.n_x, self.n_y = self.n_x + is_x, self.n_y + (not is_x)

    def formula(self, item, pos: int) -> list:
        """An operand (of the list at offset ``pos``) that must be a formula."""
        if isinstance(item, list):
            return item
        if isinstance(item, tuple):
            raise self.error(f"expected a formula, found '{item[0]}'", item[1])
        raise self.error("expected a formula, found an arithmetic term", item.pos)

    def term(self, item, pos: int) -> _Lin:
        """An operand (of the list at offset ``pos``) that must be a constant or linear term."""
        if isinstance(item, _Lin):
            return item
        if isinstance(item, list):
            raise self.error("expected an arithmetic term, found a formula", pos)
        tok, pos = item
        code = self.codes.get(tok)
        if code is not None:
            return _Lin({code: 1.0}, 0.0, pos)
        return _Lin({}, self.constant(tok, pos), pos)

    def constant(self, tok: str, pos: int) -> float:
        """A finite numeric constant."""
        if tok.lower().lstrip("+-") in _NONFINITE:
            raise self.error(f"non-finite constant '{tok}'", pos)
        if _NUMBER.match(tok) is None:
            symbol = tok[0].isalpha() or tok[0] == "_"
            raise self.error(f"{'undeclared variable' if symbol else 'malformed constant'} "
                             f"'{tok}'", pos)
        value = float(tok)
        if not math.isfinite(value):
            raise self.error(f"non-finite constant '{tok}' (overflows a double)", pos)
        return value

    def reduce(self, frame: list):
        """The value of a nested (non top-level) list."""
        if len(frame) == 1:
            return ("()", frame[0])
        op = self.head(frame)
        pos, args = frame[0], frame[2:]
        if op in ("<=", ">=", "="):
            return self.compare(op, args, pos)
        if op == "and":
            return self.conjoin([self.formula(a, pos) for a in args], pos)
        if op == "or":
            terms = [t for a in args for t in self.formula(a, pos)]
            self.check_size(len(terms), pos)
            return terms
        if op in ("+", "-", "*"):
            return self.arith(op, [self.term(a, pos) for a in args], pos)
        if op in _UNSUPPORTED_OPS:
            raise self.error(_UNSUPPORTED_OPS[op], frame[1][1], UnsupportedError)
        raise self.error(f"unknown operator '{op}'", frame[1][1], UnsupportedError)

    def check_size(self, n: int, pos: int) -> None:
        """Refuse DNFs too large to enumerate."""
        if n > _MAX_TERMS:
            raise self.error(f"the formula expands to more than {_MAX_TERMS} disjuncts",
                             pos, UnsupportedError)

    def conjoin(self, dnfs: list[list], pos: int) -> list:
        """The DNF of a conjunction: the product of the operands' DNFs."""
        base, multi = None, []
        for terms in dnfs:
            if len(terms) == 1:
                base = _cat(base, terms[0])
            elif not terms:
                return []
            else:
                multi.append(terms)
        out = [base]
        for terms in multi:
            self.check_size(len(out) * len(terms), pos)
            out = [_cat(t, u) for t in out for u in terms]
        return out

    def arith(self, op: str, args: list[_Lin], pos: int) -> _Lin:
        """``+``, ``-`` (unary or n-ary) and ``*`` by constants."""
        if not args:
            raise self.error(f"'{op}' needs at least one operand", pos)
        if op == "*":
            return self.product(args, pos)
        step = -1.0 if op == "-" else 1.0
        first = step if len(args) == 1 else 1.0  # unary minus negates its operand
        coeffs, const = {k: first * v for k, v in args[0].coeffs.items()}, first * args[0].const
        for a in args[1:]:
            for k, v in a.coeffs.items():
                coeffs[k] = coeffs.get(k, 0.0) + step * v
            const += step * a.const
        return _Lin(coeffs, const, pos)

    def product(self, args: list[_Lin], pos: int) -> _Lin:
        """A product in which at most one factor is not a constant."""
        scale, lin = 1.0, None
        for a in args:
            if not a.coeffs:
                scale *= a.const
            elif lin is None:
                lin = a
            else:
                raise self.error("non-linear term: product of two variables", a.pos,
                                 UnsupportedError)
        lin = lin or _Lin({}, 1.0, pos)
        return _Lin({k: scale * v for k, v in lin.coeffs.items()}, scale * lin.const, pos)

    def compare(self, op: str, args: list, pos: int) -> list:
        """The DNF of ``(<= a b)``, ``(>= a b)`` or ``(= a b)``."""
        if len(args) != 2:
            raise self.error(f"'{op}' takes exactly two operands", pos)
        a, b = self.term(args[0], pos), self.term(args[1], pos)
        coeffs = dict(a.coeffs)
        for k, v in b.coeffs.items():
            coeffs[k] = coeffs.get(k, 0.0) - v
        coeffs = {k: v for k, v in coeffs.items() if v != 0.0}
        rhs = b.const - a.const
        sides = {"<=": (1.0,), ">=": (-1.0,), "=": (1.0, -1.0)}[op]
        terms = [self.atom({k: s * v for k, v in coeffs.items()}, s * rhs, pos) for s in sides]
        return self.conjoin(terms, pos)

    def atom(self, coeffs: dict[int, float], rhs: float, pos: int) -> list:
        """The DNF of ``sum coeffs·v <= rhs``: a bound atom or an output row."""
        if not coeffs:
            return [None] if 0.0 <= rhs else []
        if all(k < 0 for k in coeffs):
            return [(1, {-1 - k: v for k, v in coeffs.items()}, rhs)]
        if any(k < 0 for k in coeffs):
            raise self.error("constraint mixes inputs (X) and outputs (Y)", pos, UnsupportedError)
        if len(coeffs) == 1:
            (var, c), = coeffs.items()
            if c == 1.0:
                return [(0, var, True, rhs, pos)]
            if c == -1.0:
                return [(0, var, False, -rhs, pos)]
        raise self.error("general linear constraints over inputs are not supported; "
                         "only bounds of one input (X_i <= c, X_i >= c)", pos, UnsupportedError)

    def check_vars(self, n_inputs: int | None, n_outputs: int | None) -> None:
        """Declared variables: X_0..X_{n-1}, Y_0..Y_{m-1}, matching the model if given."""
        for letter, n, given, what in (("X", self.n_x, n_inputs, "inputs"),
                                       ("Y", self.n_y, n_outputs, "outputs")):
            if given is not None and n != given:
                raise self.error(f"property declares {n} {what}, model has {given}")
            if n == 0:
                raise self.error(f"property declares no {what} ({letter}_0, ...)")
            missing = next((i for i in range(n) if f"{letter}_{i}" not in self.codes), None)
            if missing is not None:
                raise self.error(f"{what} must be declared as {letter}_0..{letter}_{n - 1}; "
                                 f"{letter}_{missing} is missing")
        if self.n_asserts == 0:
            raise self.error("property contains no assertions")

    def bound(self, atom: tuple, cur: tuple[float, float]) -> tuple[float, float]:
        """Intersect the interval ``cur`` with a bound atom; refuse an empty result."""
        _, var, upper, value, pos = atom
        lo, hi = (cur[0], min(cur[1], value)) if upper else (max(cur[0], value), cur[1])
        if lo > hi:
            raise self.error(f"empty input region: X_{var} has lower bound {lo!r} above "
                             f"upper bound {hi!r}", pos)
        return lo, hi

    def build(self) -> tuple[list, list]:
        """Group DNF terms by input box: ``[(box_key, [rows, ...]), ...]`` and base box."""
        base = [(-math.inf, math.inf)] * self.n_x
        common_rows = []
        for atom in _flatten(self.common):
            if atom[0] == 0:
                base[atom[1]] = self.bound(atom, base[atom[1]])
            else:
                common_rows.append(atom)
        products = [None]
        for terms in self.multi:
            self.check_size(len(products) * len(terms), None)
            products = [_cat(t, u) for t in products for u in terms]
        groups: dict[tuple, list] = {}
        for term in products:
            mods: dict[int, tuple[float, float]] = {}
            rows = list(common_rows)
            for atom in _flatten(term):
                if atom[0] == 0:
                    var = atom[1]
                    mods[var] = self.bound(atom, mods.get(var, base[var]))
                else:
                    rows.append(atom)
            key = tuple(sorted((k, v) for k, v in mods.items() if v != base[k]))
            groups.setdefault(key, []).append(rows)
        return list(groups.items()), base

    def region(self, key: tuple, base: np.ndarray, case: int, n_cases: int) -> InputRegion:
        """The input box of one case; every input must be bounded on both sides."""
        arr = base.copy()
        if key:
            arr[[k for k, _ in key]] = [v for _, v in key]
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if bad.size:
            var = int(bad[0])
            side = "lower" if np.isinf(arr[var, 0]) else "upper"
            where = f" in case {case + 1} of {n_cases}" if n_cases > 1 else ""
            raise self.error(f"input X_{var} has no {side} bound{where}")
        return InputRegion(lower=arr[:, 0].copy(), upper=arr[:, 1].copy())

    def conjunctions(self, groups: list) -> list[list[Conjunction]]:
        """All output conjunctions, cut from one matrix filled at once."""
        rows = [r for _, row_lists in groups for rs in row_lists for r in rs]
        C = np.zeros((len(rows), self.n_y), dtype=np.float64)
        ri = np.array([i for i, r in enumerate(rows) for _ in r[1]], dtype=np.int64)
        ci = np.array([j for r in rows for j in r[1]], dtype=np.int64)
        C[ri, ci] = [v for r in rows for v in r[1].values()]
        d = np.array([r[2] for r in rows], dtype=np.float64)
        out, start = [], 0
        for _, row_lists in groups:
            ends = list(accumulate((len(rs) for rs in row_lists), initial=start))
            out.append([Conjunction(C=C[a:b], d=d[a:b]) for a, b in zip(ends, ends[1:])])
            start = ends[-1]
        return out

    def to_property(self) -> Property:
        """The parsed property."""
        groups, base_list = self.build()
        conjs = self.conjunctions(groups)
        base = np.array(base_list, dtype=np.float64).reshape(self.n_x, 2)
        cases = tuple(Case(region=self.region(key, base, i, len(groups)), unsafe=tuple(cs))
                      for i, ((key, _), cs) in enumerate(zip(groups, conjs)))
        return Property(cases=cases, n_inputs=self.n_x, n_outputs=self.n_y, source=self.source)


def parse_vnnlib_text(text: str, source: str = "<string>", n_inputs: int | None = None,
                      n_outputs: int | None = None) -> Property:
    """Parse VNN-LIB ``text``; ``source`` names it in error messages and ``Property.source``.

    ``n_inputs``/``n_outputs``, when given, must equal the numbers of declared X/Y variables.
    Raises :class:`InputError` for malformed input and :class:`UnsupportedError` for
    constructs outside the supported subset.
    """
    parser = _Parser(text, source)
    parser.run()
    if not parser.codes and not parser.n_asserts:
        raise parser.error("property file is empty (no declarations, no assertions)")
    parser.check_vars(n_inputs, n_outputs)
    return parser.to_property()


def parse_vnnlib(path: str | Path, n_inputs: int | None = None,
                 n_outputs: int | None = None) -> Property:
    """Parse the VNN-LIB file at ``path`` (see :func:`parse_vnnlib_text`)."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read property file: {exc.strerror or type(exc).__name__}",
                         path=source) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - data.rfind(b"\n", 0, exc.start)
        raise InputError(f"property file is not UTF-8 text (invalid byte 0x{data[exc.start]:02x})",
                         path=source, where=f"line {line}, column {col}") from None
    return parse_vnnlib_text(text, source, n_inputs, n_outputs)
