"""The graph IR: immutable nodes of canonical ops, evaluated on a leading batch axis.

Every value in a :class:`Graph` is a tensor of shape ``(N, *shape)`` where ``shape`` is the
value's full static ONNX shape (its ONNX batch dimension, if any, fixed to 1) and ``N`` is the
batch of inputs being evaluated. ONNX axis ``a`` is therefore internal axis ``a + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch


@dataclass(frozen=True, eq=False)
class Node:
    """One canonical operation.

    ``name`` is the name of the value it produces; ``inputs`` name graph inputs or earlier
    nodes; ``params`` are constant tensors (float64 on CPU as imported, converted by
    :meth:`Graph.to`); ``out_shape`` is the static per-sample ONNX shape of the output;
    ``source`` names the ONNX node it came from, for messages.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, torch.Tensor] = field(default_factory=dict)
    out_shape: tuple[int, ...] = ()
    source: str = ""


class Graph:
    """An immutable DAG of :class:`Node` in topological order with one input and one output.

    Calling the graph evaluates it: ``graph(x)`` with ``x`` of shape
    ``(N, *graph.input_shape)`` returns ``(N, *graph.output_shape)``.
    ``input_shape``/``output_shape`` are the ONNX shapes without the ONNX batch dimension
    (models whose input has rank 1 have no batch dimension and keep their full shape).
    """

    def __init__(self, nodes: tuple[Node, ...], input_name: str, input_full_shape: tuple[int, ...],
                 output_name: str, batched: bool, onnx_path: str | None = None,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        from verifier.ops import make_op

        self.nodes = tuple(nodes)
        self.input_name = input_name
        self.input_full_shape = tuple(input_full_shape)
        self.output_name = output_name
        self.batched = batched
        self.onnx_path = onnx_path
        self.dtype = dtype
        self.device = torch.device(device)
        self.ops = {n.name: make_op(n, dtype, self.device) for n in self.nodes}
        self.node_by_name = {n.name: n for n in self.nodes}

    # ---- shapes -------------------------------------------------------------------------
    @property
    def output_full_shape(self) -> tuple[int, ...]:
        return self.shape_of(self.output_name)

    def shape_of(self, value: str) -> tuple[int, ...]:
        """Full per-sample ONNX shape of a value (graph input or node output)."""
        if value == self.input_name:
            return self.input_full_shape
        return self.node_by_name[value].out_shape

    def _sample(self, full: tuple[int, ...]) -> tuple[int, ...]:
        return full[1:] if self.batched else full

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._sample(self.input_full_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._sample(self.output_full_shape)

    @property
    def n_inputs(self) -> int:
        return _numel(self.input_full_shape)

    @property
    def n_outputs(self) -> int:
        return _numel(self.output_full_shape)

    def ancestors_in_reverse(self, start: str) -> list[Node]:
        """``start``'s node and every node it depends on, in reverse topological order."""
        needed, out = {start}, []
        for node in reversed(self.nodes):
            if node.name in needed:
                out.append(node)
                needed.update(node.inputs)
        return out

    def n_params(self) -> int:
        return sum(int(p.numel()) for n in self.nodes for p in n.params.values())

    # ---- evaluation ---------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate on ``x`` of shape ``(N, *input_shape)`` → ``(N, *output_shape)``."""
        n = x.shape[0]
        out = self.forward_flat(x.reshape(n, -1))
        return out.reshape(n, *self.output_shape)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate on flat inputs ``(N, n_inputs)`` → flat outputs ``(N, n_outputs)``."""
        from verifier.ir.evaluate import evaluate

        n = x.shape[0]
        x = x.to(device=self.device, dtype=self.dtype).reshape(n, *self.input_full_shape)
        return evaluate(self, x)[self.output_name].reshape(n, -1)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Graph":
        """A copy of the graph whose parameters live on ``device`` in ``dtype``."""
        return Graph(self.nodes, self.input_name, self.input_full_shape, self.output_name,
                     self.batched, self.onnx_path, dtype or self.dtype, device or self.device)

    def summary(self) -> dict[str, Any]:
        """Op counts, shapes and parameter count, for ``verifier info`` and reports."""
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return {"input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "n_nodes": len(self.nodes), "ops": counts, "n_params": self.n_params()}


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
