"""Out-of-memory handling: recognise the error, free what can be freed, run a batch in halves.

Branch and bound bounds many sub-domains at once; when a batch does not fit (CPU or GPU), the
same batch is bounded again in halves, recursively, so the search goes on with the same
results and only smaller working sets. A single domain that still does not fit raises
:class:`verifier.errors.ResourceError`, which callers turn into ``unknown`` with the reason.
A memory cap (``--memory-limit``) makes the process meet this path before the machine does.
"""
from __future__ import annotations

import gc
import resource
from typing import Callable, Sequence, TypeVar

import torch

from verifier.errors import ResourceError

T = TypeVar("T")

_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory", "std::bad_alloc")


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure (Python, torch CPU or CUDA allocator)."""
    if isinstance(e, MemoryError) or isinstance(e, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(e, RuntimeError) and any(w in str(e).lower() for w in _OOM_WORDS)


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks, so a retry starts from a clean slate."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def in_halves(run: Callable[[slice], T], size: int, merge: Callable[[Sequence[T]], T], what: str) -> T:
    """``run(slice(0, size))``; if it runs out of memory, the same items in two halves (each
    halved again as needed) merged with ``merge``. One item that does not fit raises
    :class:`ResourceError` naming ``what``."""
    try:
        return run(slice(0, size))
    except Exception as e:  # only allocation failures are handled; the rest propagate
        if not is_out_of_memory(e):
            raise
    free_memory()
    if size <= 1:
        raise ResourceError(f"out of memory while bounding {what}, even one sub-domain at a time")
    half = size // 2
    parts = [in_halves(lambda s, o=o: run(slice(o + s.start, o + s.stop)), n, merge, what)
             for o, n in ((0, half), (half, size - half))]
    return merge(parts)


def cap_memory(limit_mib: float | None, device: str = "cpu") -> None:
    """Limit this process's memory to ``limit_mib`` MiB: the data segment on CPU (allocations
    beyond it fail, and are handled as above), the per-process share of the GPU on CUDA."""
    if not limit_mib:
        return
    limit = int(limit_mib * 1024 * 1024)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), torch.device(device))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (new, hard))
