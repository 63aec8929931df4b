"""The plots of a rendered safety report (:mod:`verifier.evidence.render`).

Each is drawn with matplotlib on its own Agg canvas (no pyplot, no global state) and returned
as a base64 PNG string ready to embed in HTML or Markdown.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from verifier.evidence.report_json import as_float


def _figure(w: float = 6.0, h: float = 3.6):
    """A ``w`` × ``h`` inch figure on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    """``fig`` as a base64 PNG."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_histogram(values: np.ndarray, xlabel: str, title: str, margin: float | None = None) -> str:
    """Histogram of the finite ``values`` ``(L,)``, with the proof ``margin`` marked when given."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values[np.isfinite(values)], bins=min(40, max(5, values.size // 3)), color="#4a78b5")
    if margin is not None:
        ax.axvline(margin, color="#b3261e", lw=1, label=f"proof margin {margin:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("leaves")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def plot_boxes(lows: np.ndarray, highs: np.ndarray, bounds: np.ndarray, dims: tuple[int, int]) -> str:
    """Leaf boxes projected on two input dimensions, coloured by their recorded bound."""
    from matplotlib import colormaps
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    i, j = dims
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    rects = [Rectangle((lo[i], lo[j]), hi[i] - lo[i], hi[j] - lo[j]) for lo, hi in zip(lows, highs)]
    pc = PatchCollection(rects, cmap=colormaps["viridis"], edgecolor="k", linewidth=0.3, alpha=0.6)
    pc.set_array(np.nan_to_num(bounds))
    ax.add_collection(pc)
    fig.colorbar(pc, ax=ax, label="leaf bound")
    ax.set_xlim(lows[:, i].min(), highs[:, i].max())
    ax.set_ylim(lows[:, j].min(), highs[:, j].max())
    ax.set_xlabel(f"X_{i}")
    ax.set_ylabel(f"X_{j}")
    ax.set_title(f"{len(lows)} input-split leaves projected on X_{i}, X_{j} (boxes overlap where "
                 "they differ in other inputs)", fontsize=8)
    return _png(fig)


def plot_images(x: np.ndarray, centre: np.ndarray | None, shape: tuple[int, ...]) -> str:
    """The counterexample as an image next to the region centre and their difference."""
    both = np.concatenate([x, x if centre is None else centre])
    span = (float(both.min()), float(both.max()))

    def show(ax, v, title, cmap="gray"):
        img = v.reshape(shape)
        img = img.reshape(img.shape[-2:]) if img.ndim == 2 or img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        lim = (-float(np.abs(v).max()) - 1e-12, float(np.abs(v).max()) + 1e-12) if cmap == "coolwarm" else span
        if img.ndim == 3:
            img = np.clip((img - lim[0]) / max(lim[1] - lim[0], 1e-12), 0, 1)
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")

    panels = [(x, "counterexample")]
    if centre is not None:
        panels += [(centre, "region centre"), (x - centre, "difference")]
    fig = _figure(3.0 * len(panels), 3.2)
    for k, (v, t) in enumerate(panels, start=1):
        show(fig.add_subplot(1, len(panels), k), v, t, "coolwarm" if t == "difference" else "gray")
    return _png(fig)


def plot_reach(sec: dict) -> str | None:
    """Lower/upper bounds of both ends of a reach section over time (None without history)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    drawn = False
    for end, colour in (("min", "#4a78b5"), ("max", "#b3261e")):
        hist = np.array([[as_float(v) for v in row] for row in (sec.get(end) or {}).get("history") or []])
        if hist.size:
            ax.fill_between(hist[:, 0], hist[:, 1], hist[:, 2], step="post", alpha=0.3, color=colour)
            ax.step(hist[:, 0], hist[:, 1], where="post", color=colour, label=f"{end}: lower / upper")
            ax.step(hist[:, 0], hist[:, 2], where="post", color=colour)
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("seconds")
    ax.set_ylabel("objective")
    ax.legend(fontsize=8)
    ax.set_title("bounds on the minimum and maximum over time", fontsize=10)
    return _png(fig)


def plot_certified(rows: list[dict]) -> str:
    """Certified accuracy of a smoothing data-set run against the l2 radius."""
    radius = np.array([float(r["radius"]) for r in rows])
    correct = np.array([str(r["correct"]) == "1" for r in rows])
    grid = np.linspace(0.0, max(1.0, float(radius.max(initial=0.0)) * 1.05), 400)
    acc = (correct[None, :] & (radius[None, :] >= grid[:, None])).mean(axis=1)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(grid, acc, drawstyle="steps-post")
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"smoothed classifier g, {len(rows)} inputs (probabilistic)", fontsize=10)
    return _png(fig)
