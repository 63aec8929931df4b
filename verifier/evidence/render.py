"""Human-readable safety reports: a self-contained HTML page and Markdown text.

Both come from one list of blocks (headings, paragraphs, key/value lists, tables, images) built
from the JSON report and its sidecar; plots (:mod:`verifier.evidence.render_plots`) are drawn
with matplotlib (Agg canvas, no global state) and embedded as base64 PNG, so the page needs no
network and no scripts.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

from verifier.evidence.render_plots import plot_boxes, plot_certified, plot_histogram, plot_images, plot_reach
from verifier.evidence.report import as_float, load_report, load_sidecar, sha256_file

Block = tuple  # ("h", level, text) | ("p", text) | ("kv", [(k, v)]) | ("table", head, rows) | ("img", b64, caption)

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}code{font-size:.9em}img{max-width:100%}
.verdict{display:inline-block;padding:.2em .7em;border-radius:.3em;color:#fff;font-weight:bold}
.unsat{background:#2a7d2e}.sat{background:#b3261e}.other{background:#777}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}"""


# ---- blocks ---------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)) and len(v) > 12:
        return f"[{', '.join(_fmt(x) for x in v[:12])}, … ({len(v)} values)]"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _question(r: dict) -> list[Block]:
    m, p = r["model"], r.get("property") or {}
    s = m.get("summary") or {}
    out: list[Block] = [("h", 2, "The question"), ("kv", [
        ("model", m.get("path")), ("model SHA-256", m.get("sha256")),
        ("input / output shape", f"{s.get('input_shape')} → {s.get('output_shape')}"),
        ("ops", _fmt(s.get("ops", {}))), ("parameters", s.get("n_params"))])]
    if not p:
        return out
    ps = p.get("summary") or {}
    out.append(("kv", [("property", p.get("path") or f"embedded ({p.get('source', '')})"),
                       ("property SHA-256", p.get("sha256", "in the sidecar")),
                       ("cases (input regions)", ps.get("n_cases"))]
                + ([("query", _fmt(ps["meta"]))] if ps.get("meta") else [])))
    rows = [[i, c["disjuncts"], sum(c["rows"]), f"[{c['input_min']:.6g}, {c['input_max']:.6g}]",
             f"{c['width_min']:.4g} / {c['width_mean']:.4g} / {c['width_max']:.4g}", c["fixed_inputs"],
             "" if c.get("l2_radius") is None else f"{c['l2_radius']:.6g}"]
            for i, c in enumerate(ps.get("cases", [])[:50])]
    out.append(("table", ["case", "unsafe disjuncts", "rows", "input range", "widths min/mean/max",
                          "fixed inputs", "L2 radius"], rows))
    first = (ps.get("cases") or [{}])[0]
    if first.get("ranges"):
        out.append(("p", "Input box of case 0 (the counterexample must lie inside; the proof covers all of it):"))
        out.append(("table", ["input", "lower", "upper"],
                    [[f"X_{i}", a, b] for i, (a, b) in enumerate(first["ranges"])]))
    return out


def _answer(r: dict) -> list[Block]:
    stats = r.get("stats") or {}
    return [("h", 2, "The answer"), ("verdict", r.get("verdict", "?")), ("kv", [
        ("status", r.get("status")), ("reason", r.get("reason")), ("time (s)", stats.get("time")),
        ("started", r.get("started")), ("finished", r.get("finished"))])]


def _trail(r: dict) -> list[Block]:
    trail = r.get("trail") or []
    if not trail:
        return []
    keys = [k for k in ("engine", "case", "outcome", "proven", "worst_bound", "domains_bounded", "time", "reason")
            if any(k in t for t in trail)]
    keys += sorted({k for t in trail for k in t} - set(keys))
    return [("h", 2, "Method trail"), ("p", "Each engine that ran, in order (times are seconds since the start)."),
            ("table", keys, [[_fmt(t.get(k, "")) for k in keys] for t in trail])]


def _counterexample(r: dict, arrays) -> list[Block]:
    ev = r["evidence"]
    x, y = np.array([as_float(v) for v in ev["x"]]), np.array([as_float(v) for v in ev["y"]])
    out: list[Block] = [("h", 2, "Evidence: a counterexample"), ("kv", [
        ("case / disjunct", f"{ev['case']} / {ev['disjunct']}"), ("margin max(C y - d) (≤ 0 violates)", ev["margin"]),
        ("confirmed by", ev.get("confirmed_by")), ("check it", f"verifier check {r.get('_path', 'REPORT')}")])]
    lo = hi = None
    if arrays is not None and "cex.region_lower" in arrays:
        lo, hi = arrays["cex.region_lower"], arrays["cex.region_upper"]
    shape = tuple((r["model"].get("summary") or {}).get("input_shape") or ev.get("input_shape") or [])
    if _image_shaped(shape):
        centre = None if lo is None else (lo + hi) / 2
        out.append(("img", plot_images(x, centre, shape), "counterexample as an image"))
    out.append(("p", "Inputs (value, then the region's bounds):"))
    out.append(_grid(["input", "value", "lower", "upper"] if lo is not None else ["input", "value"],
                     [[f"X_{i}", float(x[i])] + ([float(lo[i]), float(hi[i])] if lo is not None else [])
                      for i in range(min(x.size, 256))]))
    if x.size > 256:
        out.append(("p", f"(first 256 of {x.size} inputs shown; all are in the JSON)"))
    out.append(("p", "Outputs (onnxruntime on the float32 input):"))
    out.append(_grid(["output", "value"], [[f"Y_{j}", float(v)] for j, v in enumerate(y[:256])]))
    return out


def _grid(head: list[str], rows: list[list], per_line: int = 4) -> Block:
    """A long two-column-ish table folded into ``per_line`` groups side by side."""
    if len(rows) <= 16:
        return ("table", head, rows)
    n = math.ceil(len(rows) / per_line)
    folded = [sum((rows[k * n + i] if k * n + i < len(rows) else [""] * len(head) for k in range(per_line)), [])
              for i in range(n)]
    return ("table", head * per_line, folded)


def _image_shaped(shape: tuple[int, ...]) -> bool:
    """Two spatial dimensions of at least 2 with 1 or 3 channels in front (or none)."""
    if len(shape) < 2 or min(shape[-2:]) < 2:
        return False
    return int(np.prod(shape[:-2])) in (1, 3)


def _proof(r: dict, arrays) -> list[Block]:
    ev = r["evidence"]
    margin = as_float((r.get("settings") or {}).get("proof_margin", 0.0))
    out: list[Block] = [("h", 2, "Evidence: a proof"), ("p", f"{ev['n_leaves']} leaves; each closes a piece of a "
                        f"case's region with a lower bound of the best row of every unsafe disjunct above "
                        f"the proof margin {margin:g}. Weakest leaf bound: {_fmt(as_float(ev['worst_leaf_bound']))}."),
                        ("table", ["group", "case", "method", "kind", "leaves", "min bound", "max bound",
                                   "multipliers"],
                         [[g["prefix"], g["case"], g["method"], g["kind"], g["count"], _fmt(as_float(g["bound_min"])),
                           _fmt(as_float(g["bound_max"])),
                           ", ".join(f"{k}: {len(g.get(k) or [])}" for k in ("alpha", "beta"))]
                          for g in ev["groups"]])]
    if arrays is None:
        return out
    bounds = np.concatenate([arrays[g["prefix"] + "bound"] for g in ev["groups"]] or [np.zeros(0)])
    if bounds.size > 1:
        out.append(("img", plot_histogram(bounds, "leaf bound (lower bound of C y - d)", "leaf bounds", margin),
                    "histogram of the recorded leaf bounds"))
    box = [g for g in ev["groups"] if g["kind"] == "box"]
    if box:
        lows = np.concatenate([arrays[g["prefix"] + "lower"] for g in box])
        highs = np.concatenate([arrays[g["prefix"] + "upper"] for g in box])
        widths = highs.max(0) - lows.min(0)
        if widths.size >= 2:
            dims = tuple(int(d) for d in np.argsort(-widths, kind="stable")[:2])
            b = np.concatenate([arrays[g["prefix"] + "bound"] for g in box])
            out.append(("img", plot_boxes(lows, highs, b, dims), "input-split leaves on the two widest inputs"))
    split = [g for g in ev["groups"] if g["kind"] == "split"]
    if split:
        depth = np.concatenate([(arrays[g["prefix"] + "split_node"] >= 0).sum(1) for g in split]).astype(float)
        out.append(("p", f"ReLU splits per leaf: min {depth.min():.0f}, mean {depth.mean():.1f}, "
                         f"max {depth.max():.0f}."))
    return out


def _smoothing(r: dict) -> list[Block]:
    sec = r["smoothing"]
    out: list[Block] = [("h", 2, "Randomized smoothing (probabilistic certificate about g, not f)")]
    one = sec.get("single")
    if one:
        out.append(("kv", [(k, _fmt(one.get(k))) for k in ("prediction", "radius", "pA_lower", "sigma", "n0", "n",
                                                         "alpha", "seed", "statement", "reason")]))
        out.append(("table", ["class", "count"], [[i, c] for i, c in enumerate(one.get("counts") or [])]))
    rows = (sec.get("dataset") or {}).get("rows") or []
    if rows:
        out.append(("img", plot_certified(rows), "certified accuracy against l2 radius"))
    return out


def _reach(r: dict) -> list[Block]:
    sec = r["reach"]
    out: list[Block] = [("h", 2, f"Guaranteed range of {sec.get('objective')}"), ("table", ["end", "lower", "upper",
                        "witness value (onnxruntime)", "converged"], [[e, _fmt(as_float(sec[e]["lower"])),
                        _fmt(as_float(sec[e]["upper"])), _fmt(sec[e].get("witness_value")), sec[e].get("converged")]
                        for e in ("min", "max")]),
                        ("kv", [(k, _fmt(sec.get(k))) for k in ("tolerance", "relative", "lipschitz", "time",
                                                                "boxes")])]
    img = plot_reach(sec)
    if img:
        out.append(("img", img, "bounds over time"))
    return out


def _environment(r: dict, sidecar_note: str) -> list[Block]:
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        else:
            flat.append((prefix, _fmt(v)))

    walk("", r.get("settings") or {})
    return [("h", 2, "Settings and environment"), ("kv", flat), ("kv", list((r.get("environment") or {}).items())),
            ("p", sidecar_note)]


def build_blocks(r: dict, arrays, sidecar_note: str) -> list[Block]:
    """The document: question, answer, evidence, trail, settings."""
    m = Path(str(r["model"].get("path"))).name
    p = Path(str((r.get("property") or {}).get("path") or "")).name
    blocks: list[Block] = [("h", 1, f"Safety report: {m}" + (f" / {p}" if p else ""))]
    blocks += _question(r) + _answer(r)
    ev = r.get("evidence") or {}
    if r.get("kind") == "smoothing":
        blocks += _smoothing(r)
    elif r.get("kind") == "reach":
        blocks += _reach(r)
    elif ev.get("kind") == "counterexample":
        blocks += _counterexample(r, arrays)
    elif ev.get("kind") == "proof":
        blocks += _proof(r, arrays)
    else:
        blocks.append(("p", "No evidence: the run reached no verdict that needs one."))
    return blocks + _trail(r) + _environment(r, sidecar_note)


# ---- writers --------------------------------------------------------------------------------
def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    parts = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
             f"<style>{CSS}</style></head><body>"]
    for b in blocks:
        if b[0] == "h":
            parts.append(f"<h{b[1]}>{e(str(b[2]))}</h{b[1]}>")
        elif b[0] == "p":
            parts.append(f"<p>{e(str(b[1]))}</p>")
        elif b[0] == "verdict":
            cls = b[1] if b[1] in ("sat", "unsat") else "other"
            parts.append(f'<p>Verdict: <span class="verdict {cls}">{e(str(b[1]))}</span></p>')
        elif b[0] == "kv":
            parts.append("<table>" + "".join(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in b[1])
                         + "</table>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in row) + "</tr>" for row in b[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b[0] == "img":
            parts.append(f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{b[1]}">'
                         f"<figcaption>{e(b[2])}</figcaption></figure>")
    return "\n".join(parts) + "\n</body></html>\n"


def to_markdown(blocks: list[Block]) -> str:
    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    parts = []
    for b in blocks:
        if b[0] == "h":
            parts.append("#" * b[1] + " " + str(b[2]))
        elif b[0] == "p":
            parts.append(str(b[1]))
        elif b[0] == "verdict":
            parts.append(f"**Verdict: {b[1]}**")
        elif b[0] == "kv":
            parts.append("\n".join(f"- **{k}**: {cell(v)}" for k, v in b[1]))
        elif b[0] == "table":
            lines = ["| " + " | ".join(cell(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in b[2]]
            parts.append("\n".join(lines))
        elif b[0] == "img":
            parts.append(f"![{b[2]}](data:image/png;base64,{b[1]})")
    return "\n\n".join(parts) + "\n"


def render_files(report_path: str, html_path: str | None = None, md_path: str | None = None) -> list[str]:
    """Render the report at ``report_path``; returns the files written."""
    from verifier.resultfile import write_atomic

    r = load_report(report_path)
    r["_path"] = str(report_path)
    arrays, note = None, "No sidecar."
    if r.get("sidecar"):
        side = Path(report_path).parent / r["sidecar"]["path"]
        if side.is_file():
            same = sha256_file(side) == r["sidecar"].get("sha256")
            note = f"Sidecar {side.name}: SHA-256 {'matches the report' if same else 'DOES NOT MATCH the report'}."
            arrays = load_sidecar(report_path, r) if same else None
        else:
            note = f"Sidecar {side.name} is missing: leaf plots are omitted."
    blocks = build_blocks(r, arrays, note + " Run `verifier check` for the independent check.")
    written = []
    if html_path:
        write_atomic(html_path, to_html(blocks, str(blocks[0][2])))
        written.append(html_path)
    if md_path:
        write_atomic(md_path, to_markdown(blocks))
        written.append(md_path)
    return written
