"""ExecuTorch's thread pool: one per process, sized before the first program loads.

XNNPACK takes a pointer to ExecuTorch's process-wide pool when a method loads, and
`_unsafe_reset_threadpool` frees that pool and makes a new one. Resizing it while a loaded
method is alive leaves the method with a freed pool: its next run corrupts the heap (seen here
as `free(): invalid next size` and, earlier, as a deadlock). So the pool is resized only while
no .pte part of this process is alive; a part opened later with another thread count runs on
the pool as it is and says so in its placement note.

The native runtime keeps the same rule for its own parts. The two runtimes cannot see each
other's parts, so a process that runs both should ask both for the same thread count.
"""
from __future__ import annotations

import weakref

# The .pte parts alive in this process: while any is, the pool must keep its size.
_live_parts: weakref.WeakSet = weakref.WeakSet()


def _pool():
    from executorch.extension.pybindings import portable_lib  # imports torch; only for .pte parts

    return portable_lib


def pool_threads() -> int:
    """Threads ExecuTorch's pool runs now."""
    return int(_pool()._threadpool_get_thread_count())


def claim_pool(owner: object, threads: int) -> int:
    """Size the pool to `threads` if no live part holds it, register `owner` (before it loads its
    method) as holding it, and return the threads it will really run on."""
    pool = _pool()
    current = int(pool._threadpool_get_thread_count())
    if current != threads and not _live_parts:
        pool._unsafe_reset_threadpool(threads)
        current = int(pool._threadpool_get_thread_count())
    _live_parts.add(owner)
    return current
