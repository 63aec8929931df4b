"""A Graph as sparse linear rows, node by node (LP relaxation or exact MILP).

:func:`encode_graph` walks the graph in order; every value is an affine expression of solver
variables (flat, row-major ONNX order) and carries pre-computed bounds (float64 numpy arrays,
one entry per element):

- affine ops (Linear, Conv, ConvTranspose, Scale, Add, Reduce, Reshape, Transpose, Select,
  Concat, Pad): exactly, ``y = sum_i M_i x_i + f(0)`` with ``M_i`` the sparse matrix of the
  op's linear map, composed into an affine expression of earlier variables (:class:`Expr`);
  a value gets variables of its own (with its bounds) only where a nonlinear op reads it;
- Relu / LeakyRelu: stable neurons exactly; unstable ones by the triangle (LP) or big-M with
  one binary each (MILP);
- MaxPool: exactly with one binary per window element (MILP), by the relaxation of that
  formulation plus a sum cut (LP).

Any other op is reported as not encodable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from verifier.errors import UnsupportedError
from verifier.ir.graph import Graph, Node
from verifier.ops.activations import LeakyRelu, Relu
from verifier.ops.base import Affine, Op
from verifier.ops.nonlinear import MaxPool

Bounds = tuple[np.ndarray, np.ndarray]  # flat (lower, upper), float64
_CHUNK_ELEMENTS = 1 << 22  # identity-batch size cap when extracting a linear map
WIDEN = 1e-8  # relative + absolute widening of float64 bounds before they become constraints


def encodable(op: Op) -> bool:
    """Whether :func:`encode_graph` handles this op."""
    return isinstance(op, (Affine, Relu, LeakyRelu, MaxPool))


def check_encodable(graph: Graph) -> None:
    """Raise :class:`UnsupportedError` naming the first op that has no LP/MILP encoding."""
    for node in graph.nodes:
        if not encodable(graph.ops[node.name]):
            raise UnsupportedError(f"not encodable: op {node.op} at node {node.name} (LP/MILP encode "
                                   "affine ops, Relu, LeakyRelu and MaxPool)", path=graph.onnx_path,
                                   where=node.source or node.name)


def encode_nonlinear(rows, graph: Graph, node: Node, x: np.ndarray, x_bounds: Bounds,
                     exact: bool) -> np.ndarray:
    """Rows for a Relu, LeakyRelu or MaxPool node on input variables ``x``; returns the
    variable indices of its output, shape ``(numel,)``.

    ``rows`` is a :class:`verifier.engines.lp_encode.SystemBuilder`.
    """
    op = graph.ops[node.name]
    if isinstance(op, (Relu, LeakyRelu)):
        slope = float(op.attrs["alpha"]) if isinstance(op, LeakyRelu) else 0.0
        return encode_leaky_relu(rows, x, *x_bounds, slope, exact)
    if isinstance(op, MaxPool):
        return encode_maxpool(rows, x, *x_bounds, pool_windows(op, graph.shape_of(node.inputs[0])), exact)
    raise UnsupportedError(f"not encodable: op {node.op} at node {node.name}", path=graph.onnx_path)


@dataclass
class Expr:
    """Values as an affine expression ``M v[:M.shape[1]] + c`` of the first variables:
    ``M`` ``(k, n_at_creation)`` sparse, ``c`` ``(k,)``."""

    M: sp.csr_matrix
    c: np.ndarray

    @staticmethod
    def select(idx: np.ndarray, n: int) -> "Expr":
        """The variables ``v[idx]`` themselves."""
        k = len(idx)
        return Expr(sp.csr_matrix((np.ones(k), (np.arange(k), idx)), shape=(k, n)), np.zeros(k))

    def widened(self, n: int) -> sp.csr_matrix:
        """``M`` with zero columns appended up to ``n`` variables."""
        extra = n - self.M.shape[1]
        return self.M if extra == 0 else sp.hstack([self.M, sp.csr_matrix((self.M.shape[0], extra))]).tocsr()

    def picked(self) -> np.ndarray | None:
        """The variable of each row when the expression only picks variables, else None."""
        M = self.M
        if np.any(self.c != 0) or np.any(np.diff(M.indptr) != 1) or np.any(M.data != 1.0):
            return None
        return M.indices.copy()


@dataclass
class Encoding:
    """A graph's system under construction: the expression and the bounds of every value.

    Affine ops only compose expressions; a value becomes variables of its own (with its
    bounds) when a nonlinear op reads it (:meth:`variables`).
    """

    rows: object  # verifier.engines.lp_encode.SystemBuilder
    expr: dict[str, Expr]
    bounds: dict[str, Bounds]
    exact: bool

    def variables(self, name: str) -> np.ndarray:
        """Variable indices holding value ``name`` ``(numel,)``, made (``v = expr``) if needed."""
        e = self.expr[name]
        idx = e.picked()
        if idx is None:
            idx = self.rows.add_vars(*self.bounds[name])
            n = self.rows.n
            minus_one = -sp.identity(len(idx), format="csr")
            self.rows.add_sparse("eq", [(e.widened(n), np.arange(n)), (minus_one, idx)], -e.c)
            self.expr[name] = Expr.select(idx, n)
        return idx

    def tighten(self, name: str, lo: np.ndarray, hi: np.ndarray) -> None:
        """Intersect the bounds of value ``name`` (flat arrays) with ``[lo, hi]``."""
        old_lo, old_hi = self.bounds[name]
        new_lo = np.maximum(old_lo, lo)
        self.bounds[name] = (new_lo, np.maximum(np.minimum(old_hi, hi), new_lo))
        self.rows.restrict(self.variables(name), lo, hi)


def numpy_bounds(bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Bounds]:
    """Batch-of-one torch bounds → flat float64 arrays, widened by :data:`WIDEN`."""
    out = {}
    for name, (lo, hi) in bounds.items():
        lo = lo.detach().double().cpu().reshape(-1).numpy()
        hi = hi.detach().double().cpu().reshape(-1).numpy()
        out[name] = (lo - WIDEN * (1 + np.abs(lo)), hi + WIDEN * (1 + np.abs(hi)))
    return out


def encode_graph(graph: Graph, bounds: dict[str, Bounds], exact: bool, rows,
                 before: Callable[[Encoding, Node], None] | None = None) -> Encoding:
    """Encode every node of a float64 graph into ``rows`` (an empty
    :class:`verifier.engines.lp_encode.SystemBuilder`); ``bounds`` hold flat bounds of every
    value (the input's are the input box). ``before(encoding, node)`` runs before each
    nonlinear node, once its input has variables (e.g. to tighten their bounds). The graph
    input and output always have variables."""
    enc = Encoding(rows, {}, dict(bounds), exact)
    x = enc.rows.add_vars(*bounds[graph.input_name])
    enc.expr[graph.input_name] = Expr.select(x, enc.rows.n)
    for node in graph.nodes:
        missing = [i for i in node.inputs if i not in enc.expr]
        if missing:
            raise UnsupportedError(f"not encodable: value {missing[0]} feeding node {node.name} has no "
                                   "variables", path=graph.onnx_path)
        op = graph.ops[node.name]
        if isinstance(op, Affine):
            shapes = [graph.shape_of(i) for i in node.inputs]
            enc.expr[node.name] = affine_expr(op, shapes, [enc.expr[i] for i in node.inputs], enc.rows.n)
            continue
        x = enc.variables(node.inputs[0])
        if before is not None:
            before(enc, node)
        y = encode_nonlinear(enc.rows, graph, node, x, enc.bounds[node.inputs[0]], exact)
        enc.expr[node.name] = Expr.select(y, enc.rows.n)
    enc.variables(graph.output_name)
    return enc


def add_l2_outer(rows, x: np.ndarray, center: np.ndarray, radius: float) -> None:
    """A polyhedron containing the ball ``||x - center||_2 <= radius``: ``|x_j - c_j| <= radius``
    and ``||x - c||_1 <= sqrt(n)·radius`` (for solvers without second-order cones)."""
    n = len(x)
    rows.restrict(x, center - radius, center + radius)
    s = rows.add_vars(np.zeros(n), np.full(n, radius))
    rows.add_terms("le", [(x, 1.0), (s, -1.0)], center)
    rows.add_terms("le", [(x, -1.0), (s, -1.0)], -center)
    rows.add_sparse("le", [(sp.csr_matrix(np.ones((1, n))), s)], np.array([math.sqrt(n) * radius]))


# ---- affine ops ------------------------------------------------------------------------------
def affine_map(op: Affine, shapes: list[tuple[int, ...]]) -> tuple[list[sp.csr_matrix], np.ndarray]:
    """The exact map ``y = sum_i M_i x_i + offset`` of an affine op (run in float64).

    Returns one ``(n_out, n_in_i)`` sparse matrix per input and ``offset`` ``(n_out,)``; the
    matrices are read off by applying ``op.linear`` to batches of unit vectors.
    """
    kw = dict(dtype=torch.float64, device=torch.device("cpu"))
    offset = op.offset(kw["dtype"], kw["device"], shapes).reshape(-1)
    n_out = int(offset.numel())
    mats = []
    for i, shape in enumerate(shapes):
        n_in = math.prod(shape)
        chunk = max(1, _CHUNK_ELEMENTS // max(n_out, n_in, 1))
        blocks = []
        for start in range(0, n_in, chunk):
            m = min(chunk, n_in - start)
            unit = torch.zeros(m, n_in, **kw)
            unit[torch.arange(m), torch.arange(start, start + m)] = 1.0
            xs = [torch.zeros(m, *s, **kw) for s in shapes]
            xs[i] = unit.reshape(m, *shape)
            with torch.no_grad():
                out = op.linear(*xs).reshape(m, n_out)
            blocks.append(sp.csr_matrix(out.numpy()))
        mats.append(sp.vstack(blocks).T.tocsr())
    return mats, offset.numpy()


def affine_expr(op: Affine, shapes: list[tuple[int, ...]], ins: list[Expr], n: int) -> Expr:
    """The op's output as an expression of the first ``n`` variables (exact composition)."""
    mats, offset = affine_map(op, shapes)
    M = sum((m @ e.widened(n) for m, e in zip(mats, ins)), sp.csr_matrix((len(offset), n)))
    c = offset + sum(m @ e.c for m, e in zip(mats, ins))
    M = sp.csr_matrix(M)
    M.eliminate_zeros()
    return Expr(M, np.asarray(c, np.float64))


# ---- ReLU / LeakyReLU --------------------------------------------------------------------------
def encode_relu(rows, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, exact: bool) -> np.ndarray:
    """``y = max(x, 0)`` for bounds ``lo <= x <= hi``: stable neurons exactly; unstable ones by
    the triangle ``y >= 0, y >= x, y <= hi (x - lo) / (hi - lo)`` (LP) or by big-M with a
    binary ``d``: ``y <= x - lo (1 - d), y <= hi d`` (MILP)."""
    out = x.copy()
    dead = hi <= 0
    unstable = (lo < 0) & (hi > 0)
    if dead.any():
        out[dead] = rows.add_vars(np.zeros(int(dead.sum())), np.zeros(int(dead.sum())))
    if not unstable.any():
        return out
    xs, l, u = x[unstable], lo[unstable], hi[unstable]
    y = rows.add_vars(np.zeros_like(u), u)
    rows.add_terms("le", [(xs, 1.0), (y, -1.0)], np.zeros_like(u))          # y >= x
    if exact:
        d = rows.add_vars(np.zeros_like(u), np.ones_like(u), integer=True)
        rows.add_terms("le", [(y, 1.0), (xs, -1.0), (d, -l)], -l)           # y <= x - l (1 - d)
        rows.add_terms("le", [(y, 1.0), (d, -u)], np.zeros_like(u))         # y <= u d
    else:
        k = u / (u - l)
        rows.add_terms("le", [(y, 1.0), (xs, -k)], -k * l)                  # y <= k (x - l)
    out[unstable] = y
    return out


def encode_leaky_relu(rows, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, slope: float,
                      exact: bool) -> np.ndarray:
    """``y = x if x >= 0 else slope·x``, written ``slope·x + (1 - slope)·relu(x)`` (exact for any
    slope) on top of :func:`encode_relu`."""
    r = encode_relu(rows, x, lo, hi, exact)
    if slope == 0.0:
        return r
    out = x.copy()
    todo = lo < 0  # active neurons keep y = x
    if not todo.any():
        return out
    f = lambda v: np.where(v >= 0, v, slope * v)  # noqa: E731
    l, u = lo[todo], hi[todo]
    ends = np.stack([f(l), f(u), np.where((l < 0) & (u > 0), 0.0, f(l))])
    y = rows.add_vars(ends.min(0), ends.max(0))
    rows.add_terms("eq", [(y, 1.0), (x[todo], -slope), (r[todo], slope - 1.0)], np.zeros_like(l))
    out[todo] = y
    return out


# ---- MaxPool ---------------------------------------------------------------------------------
def pool_windows(op: MaxPool, in_shape: tuple[int, ...]) -> np.ndarray:
    """Flat input index of every window element, ``(n_out, prod(kernel))``; -1 for padding.

    Rows follow the row-major order of the op's output.
    """
    k, stride, dil = op.attrs["kernel"], op.attrs["stride"], op.attrs["dilation"]
    n_sp = len(k)
    idx = torch.arange(math.prod(in_shape), dtype=torch.float64).reshape(-1, *in_shape[-n_sp - 1:])
    if any(op.attrs["pads"]):
        idx = F.pad(idx, list(op.attrs["pads"]), value=-1.0)
    for i in range(n_sp):
        idx = idx.unfold(2 + i, (k[i] - 1) * dil[i] + 1, stride[i])[..., ::dil[i]]
    return idx.reshape(-1, math.prod(k)).long().numpy()


def encode_maxpool(rows, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, windows: np.ndarray,
                   exact: bool) -> np.ndarray:
    """``y_j = max_{i in W_j} x_i``: ``y_j >= x_i``, ``sum_i d_ji = 1`` and
    ``y_j <= x_i + (U_j - lo_i)(1 - d_ji)`` with ``U_j = max_i hi_i`` (binary ``d`` in the MILP,
    ``d`` in [0, 1] plus ``y_j <= max_i lo_i + sum_i (x_i - lo_i)`` in the LP). Elements with
    ``hi_i < max_k lo_k`` can never be the maximum and are left out."""
    valid = windows >= 0
    safe = np.where(valid, windows, 0)
    lw, hw = np.where(valid, lo[safe], -np.inf), np.where(valid, hi[safe], -np.inf)
    lmax, umax = lw.max(1), hw.max(1)
    cand = valid & (hw >= lmax[:, None])
    out = np.empty(len(windows), dtype=np.int64)
    single = cand.sum(1) == 1
    out[single] = x[safe[single, cand[single].argmax(1)]]
    multi = np.flatnonzero(~single)
    if multi.size == 0:
        return out
    y = rows.add_vars(lmax[multi], umax[multi])
    out[multi] = y
    j_loc, slot = np.nonzero(cand[multi])
    xi, li = x[safe[multi][j_loc, slot]], lw[multi][j_loc, slot]
    yj, big = y[j_loc], umax[multi][j_loc] - li
    rows.add_terms("le", [(xi, 1.0), (yj, -1.0)], np.zeros_like(li))                 # y >= x_i
    d = rows.add_vars(np.zeros_like(li), np.ones_like(li), integer=exact)
    rows.add_sparse("eq", [(_group_matrix(j_loc, len(multi)), d)], np.ones(len(multi)))  # sum d = 1
    rows.add_terms("le", [(yj, 1.0), (xi, -1.0), (d, big)], big)                     # y <= x_i + big(1-d)
    if not exact:
        G = _group_matrix(j_loc, len(multi))
        rows.add_sparse("le", [(sp.identity(len(multi), format="csr"), y), (-G, xi)],
                        lmax[multi] - G @ li)                                        # sum cut
    return out


def _group_matrix(group: np.ndarray, n_groups: int) -> sp.csr_matrix:
    """``(n_groups, len(group))`` 0/1 matrix summing the entries of each group."""
    return sp.csr_matrix((np.ones(len(group)), (group, np.arange(len(group)))),
                         shape=(n_groups, len(group)))
