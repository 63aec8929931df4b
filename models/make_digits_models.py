"""Train the small digits classifiers shipped with the verifier and export them to ONNX.

Running ``python models/make_digits_models.py`` trains three classifiers on
scikit-learn's bundled 8x8 digits data set (no download), writes them as ONNX
files next to this script and saves the held-out test split:

* ``digits_mlp.onnx``    -- input ``x`` [1, 64], Gemm-Relu-Gemm-Relu-Gemm, output ``logits`` [1, 10]
* ``digits_cnn.onnx``    -- input ``x`` [1, 1, 8, 8], two Conv-Relu blocks, Flatten, two Gemm layers
* ``digits_smooth.onnx`` -- the MLP architecture trained with Gaussian noise (sigma 0.25),
  intended as the base classifier for randomized smoothing
* ``digits_test.npz``    -- the test split: ``x`` float32 (N, 64) in [0, 1], ``y`` int64

The ONNX graphs are assembled with ``onnx.helper`` from the trained weights, then
checked against the torch models with onnxruntime on the whole test split.
Everything is seeded, so repeated runs give the same files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
OPSET = 17
IR_VERSION = 8
SMOOTH_SIGMA = 0.25
MAX_ABS_ERROR = 1e-4
MIN_ACCURACY = {"digits_mlp": 0.95, "digits_cnn": 0.95, "digits_smooth": 0.90}


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, x_test, y_train, y_test)``: pixels scaled to [0, 1], a stratified 70/30 split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=0
    )
    return x_train, x_test, y_train, y_test


def build_mlp() -> nn.Sequential:
    """Fully connected classifier 64-32-32-10 with ReLU activations."""
    return nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def build_cnn() -> nn.Sequential:
    """Convolutional classifier for [N, 1, 8, 8] images (8 and 16 channels, then 32 hidden units)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    input_shape: tuple[int, ...],
    epochs: int,
    noise_sigma: float = 0.0,
) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy; optionally add fresh Gaussian noise to every batch.

    ``input_shape`` is the per-sample shape the model expects (e.g. ``(64,)`` or ``(1, 8, 8)``).
    """
    gen = torch.Generator().manual_seed(SEED)
    xt = torch.from_numpy(x).reshape(-1, *input_shape)
    yt = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), batch):
            idx = perm[start:start + batch]
            xb = xt[idx]
            if noise_sigma > 0.0:
                xb = xb + noise_sigma * torch.randn(xb.shape, generator=gen)
            opt.zero_grad()
            loss_fn(model(xb), yt[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def predict_torch(model: nn.Module, x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Logits of ``model`` on the flattened images ``x`` (N, 64), as a float32 array (N, 10)."""
    with torch.no_grad():
        return model(torch.from_numpy(x).reshape(-1, *input_shape)).numpy()


def init(name: str, array: torch.Tensor) -> TensorProto:
    """A float32 ONNX initializer named ``name`` holding ``array``."""
    return numpy_helper.from_array(array.detach().numpy().astype(np.float32), name=name)


def gemm(layer: nn.Linear, inp: str, out: str, prefix: str) -> tuple[onnx.NodeProto, list[TensorProto]]:
    """A Gemm node ``out = inp @ W^T + b`` for a torch Linear layer, with its initializers."""
    w, b = f"{prefix}.weight", f"{prefix}.bias"
    node = helper.make_node("Gemm", [inp, w, b], [out], name=prefix, transB=1)
    return node, [init(w, layer.weight), init(b, layer.bias)]


def conv(layer: nn.Conv2d, inp: str, out: str, prefix: str) -> tuple[onnx.NodeProto, list[TensorProto]]:
    """A Conv node equivalent to a torch Conv2d layer (square kernel, symmetric padding), with its initializers."""
    w, b = f"{prefix}.weight", f"{prefix}.bias"
    k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
    node = helper.make_node(
        "Conv", [inp, w, b], [out], name=prefix,
        kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], dilations=[1, 1], group=1,
    )
    return node, [init(w, layer.weight), init(b, layer.bias)]


def sequential_to_onnx(model: nn.Sequential, input_shape: list[int], graph_name: str) -> onnx.ModelProto:
    """Convert a Sequential of Linear/Conv2d/ReLU/Flatten layers to an ONNX model.

    The graph input is ``x`` with ``input_shape`` and the output is ``logits`` [1, 10].
    """
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    current = "x"
    layers = list(model)
    for i, layer in enumerate(layers):
        out = "logits" if i == len(layers) - 1 else f"t{i}"
        if isinstance(layer, nn.Linear):
            node, params = gemm(layer, current, out, f"layer{i}")
        elif isinstance(layer, nn.Conv2d):
            node, params = conv(layer, current, out, f"layer{i}")
        elif isinstance(layer, nn.ReLU):
            node, params = helper.make_node("Relu", [current], [out], name=f"relu{i}"), []
        elif isinstance(layer, nn.Flatten):
            node, params = helper.make_node("Flatten", [current], [out], name=f"flatten{i}", axis=1), []
        else:
            raise TypeError(f"unsupported layer {type(layer).__name__}")
        nodes.append(node)
        inits.extend(params)
        current = out
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=inits,
    )
    onnx_model = helper.make_model(
        graph, producer_name="verifier-digits", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    onnx_model.ir_version = IR_VERSION
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def predict_onnx(path: Path, x: np.ndarray, input_shape: list[int]) -> np.ndarray:
    """Logits of the ONNX model at ``path`` on each row of ``x``, one sample per run (batch size 1)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = [sess.run(["logits"], {"x": xi.reshape(input_shape)})[0][0] for xi in x]
    return np.stack(rows)


def check_export(
    name: str, model: nn.Module, x: np.ndarray, y: np.ndarray, input_shape: list[int]
) -> float:
    """Compare the ONNX file ``name``.onnx with ``model`` on ``x``; return the ONNX model's accuracy."""
    ref = predict_torch(model, x, tuple(input_shape[1:]))
    got = predict_onnx(OUT_DIR / f"{name}.onnx", x, input_shape)
    err = float(np.max(np.abs(ref - got)))
    if err >= MAX_ABS_ERROR:
        raise AssertionError(f"{name}: onnxruntime differs from torch by {err:.3g}")
    acc = float(np.mean(got.argmax(axis=1) == y))
    size = (OUT_DIR / f"{name}.onnx").stat().st_size
    print(f"{name}: test accuracy {acc:.4f}, max |onnx - torch| {err:.2e}, {size} bytes")
    if acc < MIN_ACCURACY[name]:
        raise AssertionError(f"{name}: accuracy {acc:.4f} below {MIN_ACCURACY[name]}")
    return acc


def noisy_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, sigma: float, draws: int = 20) -> float:
    """Accuracy of ``model`` on ``x`` with i.i.d. Gaussian noise of std ``sigma`` added (averaged over draws)."""
    gen = torch.Generator().manual_seed(SEED + 1)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    with torch.no_grad():
        hits = [
            (model(xt + sigma * torch.randn(xt.shape, generator=gen)).argmax(1) == yt).float().mean()
            for _ in range(draws)
        ]
    return float(torch.stack(hits).mean())


def make_model(
    name: str, build: Callable[[], nn.Sequential], data: tuple[np.ndarray, ...], input_shape: list[int],
    epochs: int, noise_sigma: float = 0.0,
) -> nn.Module:
    """Train one classifier, write ``name``.onnx, and check it against torch on the test split."""
    x_train, x_test, y_train, y_test = data
    torch.manual_seed(SEED)
    model = train(build(), x_train, y_train, tuple(input_shape[1:]), epochs, noise_sigma)
    onnx.save(sequential_to_onnx(model, input_shape, name), str(OUT_DIR / f"{name}.onnx"))
    check_export(name, model, x_test, y_test, input_shape)
    return model


def main() -> None:
    """Train and export all shipped digits models and the test split."""
    start = time.perf_counter()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_data()
    x_test, y_test = data[1], data[3]
    np.savez_compressed(OUT_DIR / "digits_test.npz", x=x_test, y=y_test)
    print(f"train {len(data[0])} / test {len(x_test)} images")
    make_model("digits_mlp", build_mlp, data, [1, 64], epochs=60)
    make_model("digits_cnn", build_cnn, data, [1, 1, 8, 8], epochs=40)
    smooth = make_model("digits_smooth", build_mlp, data, [1, 64], epochs=100, noise_sigma=SMOOTH_SIGMA)
    acc = noisy_accuracy(smooth, x_test, y_test, SMOOTH_SIGMA)
    print(f"digits_smooth: accuracy under N(0, {SMOOTH_SIGMA}^2) noise {acc:.4f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
