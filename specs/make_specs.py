"""Write the example VNN-LIB robustness properties for the shipped digits models.

Running ``python specs/make_specs.py`` (after ``models/make_digits_models.py``)
writes, for ``digits_mlp`` and ``digits_cnn``:

* 3 properties at a small radius (eps 0.01) around correctly classified test
  images, for which a PGD attack finds no counterexample (expected ``unsat``);
* 2 properties at a large radius (eps 0.3) for which PGD finds a counterexample,
  confirmed with onnxruntime (expected ``sat``).

Each property is the L-infinity ball of radius eps around the image, clipped to
[0, 1], with the unsafe set "some other class scores at least the true label".
Inputs ``X_0 .. X_63`` are the image pixels in row-major order (for the CNN,
the [1, 1, 8, 8] input flattened). The script also writes ``instances.csv``
(VNN-COMP format, paths relative to this folder), ``README.md`` describing each
file, and ``counterexamples.npz`` holding the PGD counterexample of every
``sat`` property (key: the vnnlib file's stem).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

SPEC_DIR = Path(__file__).resolve().parent
MODEL_DIR = SPEC_DIR.parent / "models"
SEED = 0
N_CLASSES = 10
TIMEOUT_S = 30
SMALL_EPS, N_SMALL = 0.01, 3
LARGE_EPS, N_LARGE = 0.3, 2
MODELS = {"digits_mlp": [1, 64], "digits_cnn": [1, 1, 8, 8]}

TorchFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Spec:
    """One written robustness property and how its expected verdict was established."""

    model: str
    index: int
    label: int
    eps: float
    expected: str
    how: str

    @property
    def stem(self) -> str:
        """File name without extension, e.g. ``digits_mlp_eps0.01_idx0``."""
        return f"{self.model}_eps{self.eps:g}_idx{self.index}"


def load_test() -> tuple[np.ndarray, np.ndarray]:
    """The shipped test split: images (N, 64) float32 in [0, 1] and int64 labels."""
    data = np.load(MODEL_DIR / "digits_test.npz")
    return data["x"], data["y"]


def onnx_to_torch(path: Path) -> TorchFn:
    """A differentiable torch function evaluating the ONNX model (Gemm/Conv/Relu/Flatten only)."""
    model = onnx.load(str(path))
    params = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}

    def forward(x: torch.Tensor) -> torch.Tensor:
        env = {model.graph.input[0].name: x}
        for node in model.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            args = [env[n] if n in env else params[n] for n in node.input]
            if node.op_type == "Gemm":
                w = args[1].T if attrs.get("transB", 0) else args[1]
                out = args[0] @ w + args[2]
            elif node.op_type == "Conv":
                pads = attrs.get("pads", [0, 0, 0, 0])
                out = F.conv2d(args[0], args[1], args[2], stride=attrs["strides"], padding=pads[:2])
            elif node.op_type == "Relu":
                out = torch.relu(args[0])
            elif node.op_type == "Flatten":
                out = torch.flatten(args[0], start_dim=attrs.get("axis", 1))
            else:
                raise NotImplementedError(node.op_type)
            env[node.output[0]] = out
        return env[model.graph.output[0].name]

    return forward


def ort_logits(path: Path, x: np.ndarray, shape: list[int]) -> np.ndarray:
    """Logits (10,) of the ONNX model at ``path`` for one flattened image ``x`` (64,), via onnxruntime."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x.astype(np.float32).reshape(shape)})[0].reshape(-1)


def ball(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Float64 bounds of the L-infinity ball of radius ``eps`` around ``x``, clipped to [0, 1]."""
    x64 = x.astype(np.float64)
    lb = np.clip(x64 - eps, 0.0, 1.0)
    ub = np.clip(x64 + eps, 0.0, 1.0)
    assert np.all(lb <= x64) and np.all(x64 <= ub)
    return lb, ub


def inner_float32(lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float32 bounds that lie inside the float64 box [lb, ub], so float32 points stay in the box."""
    lo = lb.astype(np.float32)
    hi = ub.astype(np.float32)
    lo = np.where(lo.astype(np.float64) < lb, np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi.astype(np.float64) > ub, np.nextafter(hi, np.float32(-np.inf)), hi)
    return lo, hi


def margin(logits: torch.Tensor, label: int) -> torch.Tensor:
    """``max_{j != label} logits_j - logits_label`` per row; >= 0 means the property is violated."""
    others = logits.clone()
    others[:, label] = -torch.inf
    return others.max(dim=1).values - logits[:, label]


def pgd_attack(
    f: TorchFn, shape: list[int], lo: np.ndarray, hi: np.ndarray, x: np.ndarray, label: int,
    steps: int = 100, restarts: int = 10,
) -> np.ndarray | None:
    """Projected sign-gradient ascent on the margin inside [lo, hi]; return a point with margin > 0 or None.

    The first run starts at ``x``, later ones at uniform random points of the box.
    """
    gen = torch.Generator().manual_seed(SEED)
    lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
    alpha = 0.05 * float(np.max(hi - lo))
    for r in range(restarts):
        if r == 0:
            start = torch.from_numpy(x.copy())
        else:
            start = lo_t + (hi_t - lo_t) * torch.rand(lo_t.shape, generator=gen)
        z = start.clone().requires_grad_(True)
        for _ in range(steps):
            m = margin(f(z.reshape(shape)), label)
            if m.item() > 1e-3:
                return z.detach().numpy().copy()
            (grad,) = torch.autograd.grad(m.sum(), z)
            with torch.no_grad():
                z = torch.clamp(z + alpha * grad.sign(), lo_t, hi_t).requires_grad_(True)
    return None


def confirmed(path: Path, shape: list[int], cex: np.ndarray, lb: np.ndarray, ub: np.ndarray, label: int) -> bool:
    """True if ``cex`` lies in [lb, ub] and onnxruntime scores some other class at least ``label``."""
    inside = bool(np.all(cex.astype(np.float64) >= lb) and np.all(cex.astype(np.float64) <= ub))
    y = ort_logits(path, cex, shape)
    return inside and bool(np.max(np.delete(y, label)) >= y[label])


def fmt(v: float) -> str:
    """Shortest round-trip decimal for a float64, without exponent notation (e.g. ``0.0525``)."""
    return np.format_float_positional(float(v), unique=True, trim="0")


def vnnlib_text(spec: Spec, lb: np.ndarray, ub: np.ndarray) -> str:
    """VNN-LIB text: input box ``X_i`` in [lb_i, ub_i], unsafe if some ``Y_j >= Y_label`` (j != label)."""
    lines = [
        f"; {spec.model}: L-infinity robustness of test image {spec.index} (label {spec.label}),",
        f"; eps = {spec.eps:g}, box clipped to [0, 1]. Expected: {spec.expected}.",
        "",
    ]
    lines += [f"(declare-const X_{i} Real)" for i in range(len(lb))] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(N_CLASSES)] + [""]
    for i, (lo, hi) in enumerate(zip(lb, ub)):
        assert lo <= hi
        lines += [f"(assert (<= X_{i} {fmt(hi)}))", f"(assert (>= X_{i} {fmt(lo)}))"]
    lines += ["", "(assert (or"]
    lines += [f"    (and (>= Y_{j} Y_{spec.label}))" for j in range(N_CLASSES) if j != spec.label]
    lines += ["))", ""]
    return "\n".join(lines)


def select_specs(
    model: str, x: np.ndarray, y: np.ndarray, cexs: dict[str, np.ndarray]
) -> list[Spec]:
    """Choose images for ``model``: small-eps ones where PGD fails, large-eps ones where it succeeds."""
    path, shape = MODEL_DIR / f"{model}.onnx", MODELS[model]
    f = onnx_to_torch(path)
    specs: list[Spec] = []
    for idx in range(len(x)):
        n_small = sum(s.eps == SMALL_EPS for s in specs)
        n_large = len(specs) - n_small
        if n_small == N_SMALL and n_large == N_LARGE:
            break
        label = int(y[idx])
        if int(np.argmax(ort_logits(path, x[idx], shape))) != label:
            continue
        eps = SMALL_EPS if n_small < N_SMALL else LARGE_EPS
        lb, ub = ball(x[idx], eps)
        cex = pgd_attack(f, shape, *inner_float32(lb, ub), x[idx], label)
        if eps == SMALL_EPS and cex is None:
            how = "PGD (10 restarts x 100 steps) found no counterexample; expected robust; proven by the verifier"
            specs.append(Spec(model, idx, label, eps, "unsat", how))
        elif eps == LARGE_EPS and cex is not None and confirmed(path, shape, cex, lb, ub, label):
            spec = Spec(model, idx, label, eps, "sat", "PGD found counterexample, confirmed with onnxruntime")
            cexs[spec.stem] = cex.astype(np.float32)
            specs.append(spec)
    return specs


def write_readme(specs: list[Spec]) -> None:
    """Write ``README.md`` describing every property file."""
    lines = [
        "# Example robustness properties for the digits models",
        "",
        "Generated by `python specs/make_specs.py` from `models/digits_*.onnx` and the test split",
        "`models/digits_test.npz` (image index = row of `x` / `y` there). Each property is the",
        "L-infinity ball of radius eps around the image, clipped to [0, 1]; inputs `X_0..X_63` are",
        "the pixels in row-major order (the CNN's [1, 1, 8, 8] input flattened), outputs `Y_0..Y_9`",
        "the logits. The unsafe set is \"some other class j scores at least the true label\"",
        "(`Y_j >= Y_label`), so `unsat` means robust and `sat` means a counterexample exists.",
        "All images are classified correctly by the model.",
        "",
        "`instances.csv` lists every property in VNN-COMP format (`onnx,vnnlib,timeout`, no header,",
        "paths relative to this folder), e.g. for `verifier bench specs`. `counterexamples.npz`",
        "holds, for each `sat` property (key = file name without `.vnnlib`), the float32 input",
        "(shape (64,)) that PGD found.",
        "",
        "| file | model | index | label | eps | expected | how established |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in specs:
        lines.append(
            f"| `{s.stem}.vnnlib` | {s.model} | {s.index} | {s.label} | {s.eps:g} | `{s.expected}` | {s.how} |"
        )
    (SPEC_DIR / "README.md").write_text("\n".join(lines) + "\n")


def write_instances(specs: list[Spec]) -> None:
    """Write ``instances.csv``: one ``onnx_path,vnnlib_path,timeout`` row per property, no header."""
    rows = [f"../models/{s.model}.onnx,{s.stem}.vnnlib,{TIMEOUT_S}" for s in specs]
    (SPEC_DIR / "instances.csv").write_text("\n".join(rows) + "\n")


def main() -> None:
    """Select images, write all property files, the instance list, README and counterexamples."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    x, y = load_test()
    cexs: dict[str, np.ndarray] = {}
    specs = [s for model in MODELS for s in select_specs(model, x, y, cexs)]
    for s in specs:
        lb, ub = ball(x[s.index], s.eps)
        (SPEC_DIR / f"{s.stem}.vnnlib").write_text(vnnlib_text(s, lb, ub))
        print(f"{s.stem}.vnnlib: label {s.label}, expected {s.expected}")
    np.savez_compressed(SPEC_DIR / "counterexamples.npz", **cexs)
    write_instances(specs)
    write_readme(specs)
    print(f"wrote {len(specs)} properties in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
