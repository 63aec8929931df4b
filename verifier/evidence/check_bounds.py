"""Sound float64 interval and CROWN bounds for the independent checker.

A deliberately small code path, separate from ``verifier/bounds`` and the engines: it uses
the graph IR and each op's own ``forward``/``interval``/``relax``/``backward``/``abs_linear``
(which :func:`SoundBounds.self_test` probes first) and nothing else. All values are float64
tensors with a leading batch axis ``(B, *shape)``; coefficient tensors are ``(B, R, *shape)``.
The rounding primitives (``U``, ``γ_k``, outward rounding, :class:`InputSet`) live in
:mod:`verifier.evidence.check_primitives`, the op probes in :mod:`verifier.evidence.check_selftest`.

Rounding. Every computed bound carries an explicit error budget and is moved outward by it,
so float64 rounding cannot produce a false proof:

* a dot product (or any sum) of ``k`` products computed in floating point, in any order,
  blocked or with FMA, is within ``γ_k · Σ|terms|`` of the exact value, ``γ_k = k·u/(1-k·u)``,
  ``u = 2⁻⁵³`` (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). Each step of
  the backward pass therefore adds ``γ_K`` times its *magnitude* (``Σ |A|·|W|·max|h|`` for an
  affine op, the same with the relaxation lines for an activation) to the budget, where ``K``
  bounds the length of every sum in the graph (largest value or weight dimension plus the
  number of accumulation steps). A relative widening of the result alone would not do: the
  error of a sum is relative to its terms, not to the (possibly cancelled) result.
* the coefficients of the next step are whatever floats were computed: the error of the
  transposed product is bounded by ``γ_K·|Lᵀ||A|`` and charged against ``max|h|`` of the value
  it multiplies, so the chain of inequalities holds exactly for the floats actually used.
* relaxation lines are checked where they can fail: for piecewise-linear activations (ReLU,
  LeakyReLU, Clip) ``f - line`` is piecewise linear, so the endpoints and kinks decide; any
  violation found there is added to the line's offset, plus a few ulps for the check itself.
  For Sigmoid/Tanh/Exp the lines' validity in the interior is the op's own claim; the checker
  adds a relative slack of 1e-12 (library functions are accurate to a few ulps).
* ``|underflow|``: each product loses at most 2⁻¹⁰⁷⁴; ``TINY = 1e-300`` per step covers any
  realistic number of terms. Each final bound is rounded one ulp outward with ``nextafter``.

The ops covered: every affine op, ReLU, LeakyReLU, Clip, Sigmoid, Tanh, Exp, MaxPool (the op's
own 2-D pooling lines, whose 0/1 coefficients are exact; other pooling by its interval), Mul and
Div (interval). Anything else raises :class:`NotCheckable`.
"""
from __future__ import annotations

import math

import torch

from verifier.evidence.check_primitives import (SAFETY, TINY, U, Box, InputSet, NotCheckable, gamma, magnitude,
                                                numel, round_down, round_up, rowdot)
from verifier.evidence.check_selftest import op_self_test
from verifier.ir.graph import Graph
from verifier.ops.base import Activation, Affine
from verifier.ops.nonlinear import maxpool_crown_step, maxpool_has_crown_step

PIECEWISE_KINKS = {"Relu": "zero", "LeakyRelu": "zero", "Clip": "clip"}
SMOOTH = ("Sigmoid", "Tanh", "Exp")
INTERVAL_REL = {"Relu": 0.0, "LeakyRelu": 2 * U, "Clip": 0.0, "MaxPool": 0.0, "Mul": 4 * U, "Div": 16 * U,
                "Sigmoid": 1e-12, "Tanh": 1e-12, "Exp": 1e-12}
LINE_REL = {"Relu": 16 * U, "LeakyRelu": 16 * U, "Clip": 16 * U, "Sigmoid": 1e-12, "Tanh": 1e-12, "Exp": 1e-12}
ELEMENT_BUDGET = 1 << 24      # elements of one coefficient tensor (memory cap)


class SoundBounds:
    """Interval bounds, CROWN intermediate bounds and CROWN bounds of ``C·y`` with outward
    rounding on a float64 CPU copy of ``graph``."""

    def __init__(self, graph: Graph):
        self.g = graph.to(device="cpu", dtype=torch.float64)
        bad = sorted({n.op for n in self.g.nodes if not isinstance(self.g.ops[n.name], Affine)
                      and n.op not in INTERVAL_REL})
        if bad:
            raise NotCheckable(f"op(s) not covered by the independent checker: {', '.join(bad)}")
        longest = max([self._longest_sum(n) for n in self.g.nodes] + [self.g.n_inputs])
        self.gamma = gamma(longest + 2 * len(self.g.nodes) + 16)
        self.needs = self._nonlinear_inputs()
        self.input_affine = self._affine_of_input()
        self.offsets = {}
        for n in self.g.nodes:
            op = self.g.ops[n.name]
            if isinstance(op, Affine):
                shapes = [self.g.shape_of(i) for i in n.inputs]
                self.offsets[n.name] = op.offset(torch.float64, torch.device("cpu"), shapes).abs()

    def _longest_sum(self, node) -> int:
        sizes = [numel(self.g.shape_of(i)) for i in node.inputs] + [numel(node.out_shape)]
        for p in node.params.values():
            sizes.append(max(p.shape) if p.dim() == 2 else p.numel())
        return max(sizes) + 4

    def _nonlinear_inputs(self) -> dict[str, bool]:
        """Affine values feeding a non-affine op → whether every such consumer is ReLU-like."""
        out: dict[str, bool] = {}
        for node in self.g.nodes:
            if isinstance(self.g.ops[node.name], Affine):
                continue
            for name in node.inputs:
                if name != self.g.input_name and isinstance(self.g.ops[name], Affine):
                    out[name] = out.get(name, True) and node.op in ("Relu", "LeakyRelu")
        return out

    def _affine_of_input(self) -> set[str]:
        """Values whose interval bounds over an input box are already exact, so CROWN cannot
        tighten them: one affine op on the input, followed only by ops that move or scale
        single elements (Scale, Reshape, Transpose, Select, Pad, Concat)."""
        out = {self.g.input_name}
        for node in self.g.nodes:
            if not isinstance(self.g.ops[node.name], Affine):
                continue
            first = node.inputs == (self.g.input_name,)
            moves = node.op in ("Scale", "Reshape", "Transpose", "Select", "Pad", "Concat")
            if first or (moves and all(i in out for i in node.inputs)):
                out.add(node.name)
        return out

    # ---- self test --------------------------------------------------------------------------
    def self_test(self, seed: int = 0) -> list[str]:
        """Names of affine nodes whose ``backward`` is not the transpose of their ``linear``
        map, whose ``abs_linear`` does not dominate it, or whose bias term is wrong, and of
        max-pooling nodes whose lines fail at sampled points (random probes,
        :func:`~verifier.evidence.check_selftest.op_self_test`)."""
        return op_self_test(self.g, seed)

    # ---- interval bounds --------------------------------------------------------------------
    def _affine_interval(self, node, op: Affine, boxes: list[Box]) -> Box:
        centers, radii, mags = [], [], []
        for lo, hi in boxes:
            c = (lo + hi) / 2
            r = torch.maximum(hi - c, c - lo) * (1 + 4 * U) + TINY
            centers.append(c)
            radii.append(r)
            mags.append(c.abs() + r)
        fc, rr = op.forward(*centers), op.abs_linear(*radii)
        w = (self.gamma + 2 * U) * SAFETY * (op.abs_linear(*mags) + self.offsets[node.name]) + TINY
        lo, hi = round_down(fc - rr - w), round_up(fc + rr + w)
        return torch.nan_to_num(lo, nan=-math.inf), torch.nan_to_num(hi, nan=math.inf)

    def _node_interval(self, node, bounds: dict[str, Box]) -> Box:
        op = self.g.ops[node.name]
        boxes = [bounds[i] for i in node.inputs]
        if isinstance(op, Affine):
            return self._affine_interval(node, op, boxes)
        lo, hi = op.interval(*boxes)
        rel = INTERVAL_REL[node.op]
        return round_down(lo - rel * lo.abs() - TINY), round_up(hi + rel * hi.abs() + TINY)

    def interval(self, inputs: InputSet) -> dict[str, Box]:
        """Interval bounds of every value: name → ``(lo, hi)`` ``(B, *shape)``."""
        return self.intermediate(inputs, crown=False)

    def intermediate(self, inputs: InputSet, crown: bool = True, fixed: dict[str, Box] | None = None,
                     layers: dict | None = None) -> dict[str, Box]:
        """Interval bounds of every value, intersected with ``fixed`` (valid bounds known from a
        larger domain, ``(B, *shape)``) and tightened by CROWN at every affine value that feeds
        a nonlinear op (only unstable neurons when all consumers are ReLU-like), then, for the
        values in ``layers`` (name → ``(rows (r,), {activation: slopes (2r, *shape)})``), by
        CROWN with those slopes on those neurons (any slopes give valid bounds)."""
        bounds: dict[str, Box] = {self.g.input_name: (inputs.lower, inputs.upper)}
        for node in self.g.nodes:
            lo, hi = self._node_interval(node, bounds)
            if fixed is not None and node.name in fixed:
                lo, hi = torch.maximum(lo, fixed[node.name][0]), torch.minimum(hi, fixed[node.name][1])
            exact = node.name in self.input_affine and inputs.center is None
            if crown and node.name in self.needs and not exact:
                lo, hi = self._tighten(node.name, lo, hi, bounds, inputs)
                if layers and node.name in layers:
                    lo, hi = self._tighten_with_slopes(node.name, lo, hi, bounds, inputs, *layers[node.name])
            bounds[node.name] = (lo, hi)
        return bounds

    def _tighten_with_slopes(self, name: str, lo, hi, bounds, inputs: InputSet, rows, slopes: dict) -> Box:
        """Intersect ``lo, hi`` ``(B, *shape)`` with CROWN bounds of the neurons ``rows`` (flat,
        ``(r,)``) computed with the given slopes ``(2r, *shape_j)`` (rows ``< r``: lower bounds)."""
        B = lo.shape[0]
        flo, fhi = lo.reshape(B, -1).clone(), hi.reshape(B, -1).clone()
        idx = torch.as_tensor(rows, dtype=torch.long)
        r = idx.numel()
        unit = torch.zeros(r, flo.shape[1], dtype=torch.float64)
        unit[torch.arange(r), idx] = 1.0
        A0 = torch.cat([unit, -unit]).reshape(1, 2 * r, *lo.shape[1:]).expand(B, -1, *lo.shape[1:])
        alphas = {k: torch.as_tensor(a, dtype=torch.float64).unsqueeze(0).expand(B, *a.shape)
                  for k, a in slopes.items()}
        both = self.backward(name, A0, bounds, inputs, alphas)
        flo[:, idx] = torch.maximum(flo[:, idx], both[:, :r])
        fhi[:, idx] = torch.minimum(fhi[:, idx], -both[:, r:])
        return flo.reshape(lo.shape), fhi.reshape(hi.shape)

    def _tighten(self, name: str, lo, hi, bounds, inputs: InputSet) -> Box:
        B = lo.shape[0]
        flo, fhi = lo.reshape(B, -1), hi.reshape(B, -1)
        n = flo.shape[1]
        wanted = (flo < 0) & (fhi > 0) if self.needs[name] else torch.ones_like(flo, dtype=torch.bool)
        counts = wanted.sum(1)
        r_max = int(counts.max()) if B else 0
        order = torch.argsort(wanted.to(torch.int8), dim=1, descending=True, stable=True)
        step = max(1, ELEMENT_BUDGET // max(1, 2 * B * max(n, self.g.n_inputs)))
        new_lo, new_hi = flo.clone(), fhi.clone()
        for start in range(0, r_max, step):
            idx = order[:, start:min(r_max, start + step)]
            r = idx.shape[1]
            valid = torch.arange(start, start + r).unsqueeze(0) < counts.unsqueeze(1)
            unit = torch.zeros(B, r, n, dtype=torch.float64)
            unit.scatter_(2, idx.unsqueeze(-1), valid.unsqueeze(-1).to(torch.float64))
            A0 = torch.cat([unit, -unit], dim=1).reshape(B, 2 * r, *lo.shape[1:])
            both = self.backward(name, A0, bounds, inputs)
            lb, ub = both[:, :r], -both[:, r:]
            cur_lo, cur_hi = new_lo.gather(1, idx), new_hi.gather(1, idx)
            new_lo.scatter_(1, idx, torch.where(valid, torch.maximum(cur_lo, lb), cur_lo))
            new_hi.scatter_(1, idx, torch.where(valid, torch.minimum(cur_hi, ub), cur_hi))
        return new_lo.reshape(lo.shape), new_hi.reshape(hi.shape)

    # ---- linear bounds ----------------------------------------------------------------------
    def rows_lower(self, C: torch.Tensor, bounds: dict[str, Box], inputs: InputSet,
                   alphas: dict[str, torch.Tensor] | None = None,
                   extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Sound lower bounds of ``C·y`` (``C`` ``(B, R, n_outputs)``) → ``(B, R)``.

        ``alphas``: activation name → slopes ``(B, R, *shape)``; ``extra``: value name →
        coefficients ``(B, R, *shape)`` added there (β·s of split neurons)."""
        B, R = C.shape[:2]
        return self.backward(self.g.output_name, C.reshape(B, R, *self.g.output_full_shape), bounds,
                             inputs, alphas, extra)

    def interval_rows_lower(self, C: torch.Tensor, bounds: dict[str, Box]) -> torch.Tensor:
        """Sound lower bounds of ``C·y`` from the output's interval box alone → ``(B, R)``."""
        lo, hi = bounds[self.g.output_name]
        B = lo.shape[0]
        box = (lo.reshape(B, -1), hi.reshape(B, -1))
        val = rowdot(C.clamp(min=0), box[0]) + rowdot(C.clamp(max=0), box[1])
        err = self.gamma * SAFETY * rowdot(C.abs(), magnitude(box)) + TINY
        return round_down(val - err - 2 * U * val.abs())

    def combined_rows_lower(self, C: torch.Tensor, M: torch.Tensor, bounds: dict[str, Box], inputs: InputSet,
                            alphas: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Sound lower bounds ``(B, K)`` of ``Σ_r M[:, k, r]·L_r(x)`` where ``L_r`` is row ``r``'s
        linear lower bound of ``C·y`` (``C`` ``(B, R, n_outputs)``, weights ``M`` ``(B, K, R)`` >= 0)."""
        B, R = C.shape[:2]
        return self.backward(self.g.output_name, C.reshape(B, R, *self.g.output_full_shape), bounds, inputs,
                             alphas, None, combine=M)

    def backward(self, start: str, A0: torch.Tensor, bounds: dict[str, Box], inputs: InputSet,
                 alphas: dict | None = None, extra: dict | None = None,
                 combine: torch.Tensor | None = None) -> torch.Tensor:
        """Sound lower bound of ``A0 · value(start)`` over the inputs: ``(B, R)``; with ``combine``
        ``(B, K, R)`` (>= 0), of the combinations of the rows' linear bounds: ``(B, K)``."""
        pending: dict[str, torch.Tensor] = {start: A0}
        const = A0.new_zeros(A0.shape[:2])
        mags = A0.new_zeros(A0.shape[:2])
        for node in self._ancestors(start):
            A = pending.pop(node.name, None)
            if extra and node.name in extra:
                if A is not None:
                    mags = mags + rowdot(A.abs() + extra[node.name].abs(), magnitude(bounds[node.name]))
                A = extra[node.name] if A is None else A + extra[node.name]
            if A is None:
                continue
            op = self.g.ops[node.name]
            if isinstance(op, Affine):
                c, m = self._affine_step(node, op, A, bounds, pending)
            elif isinstance(op, Activation):
                c, m = self._activation_step(node, op, A, bounds, alphas, pending)
            elif node.op == "MaxPool" and maxpool_has_crown_step(op):
                c, m = self._maxpool_step(node, op, A, bounds, pending)
            else:
                c, m = self._cut(A, bounds[node.name])
            const, mags = const + c, mags + m
        if combine is not None:
            return self._combined(combine, pending, const, mags, inputs, bounds)
        A_x = pending.pop(self.g.input_name, None)
        if A_x is not None:
            c, m = self._concretize(A_x, inputs)
            const, mags = const + c, mags + m
        for name, A in pending.items():  # values with no path to the input
            c, m = self._cut(A, bounds[name])
            const, mags = const + c, mags + m
        err = self.gamma * SAFETY * mags + 2 * U * const.abs() + TINY * (len(self.g.nodes) + 2)
        return round_down(torch.nan_to_num(const - err, nan=-math.inf))

    def _combined(self, M: torch.Tensor, pending: dict, const, mags, inputs: InputSet, bounds) -> torch.Tensor:
        """The end of :meth:`backward` for row combinations: the coefficients still pending are
        mixed by ``M`` before the minimum over their sets; every row's own rounding terms are
        charged with their weights, and the mixing's rounding on top."""
        mix = lambda t: torch.einsum("bkr,br...->bk...", M, t)  # noqa: E731
        total, mag, rows_abs = mix(const), mix(mags), mix(const.abs())
        for name, A in pending.items():
            where = None if name == self.g.input_name else bounds[name]
            c, m = self._concretize(mix(A), inputs) if where is None else self._cut(mix(A), where)
            _, m_rows = self._concretize(A, inputs) if where is None else self._cut(A, where)
            total, mag = total + c, mag + m + mix(m_rows)
        err = (self.gamma * SAFETY * mag + 2 * U * total.abs() + (M.shape[-1] + 2) * 2 * U * rows_abs
               + TINY * (len(self.g.nodes) + 2) * (1 + M.sum(-1)))
        return round_down(torch.nan_to_num(total - err, nan=-math.inf))

    def _ancestors(self, start: str) -> list:
        needed, out = {start}, []
        for node in reversed(self.g.nodes):
            if node.name in needed:
                out.append(node)
                needed.update(node.inputs)
        return out

    def _accumulate(self, pending: dict, name: str, A: torch.Tensor, bounds) -> torch.Tensor:
        """Add ``A`` to the coefficients pending at ``name``; returns the magnitude of the sum's
        rounding error charge ``(B, R)``."""
        if name not in pending:
            pending[name] = A
            return A.new_zeros(A.shape[:2])
        old = pending[name]
        pending[name] = old + A
        return rowdot(old.abs() + A.abs(), magnitude(bounds[name]))

    def _affine_step(self, node, op: Affine, A, bounds, pending):
        shapes = [self.g.shape_of(i) for i in node.inputs]
        A_ins, bias = op.backward(A, shapes)
        reach = op.abs_linear(*[magnitude(bounds[i]) for i in node.inputs]) + self.offsets[node.name]
        mag = rowdot(A.abs(), reach)
        for name, A_in in zip(node.inputs, A_ins):
            mag = mag + self._accumulate(pending, name, A_in, bounds)
        return bias, mag

    def _activation_step(self, node, op: Activation, A, bounds, alphas, pending):
        lo, hi = (t.unsqueeze(1) for t in bounds[node.inputs[0]])
        alpha = alphas.get(node.name) if alphas else None
        lw, lb, uw, ub = self.safe_lines(node.op, op, lo, hi, alpha)
        A_neg = A.clamp(max=0)
        A_in = A * lw + A_neg * (uw - lw)
        c = rowdot(A_neg, ub - lb) + rowdot(A, lb)
        M = torch.maximum(lo.abs(), hi.abs())
        mag = rowdot(A.abs(), (2 * lw.abs() + uw.abs()) * M + ub.abs() + 2 * lb.abs())
        mag = mag + self._accumulate(pending, node.inputs[0], A_in, bounds)
        return c, mag

    def _maxpool_step(self, node, op, A, bounds, pending):
        """The op's own max-pooling lines (``y >= x_j``; ``y <= max u`` or ``y = x_j`` when decided
        by the bounds): exact 0/1 coefficients, so only the sums are charged."""
        lo, hi = bounds[node.inputs[0]]
        A_in, c = maxpool_crown_step(op, A, lo, hi)
        mag = rowdot(A.abs(), op.forward(magnitude((lo, hi))) + op.forward(hi).abs())
        return c, mag + self._accumulate(pending, node.inputs[0], A_in, bounds)

    def safe_lines(self, kind: str, op: Activation, lo, hi, alpha):
        """``op.relax`` lines, shifted outward by any violation found at the endpoints and kinks
        of ``[lo, hi]`` and by a few ulps of slack (see the module docstring)."""
        lw, lb, uw, ub = op.relax(lo, hi, None if alpha is None else alpha.clamp(0.0, 1.0))
        points = [lo, hi]
        if PIECEWISE_KINKS.get(kind) == "zero":
            points.append(torch.minimum(torch.maximum(torch.zeros_like(lo), lo), hi))
        elif kind == "Clip":
            for v in (op.attrs["min"], op.attrs["max"]):
                if math.isfinite(v):
                    points.append(torch.minimum(torch.maximum(torch.full_like(lo, v), lo), hi))
        else:
            points.append((lo + hi) / 2)
        low_viol = up_viol = torch.zeros_like(lw)
        f_mag = torch.zeros_like(lo)
        for p in points:
            fp = op.forward(p)
            low_viol = torch.maximum(low_viol, lw * p + lb - fp)
            up_viol = torch.maximum(up_viol, fp - uw * p - ub)
            f_mag = torch.maximum(f_mag, fp.abs())
        M = torch.maximum(lo.abs(), hi.abs())
        slack = LINE_REL[kind] * (lw.abs() * M + lb.abs() + uw.abs() * M + ub.abs() + f_mag) + TINY
        return lw, lb - low_viol - slack, uw, ub + up_viol + slack

    def _cut(self, A, box: Box):
        """Minimum of ``A·v`` over ``v``'s box, and its magnitude."""
        return rowdot(A.clamp(min=0), box[0]) + rowdot(A.clamp(max=0), box[1]), rowdot(A.abs(), magnitude(box))

    def _concretize(self, A_x, inputs: InputSet):
        """Minimum of ``A_x·x`` over the input set (box, and ball when given) and its magnitude;
        the ball's norm rounding is charged to its own term."""
        val, mag = self._cut(A_x, (inputs.lower, inputs.upper))
        if inputs.center is None:
            return val, mag
        B, R = A_x.shape[:2]
        Af = A_x.reshape(B, R, -1)
        norm = Af.norm(dim=2)
        ball = torch.einsum("brn,bn->br", Af, inputs.center) - norm * inputs.radius
        ball_mag = torch.einsum("brn,bn->br", Af.abs(), inputs.center.abs()) + norm * inputs.radius
        use_ball = ball - self.gamma * ball_mag > val - self.gamma * mag
        return torch.where(use_ball, ball, val), torch.where(use_ball, ball_mag, mag)
