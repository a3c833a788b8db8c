"""Open one tensor part of a bundle and run it once, in its own process, for the hostile-input
tests: exit 0 when it ran, 2 with one `error: <Type>: <message>` line when mmedge refused it; a
crash inside a native library shows as a signal (negative return code) to the parent.

    python -m tests.hostile_runner BUNDLE ROLE
"""
from __future__ import annotations

import sys


def main(bundle: str, role: str) -> int:
    import numpy as np

    from mmedge.bundle import open_bundle
    from mmedge.errors import MmedgeError
    from mmedge.runtime.backends import open_tensor_part

    try:
        b = open_bundle(bundle)
        part = b.manifest.parts[role]
        backend = open_tensor_part(b.path_for(part), part, threads=1)
        shape = [2 if isinstance(d, str) else d for d in part.inputs[0].shape]
        out = backend.run(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        print(f"ran: output {tuple(out.shape)}")
        return 0
    except MmedgeError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
