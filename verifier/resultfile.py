"""Writing results that survive crashes: atomic files and VNN-COMP result files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from verifier.errors import InputError
from verifier.result import Result


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees either the old or the whole new file.

    A path that cannot be written (a folder, no permission, disk full) is an input error.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise InputError(f"cannot write the file ({e.strerror or type(e).__name__})", path=str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InputError(f"cannot write the file ({e.strerror or type(e).__name__})",
                             path=str(path)) from None
        raise


def vnncomp_text(result: Result) -> str:
    """The VNN-COMP result file: the verdict, then after ``sat`` the witness (X then Y)."""
    lines = [result.verdict]
    cex = result.counterexample
    if cex is not None:
        xs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(cex.x.reshape(-1))]
        ys = [f"(Y_{j} {float(v)!r})" for j, v in enumerate(cex.y.reshape(-1))]
        body = "\n ".join(xs + ys)
        lines.append(f"({body})")
    return "\n".join(lines) + "\n"
