"""Elementwise activations: forward, interval and relaxation lines in one place each.

``relax(lo, hi, alpha)`` returns ``(lw, lb, uw, ub)`` with ``lw·x + lb <= f(x) <= uw·x + ub``
for every ``x`` in ``[lo, hi]`` (elementwise; all tensors shaped like ``lo``).
"""
from __future__ import annotations

import math

import torch

from verifier.ops.base import Activation, register

_TINY = 1e-7  # widths below this are bounded by constants (slopes 0)


def _chord(f, lo, hi):
    """Slope and intercept of the chord of ``f`` between ``lo`` and ``hi`` (widths > 0)."""
    width = (hi - lo).clamp_min(_TINY)
    k = (f(hi) - f(lo)) / width
    return k, f(lo) - k * lo


def _constant_lines(flo, fhi):
    """Lines with slope 0 at the bounds ``[flo, fhi]`` of the function's range."""
    z = torch.zeros_like(flo)
    return z, flo, z.clone(), fhi


def _piecewise_linear_relu(lo, hi, alpha, neg_slope: float):
    """Relaxation of ``max(x, neg_slope·x)`` (ReLU when 0, LeakyReLU otherwise).

    Stable neurons get the exact line (slope 1 or ``neg_slope``); unstable ones the chord
    through ``(lo, s·lo)`` and ``(hi, hi)`` above and slope ``s + (1 - s)·alpha`` below;
    unstable ones narrower than ``_TINY`` the constant ``max(hi, 0)`` above (a chord that steep
    cannot be trusted) and ``neg_slope`` below. For ReLU (``s = 0``) the terms that vanish are
    skipped: this runs on every CROWN pass.
    """
    s = neg_slope
    active = lo >= 0
    width = hi - lo
    unstable = (hi > 0) & ~active
    wide = unstable & (width >= _TINY)
    stable_k = active.to(lo.dtype)
    if alpha is None:
        alpha = (hi >= -lo).to(lo.dtype)
    alpha = alpha.clamp(0, 1)
    if s:
        stable_k = s + (1 - s) * stable_k
        alpha = s + (1 - s) * alpha
        chord = (hi - s * lo) / width.clamp_min(_TINY)
        above_k = torch.where(unstable, 0.0, stable_k)    # narrow unstable: slope 0 above
    else:
        chord = hi / width.clamp_min(_TINY)
        above_k = stable_k                                # already 0 wherever not active
    lw = torch.where(wide, alpha, stable_k)
    uw = torch.where(wide, chord, above_k)
    ub = torch.where(wide, (s - chord) * lo, torch.where(active, 0.0, hi.clamp(min=0)))
    return lw, torch.zeros_like(lo), uw, ub


@register("Relu")
class Relu(Activation):
    dead_for_every_alpha = True  # inactive neurons (hi <= 0) get slope 0 whatever alpha says
    zero_lower_intercept = True

    def live_mask(self, lo, hi):
        return hi > 0   # inactive neurons (hi <= 0) have all four coefficients zero

    def fn(self, x):
        return torch.relu(x)

    def relax(self, lo, hi, alpha=None):
        return _piecewise_linear_relu(lo, hi, alpha, 0.0)

    def alpha_shape_ok(self) -> bool:
        return True


@register("LeakyRelu")
class LeakyRelu(Activation):
    """``max(x, a·x)`` with attr ``alpha`` (``a``) in [0, 1]."""

    zero_lower_intercept = True

    def fn(self, x):
        return torch.where(x >= 0, x, self.attrs["alpha"] * x)

    def relax(self, lo, hi, alpha=None):
        return _piecewise_linear_relu(lo, hi, alpha, float(self.attrs["alpha"]))

    def alpha_shape_ok(self) -> bool:
        return True


class _SShaped(Activation):
    """Sigmoid-like: increasing, convex below 0 and concave above 0, derivative peaked at 0."""

    def deriv(self, x):
        raise AssertionError("subclasses define deriv")

    def relax(self, lo, hi, alpha=None):
        t = 0.5 if alpha is None else alpha.clamp(0, 1)
        f, d = self.fn, self.deriv
        k_chord, b_chord = _chord(f, lo, hi)
        tan_pt = lo + t * (hi - lo)
        k_tan = d(tan_pt)
        b_tan = f(tan_pt) - k_tan * tan_pt
        k_mix = torch.minimum(d(lo), d(hi))  # slope no larger than f' anywhere on [lo, hi]
        convex, concave = hi <= 0, lo >= 0
        lw = torch.where(convex, k_tan, torch.where(concave, k_chord, k_mix))
        lb = torch.where(convex, b_tan, torch.where(concave, b_chord, f(lo) - k_mix * lo))
        uw = torch.where(convex, k_chord, torch.where(concave, k_tan, k_mix))
        ub = torch.where(convex, b_chord, torch.where(concave, b_tan, f(hi) - k_mix * hi))
        return _guard_narrow(lo, hi, f, (lw, lb, uw, ub))

    def alpha_shape_ok(self) -> bool:
        return True


def _guard_narrow(lo, hi, f, lines):
    """Replace lines by constants where the interval is too narrow for stable slopes."""
    narrow = (hi - lo) < _TINY
    if not torch.any(narrow):
        return lines
    cl = _constant_lines(f(lo), f(hi))
    return tuple(torch.where(narrow, c, l) for c, l in zip(cl, lines))


@register("Sigmoid")
class Sigmoid(_SShaped):
    def fn(self, x):
        return torch.sigmoid(x)

    def deriv(self, x):
        s = torch.sigmoid(x)
        return s * (1 - s)


@register("Tanh")
class Tanh(_SShaped):
    def fn(self, x):
        return torch.tanh(x)

    def deriv(self, x):
        return 1 - torch.tanh(x) ** 2


@register("Exp")
class Exp(Activation):
    """Convex: chord above, tangent below (at the point selected by ``alpha``)."""

    def fn(self, x):
        return torch.exp(x)

    def relax(self, lo, hi, alpha=None):
        t = 0.5 if alpha is None else alpha.clamp(0, 1)
        k_chord, b_chord = _chord(torch.exp, lo, hi)
        pt = lo + t * (hi - lo)
        k_tan = torch.exp(pt)
        return _guard_narrow(lo, hi, torch.exp, (k_tan, k_tan * (1 - pt), k_chord, b_chord))

    def alpha_shape_ok(self) -> bool:
        return True


class _Periodic(Activation):
    """Sine-like with ``|f''| <= 1``: Taylor lines at the midpoint, or constants if tighter."""

    phase = 0.0  # f(x) = sin(x + phase)

    def fn(self, x):
        return torch.sin(x + self.phase)

    def interval(self, box):
        lo, hi = box
        flo, fhi = self.fn(lo), self.fn(hi)
        low, high = torch.minimum(flo, fhi), torch.maximum(flo, fhi)
        # the maximum 1 is attained at x + phase = pi/2 + 2k·pi; the minimum -1 at -pi/2 + 2k·pi
        has_max = _contains_point(lo + self.phase, hi + self.phase, math.pi / 2)
        has_min = _contains_point(lo + self.phase, hi + self.phase, -math.pi / 2)
        return torch.where(has_min, -torch.ones_like(lo), low), torch.where(has_max, torch.ones_like(hi), high)

    def relax(self, lo, hi, alpha=None):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        k = torch.cos(c + self.phase)
        b = self.fn(c) - k * c
        gap = r * r / 2
        flo, fhi = self.interval((lo, hi))
        use_const = 2 * gap >= (fhi - flo)
        taylor = (k, b - gap, k, b + gap)
        return tuple(torch.where(use_const, cl, t) for cl, t in zip(_constant_lines(flo, fhi), taylor))


def _contains_point(lo, hi, point: float):
    """Whether ``[lo, hi]`` contains ``point + 2k·pi`` for some integer k."""
    two_pi = 2 * math.pi
    k = torch.ceil((lo - point) / two_pi)
    return point + k * two_pi <= hi


@register("Sin")
class Sin(_Periodic):
    phase = 0.0


@register("Cos")
class Cos(_Periodic):
    phase = math.pi / 2


@register("Clip")
class Clip(Activation):
    """``min(max(x, lo_c), hi_c)``; attrs ``min``/``max`` (floats, ±inf when absent)."""

    def fn(self, x):
        return torch.clamp(x, self.attrs["min"], self.attrs["max"])

    def relax(self, lo, hi, alpha=None):
        cmin, cmax = self.attrs["min"], self.attrs["max"]
        flo, fhi = self.fn(lo), self.fn(hi)
        lw, lb, uw, ub = _constant_lines(flo, fhi)
        one, zero = torch.ones_like(lo), torch.zeros_like(lo)
        inside = (lo >= cmin) & (hi <= cmax)
        lw, lb, uw, ub = (torch.where(inside, a, b) for a, b in ((one, lw), (zero, lb), (one, uw), (zero, ub)))
        below = (lo < cmin) & (hi > cmin) & (hi <= cmax)  # cmin + relu(x - cmin)
        rl = _piecewise_linear_relu(lo - cmin, hi - cmin, alpha, 0.0)
        lw, uw = torch.where(below, rl[0], lw), torch.where(below, rl[2], uw)
        lb = torch.where(below, cmin - rl[0] * cmin, lb)
        ub = torch.where(below, rl[3] + cmin - rl[2] * cmin, ub)
        above = (lo >= cmin) & (lo < cmax) & (hi > cmax)  # cmax - relu(cmax - x)
        ra = _piecewise_linear_relu(cmax - hi, cmax - lo, None if alpha is None else 1 - alpha, 0.0)
        lw, uw = torch.where(above, ra[2], lw), torch.where(above, ra[0], uw)
        lb = torch.where(above, cmax - ra[3] - ra[2] * cmax, lb)
        ub = torch.where(above, cmax - ra[0] * cmax, ub)
        return lw, lb, uw, ub
