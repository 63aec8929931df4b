"""Certifying a data set with randomized smoothing: resumable CSV rows, summary, plot.

One row per input, appended and flushed as soon as it is known (a crash loses nothing);
input ``i`` is sampled with seed ``seed + i``, so a row does not depend on which other
inputs were run, and a resumed run gives the rows an uninterrupted run would have given.
"""
from __future__ import annotations

import csv
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from verifier.errors import InputError
from verifier.ir.graph import Graph

FIELDS = ["index", "label", "prediction", "radius", "correct", "time", "pA_lower",
          "sigma", "n0", "n", "alpha", "seed"]
SETTING_FIELDS = ("sigma", "n0", "n", "alpha", "seed")


@dataclass(frozen=True)
class Settings:
    """What fixes every row: noise level, sample sizes, confidence, base seed (and batch)."""

    sigma: float
    n0: int
    n: int
    alpha: float
    seed: int
    batch: int = 1000
    overlap: bool | None = None  # noise on a second thread (same counts either way; None: by device)

    def row_values(self) -> dict[str, str]:
        return {"sigma": repr(float(self.sigma)), "n0": str(self.n0), "n": str(self.n),
                "alpha": repr(float(self.alpha)), "seed": str(self.seed)}


def load_dataset(path: str | os.PathLike, model: Graph) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``(N, n_inputs)`` float32 and ``y`` ``(N,)`` int64 from an ``.npz`` with arrays
    ``x`` (``(N, *model.input_shape)`` or ``(N, n_inputs)``) and ``y`` (``(N,)`` integers)."""
    x, y = _load_npz(path)
    per_sample = tuple(x.shape[1:])
    if x.ndim < 1 or per_sample not in (tuple(model.input_shape), (model.n_inputs,)):
        raise InputError(f"x has shape {x.shape}, the model expects (N, "
                         f"{', '.join(map(str, model.input_shape))})", path=str(path))
    if x.dtype.kind not in "fiu" or not np.isfinite(x).all():
        raise InputError("x must hold finite numbers", path=str(path))
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise InputError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}",
                         path=str(path))
    return x.reshape(x.shape[0], -1).astype(np.float32), y.astype(np.int64)


def _load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    if not Path(path).is_file():
        raise InputError("data file not found", path=str(path))
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise InputError("expected an .npz archive with arrays 'x' and 'y', got a single array",
                             path=str(path))
        with data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise InputError(f"needs arrays 'x' and 'y', missing {', '.join(missing)} "
                                 f"(has: {', '.join(data.files) or 'none'})", path=str(path))
            return np.asarray(data["x"]), np.asarray(data["y"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a readable .npz file (arrays saved with numpy.savez)", path=str(path)) from None


def load_single(path: str | os.PathLike) -> np.ndarray:
    """One input from an ``.npy`` file (shape checked later against the model)."""
    if not Path(path).is_file():
        raise InputError("input file not found", path=str(path))
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        raise InputError("not a readable .npy file (a numeric array saved with numpy.save)",
                         path=str(path)) from None
    if not isinstance(arr, np.ndarray):
        raise InputError("expected an .npy array, got an .npz archive (use --data)", path=str(path))
    return arr


def start_results(path: Path, resume: bool, settings: Settings) -> list[dict[str, str]]:
    """Prepare the results file; returns the complete rows already there (``resume``).

    Without ``resume`` the file is started afresh. With it, a torn last line is dropped and
    rows made with other settings are refused (one file holds one experiment).
    """
    rows: list[dict[str, str]] = []
    if resume and path.is_file():
        rows = _complete_rows(path)
        want = settings.row_values()
        for r in rows:
            if any(r[k] != want[k] for k in SETTING_FIELDS):
                got = ", ".join(f"{k}={r[k]}" for k in SETTING_FIELDS)
                raise InputError(f"holds rows made with other settings ({got}); use another results file",
                                 path=str(path))
    try:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write the results file ({e.strerror})", path=str(path)) from None
    return rows


def _complete_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != FIELDS:
                raise InputError("is not a results file of 'verifier certify' (header differs)", path=str(path))
            return [r for r in reader if None not in r.values() and _parses(r)]
    except (OSError, UnicodeDecodeError, csv.Error):
        raise InputError("cannot read the results file to resume it", path=str(path)) from None


def _parses(row: dict[str, str]) -> bool:
    try:
        int(row["index"]), float(row["radius"]), int(row["prediction"]), float(row["time"])
        return row["correct"] in ("0", "1")
    except (TypeError, ValueError):
        return False


def append_row(path: Path, row: dict[str, str]) -> None:
    """Append one row and push it to disk."""
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, FIELDS).writerow(row)
        f.flush()
        os.fsync(f.fileno())


def certify_rows(model: Graph, x: np.ndarray, y: np.ndarray, indices: list[int], settings: Settings,
                 path: Path, done: set[int], progress: Callable[[str], None]) -> list[dict[str, str]]:
    """Certify ``x[i]`` for every ``i`` in ``indices`` not in ``done``, appending each row to
    ``path`` as it is known. ``x``: ``(N, n_inputs)``; ``y``: ``(N,)``. Returns the new rows."""
    from verifier.engines.smoothing import certify

    todo = [i for i in indices if i not in done]
    rows = []
    for k, i in enumerate(todo, start=1):
        start = time.monotonic()
        res = certify(model, x[i], settings.sigma, n0=settings.n0, n=settings.n, alpha=settings.alpha,
                      batch=settings.batch, seed=settings.seed + i, overlap=settings.overlap)
        label, correct = int(y[i]), int(res.prediction == int(y[i]))
        row = {"index": str(i), "label": str(label), "prediction": str(res.prediction),
               "radius": repr(float(res.radius)), "correct": str(correct),
               "time": f"{time.monotonic() - start:.4f}", "pA_lower": repr(float(res.pA_lower)),
               **settings.row_values()}
        append_row(path, row)
        rows.append(row)
        word = "abstain" if res.prediction < 0 else f"{res.prediction} radius {res.radius:.3f}"
        progress(f"[{k:5d}/{len(todo)}] input {i}: label {label}, smoothed {word}"
                 f"{'' if correct else ' (not certified correct)'} ({float(row['time']):.2f}s)")
    return rows


def radius_correct(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: certified radius ``(N,)`` float64 and correctness ``(N,)`` bool."""
    radius = np.array([float(r["radius"]) for r in rows], dtype=np.float64)
    correct = np.array([r["correct"] == "1" for r in rows], dtype=bool)
    return radius, correct


def certified_accuracy(radius: np.ndarray, correct: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """Fraction of inputs that g classifies correctly with certified radius >= r."""
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    if radius.size == 0:
        return np.zeros_like(r)
    return (correct[None, :] & (radius[None, :] >= r[:, None])).mean(axis=1)


def summary_table(rows: list[dict[str, str]], step: float = 0.25) -> tuple[list[float], np.ndarray, float]:
    """Radii ``0, step, 2·step, …`` (at least up to 1.0 and past the largest radius), the
    certified accuracy at each, and the average certified radius (0 for wrong/abstained)."""
    radius, correct = radius_correct(rows)
    top = max(1.0, math.ceil((radius.max() if radius.size else 0.0) / step) * step)
    radii = [round(k * step, 10) for k in range(int(round(top / step)) + 1)]
    acr = float(np.where(correct, radius, 0.0).mean()) if radius.size else 0.0
    return radii, certified_accuracy(radius, correct, np.array(radii)), acr


def summary_text(rows: list[dict[str, str]], settings: Settings, path: Path) -> str:
    """Lines: settings, a radius → certified accuracy table, ACR, abstentions."""
    if not rows:
        return f"inputs: 0 (nothing in the selected range)\nresults: {path}"
    radii, acc, acr = summary_table(rows)
    abstained = sum(r["prediction"] == "-1" for r in rows)
    lines = [f"inputs: {len(rows)}  sigma: {settings.sigma:g}  n0: {settings.n0}  n: {settings.n}  "
             f"alpha: {settings.alpha:g}  abstained: {abstained}",
             "certified accuracy of the smoothed classifier g (probabilistic, confidence "
             f"{1 - settings.alpha:g} per input):",
             "  radius  certified accuracy"]
    lines += [f"  {r:6.2f}  {a:.3f}" for r, a in zip(radii, acc)]
    lines += [f"average certified radius (ACR): {acr:.4f}", f"results: {path}"]
    return "\n".join(lines)


def plot_certified_accuracy(rows: list[dict[str, str]], path: str | os.PathLike, title: str) -> None:
    """Write a PNG of certified accuracy against ℓ2 radius (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    radius, correct = radius_correct(rows)
    top = max(1.0, float(radius.max()) * 1.05) if radius.size else 1.0
    grid = np.linspace(0.0, top, 600)
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(grid, certified_accuracy(radius, correct, grid), drawstyle="steps-post")
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlim(0.0, top)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    except OSError as e:
        raise InputError(f"cannot write the plot ({e.strerror})", path=str(path)) from None
