"""One error taxonomy for the CLI and the API.

Every error the user can cause or meet is a :class:`VerifierError` with an exit code and a
one-line message that names the file and, where known, the location (node, line, column).
"""
from __future__ import annotations


class VerifierError(Exception):
    """Base class: a classified, user-facing error with its own exit code."""

    exit_code = 5
    kind = "error"

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None):
        self.message = message
        self.path = path
        self.where = where
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``file:location: message`` on a single line."""
        prefix = ":".join(str(p) for p in (self.path, self.where) if p)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())


class InputError(VerifierError):
    """The user's input is wrong: missing or malformed file, bad number, shape mismatch."""

    exit_code = 3
    kind = "input error"


class UnsupportedError(InputError):
    """The input is well formed but uses something we do not support (an ONNX op, say)."""

    exit_code = 4
    kind = "unsupported"


class ResourceError(VerifierError):
    """Out of memory or another resource limit that could not be worked around."""

    exit_code = 6
    kind = "resource error"


class InternalError(VerifierError):
    """A bug in the verifier itself; never the user's fault."""

    exit_code = 5
    kind = "internal error"


EXIT_CODES = {
    "verdict": 0,
    "usage": 2,
    InputError.kind: InputError.exit_code,
    UnsupportedError.kind: UnsupportedError.exit_code,
    InternalError.kind: InternalError.exit_code,
    ResourceError.kind: ResourceError.exit_code,
}
