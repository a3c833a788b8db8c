"""How many threads `threads=0` means: the cores this process may run on.

`os.cpu_count()` counts the machine's cores; a container's cpuset, `taskset`, or Android's
affinity for an app can give a process fewer. Asking llama.cpp or onnxruntime for more threads
than the process can run makes them wait on each other (llama.cpp's threads spin at every
barrier), which is many times slower, not a little.
"""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (a container or taskset can give fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def resolve_threads(asked: int) -> int:
    """`asked`, or for 0 the usable cores."""
    return asked or usable_cores()
