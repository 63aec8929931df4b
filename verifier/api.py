"""The public Python API: load_model, load_property, verify, compute_bounds."""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import torch

from verifier.config import VerifyConfig
from verifier.engines.pipeline import run_pipeline
from verifier.errors import InputError
from verifier.ir.graph import Graph
from verifier.result import Result
from verifier.spec.property import Property


def load_model(path: str | os.PathLike) -> Graph:
    """Read an ONNX file into a :class:`Graph`; ``graph(x)`` evaluates a batch
    ``x`` of shape ``(N, *graph.input_shape)``."""
    from verifier.ir.onnx_import import load_onnx

    return load_onnx(path)


def load_property(path: str | os.PathLike, model: Graph | None = None) -> Property:
    """Parse a VNN-LIB file; with ``model`` given, its variable counts are checked against it."""
    from verifier.spec.vnnlib import parse_vnnlib

    if model is None:
        return parse_vnnlib(path)
    return parse_vnnlib(path, n_inputs=model.n_inputs, n_outputs=model.n_outputs)


def verify(model: Graph, prop: Property, timeout: float | None = None, config: VerifyConfig | None = None,
           progress: Callable[[str], None] | None = None, **settings) -> Result:
    """Decide ``prop`` on ``model``: attack → interval → CROWN → α-CROWN → branch and bound.

    Returns a :class:`Result` whose status is ``verified`` only with a proof, ``falsified``
    only with a counterexample that onnxruntime confirmed on the model's ONNX file, else
    ``unknown`` or ``timeout``. ``settings`` override fields of :class:`VerifyConfig`
    (``device``, ``seed``, ...).
    """
    config = config or VerifyConfig()
    if timeout is not None:
        settings["timeout"] = float(timeout)
    config = dataclasses.replace(config, **settings)
    _check_device(config.device)
    _check_sizes(model, prop)
    try:
        return run_pipeline(model, prop, config, progress or (lambda _msg: None))
    except Exception as e:  # out of memory where no smaller batch helps: unknown, with the reason
        from verifier.engines.memory import free_memory, is_out_of_memory
        from verifier.result import Status

        if not is_out_of_memory(e):
            raise
        free_memory()
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return Result(Status.UNKNOWN, f"out of memory ({first}); a lighter method, a smaller branch-and-bound "
                      "batch or a device with more memory may help")


def _check_device(device: str) -> None:
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but CUDA is not available on this machine")
    if not str(device).startswith(("cuda", "cpu")):
        raise InputError(f"unknown device '{device}' (cpu or cuda)")


def _check_sizes(model: Graph, prop: Property) -> None:
    if prop.n_inputs != model.n_inputs or prop.n_outputs != model.n_outputs:
        raise InputError(f"property has {prop.n_inputs} inputs and {prop.n_outputs} outputs, the model "
                         f"has {model.n_inputs} inputs and {model.n_outputs} outputs", path=prop.source)


def compute_bounds(model: Graph, lower: torch.Tensor, upper: torch.Tensor, method: str = "crown",
                   C: torch.Tensor | None = None, timeout: float = 60.0,
                   config=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds ``(lb, ub)`` of the outputs (or of ``C · y``) over a batch of input boxes.

    ``lower``/``upper``: ``(B, *model.input_shape)``; ``C``: ``(n_rows, n_outputs)`` or
    ``(B, n_rows, n_outputs)``. Returns tensors ``(B, n_outputs)`` or ``(B, n_rows)``.
    ``method``: ``ibp``, ``crown``, ``alpha-crown`` or ``lp``.
    """
    from verifier.bounds.api import bounds_for_boxes

    return bounds_for_boxes(model, lower, upper, method, C, time.monotonic() + timeout, config)


def certify(model: Graph, x, sigma: float, n0: int = 100, n: int = 100_000, alpha: float = 0.001,
            batch: int = 1000, seed: int = 0, device: str | None = None, timeout: float | None = None,
            overlap: bool | None = None, fold: bool = False):
    """Randomized-smoothing certificate (Cohen et al. 2019) of the smoothed classifier g at one
    input ``x`` (shape ``model.input_shape`` or flat): ``.prediction`` (-1 abstains), ``.radius``
    (ℓ2), ``.pA_lower``, ``.counts``, ``.certificate`` (probabilistic, about g, not f).
    ``overlap`` (noise on a second thread; default on CPU when a core is free of torch's threads) and ``fold`` (noise
    drawn after a narrowing first layer: same law, fewer normals, other samples for a seed):
    see :func:`verifier.engines.smoothing.certify`."""
    from verifier.engines.smoothing import certify as _certify

    return _certify(model, x, sigma, n0=n0, n=n, alpha=alpha, batch=batch, seed=seed, device=device,
                    timeout=timeout, overlap=overlap, fold=fold)


def predict(model: Graph, x, sigma: float, n: int = 100_000, alpha: float = 0.001, batch: int = 1000,
            seed: int = 0, device: str | None = None, timeout: float | None = None,
            overlap: bool | None = None, fold: bool = False):
    """The smoothed classifier's class at ``x`` with a two-sided binomial test at level
    ``alpha`` (abstains with -1). See :func:`verifier.engines.smoothing.predict`."""
    from verifier.engines.smoothing import predict as _predict

    return _predict(model, x, sigma, n=n, alpha=alpha, batch=batch, seed=seed, device=device,
                    timeout=timeout, overlap=overlap, fold=fold)


def reach(model: Graph, lower, upper, objective, tolerance: float = 1e-3, timeout: float = 60.0,
          relative: bool = False, progress: Callable[[str], None] | None = None, **settings):
    """Guaranteed range of ``objective`` (``"Y_0"``, ``"Y_1 - Y_0"``, ``"max(Y)"``, a vector ``c``...)
    over the box ``[lower, upper]`` (each of shape ``model.input_shape``): ``.min`` and ``.max``,
    each with ``.lower``, ``.upper``, ``.witness`` (float32 input), ``.witness_value``
    (onnxruntime) and ``.converged``. ``settings`` override fields of
    :class:`~verifier.engines.reach.ReachConfig`. See :func:`verifier.engines.reach.reach_range`."""
    from verifier.engines.reach import reach_config, reach_range

    return reach_range(model, lower, upper, objective, tolerance, timeout, relative,
                       config=reach_config(**settings), progress=progress)
