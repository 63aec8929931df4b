"""Running one fuzz case under a time budget and judging its outcome with onnxruntime.

An outcome is either a verdict (``sat``/``unsat``/``unknown``/``timeout``) or a classified
:class:`~verifier.errors.VerifierError` that is not an internal error. A ``sat`` verdict must
carry a witness that violates the property on onnxruntime's output; an ``unsat`` verdict must
survive dense sampling of the property's input boxes (both judged by ``holds``, a function of
flat ``x`` and onnxruntime's ``y`` that returns True/False, or None when undecidable).
"""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from conftest import ort_forward
from verifier import api
from verifier.errors import InternalError, VerifierError

VERIFY_TIMEOUT = 2.0   # seconds given to verify in every fuzz case
SLACK = 2.0            # the case must end within VERIFY_TIMEOUT + SLACK seconds of CPU time
HANG = 60.0            # wall-clock seconds after which a case is aborted as hung

Holds = Callable[[np.ndarray, np.ndarray], "bool | None"]


class Hang(AssertionError):
    """A fuzz case ran past its wall-clock limit."""


@contextmanager
def watchdog(wall_seconds: float = HANG):
    """Abort the block with :class:`Hang` after ``wall_seconds`` of wall-clock time."""
    def alarm(_signum, _frame):
        raise Hang(f"no answer after {wall_seconds:.0f} s of wall-clock time")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    """What a fuzz case ended in: a verdict with its result, or a classified error."""

    verdict: str | None = None
    result: object = None
    prop: object = None
    error: VerifierError | None = None


def run_case(model: Path, spec: Path, timeout: float = VERIFY_TIMEOUT) -> Outcome:
    """Load, parse and verify; any exception other than a classified, non-internal
    :class:`VerifierError` propagates (and fails the test). The verify call must end within
    ``timeout + SLACK`` seconds of CPU time (CPU, not wall time: the machine is shared, and a
    deadline honoured by the clock shows as bounded CPU use); a hang is aborted by
    :func:`watchdog`."""
    with watchdog():
        try:
            graph = api.load_model(model)
            prop = api.load_property(spec, graph)
            start = time.process_time()
            result = api.verify(graph, prop, timeout=timeout)
            used = time.process_time() - start
        except VerifierError as e:
            assert not isinstance(e, InternalError), f"internal error on {model.name}, {spec.name}: {e}"
            assert "\n" not in str(e) and str(e) == e.one_line()
            _event(f"exit {e.exit_code}")
            return Outcome(error=e)
    assert used <= timeout + SLACK, f"verify used {used:.2f} s of CPU time with a {timeout} s limit"
    _event(f"verdict {result.verdict}")
    return Outcome(verdict=result.verdict, result=result, prop=prop)


def _event(text: str) -> None:
    """Count outcomes in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    from hypothesis import event
    from hypothesis.errors import InvalidArgument

    try:
        event(text)
    except InvalidArgument:   # not inside a hypothesis test
        pass


def check_verdict(out: Outcome, model: Path, holds: Holds, boxes: list[tuple[np.ndarray, np.ndarray]],
                  samples: int = 200, seed: int = 0) -> None:
    """A ``sat`` witness violates the property on onnxruntime's output; an ``unsat`` verdict
    has no violation among ``samples`` uniform points (plus centre) of every box (points whose
    float32 output overflowed are skipped: the proof is about the real-valued network)."""
    if out.verdict == "sat":
        x = np.asarray(out.result.counterexample.x, np.float32).reshape(1, -1)
        y = ort_forward(model, x)[0]
        assert holds(x[0], y) is True, f"sat witness does not violate the property: x={x[0]}, y={y}"
    elif out.verdict == "unsat":
        gen = np.random.default_rng(seed)
        for lo, hi in boxes:
            with np.errstate(over="ignore"):
                pts = np.concatenate([gen.uniform(lo, hi, size=(samples, lo.size)), ((lo + hi) / 2)[None]])
                pts = pts.astype(np.float32)
            ys = ort_forward(model, pts)
            bad = [i for i, (p, y) in enumerate(zip(pts, ys)) if np.all(np.isfinite(y)) and holds(p, y) is True]
            assert not bad, f"unsat, yet the sampled input {pts[bad[0]]} violates the property"


def parsed_holds(prop) -> Holds:
    """``holds`` from our own parse of a property (for texts whose meaning is the parser's):
    each row ``C_k · y <= d_k`` summed over its non-zero coefficients, so an overflowed output
    (±inf) counts only in the rows that use it; ``inf - inf`` or a NaN output: undecided."""
    def holds(x: np.ndarray, y: np.ndarray) -> bool | None:
        x, y = np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
        if np.any(np.isnan(y)):
            return None
        undecided = False
        for case in prop.cases:
            if not case.region.contains(x):
                continue
            for conj in case.unsafe:
                with np.errstate(invalid="ignore", over="ignore"):
                    rows = [float(np.dot(c[c != 0], y[c != 0])) - d for c, d in zip(conj.C, conj.d)]
                if any(np.isnan(rows)):
                    undecided = True
                elif all(v <= 0 for v in rows):
                    return True
        return None if undecided else False
    return holds


def parsed_boxes(prop) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(c.region.lower, c.region.upper) for c in prop.cases]
