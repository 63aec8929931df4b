"""verifier: sound verification of neural networks (ONNX models, VNN-LIB properties).

The public API (imported on first use, so ``verifier --help`` stays fast)::

    model = verifier.load_model("net.onnx")
    prop = verifier.load_property("prop.vnnlib", model)
    result = verifier.verify(model, prop, timeout=60)
    lb, ub = verifier.compute_bounds(model, lower, upper, method="crown")
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = ("load_model", "load_property", "verify", "compute_bounds", "certify", "predict", "reach",
        "robustness_property")


def __getattr__(name: str):
    if name == "robustness_property":
        from verifier.spec.robustness import robustness_property

        return robustness_property
    if name in _API:
        from verifier import api

        return getattr(api, name)
    raise AttributeError(f"module 'verifier' has no attribute '{name}'")


__all__ = list(_API)
