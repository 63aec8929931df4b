"""Concrete forward evaluation: a plain loop over nodes with a dict of values."""
from __future__ import annotations

import torch

from verifier.ir.graph import Graph


def evaluate(graph: Graph, x: torch.Tensor, keep: bool = True) -> dict[str, torch.Tensor]:
    """All values of ``graph`` on ``x`` of shape ``(N, *graph.input_full_shape)``.

    Returns a dict value name → tensor ``(N, *shape)``. With ``keep=False`` values no longer
    needed are dropped as the loop goes (only the output remains).
    """
    values = {graph.input_name: x}
    last_use = _last_uses(graph) if not keep else {}
    for i, node in enumerate(graph.nodes):
        args = [values[name] for name in node.inputs]
        values[node.name] = graph.ops[node.name].forward(*args)
        for name in node.inputs:
            if last_use.get(name) == i and name != graph.output_name:
                values.pop(name, None)
    return values


def _last_uses(graph: Graph) -> dict[str, int]:
    last: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            last[name] = i
    return last
