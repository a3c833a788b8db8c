"""Open a bundle through the C ABI and, for an input case, generate once, in a process of its own
(so an abort inside native code is a signal the parent sees, not the end of the test run). Prints
the status name: `python -m tests.native.native_runner LIB BUNDLE [INPUT_CASE]`."""
from __future__ import annotations

import sys


def main(lib: str, bundle: str, case: str | None = None) -> int:
    from .native_cases import INPUT_CASES
    from .native_helpers import binding

    native = binding()
    runtime = native.NativeRuntime(lib)
    try:
        ctx = runtime.open(bundle, n_threads=1, n_ctx=1024)
    except native.NativeError as e:
        print(e.name)
        print(e.message, file=sys.stderr)
        return 0
    with ctx:
        if case is None:
            print("MMEDGE_OK")
            return 0
        images, prompt, params, _ = INPUT_CASES[case]
        try:
            ctx.generate(images, prompt, max_new_tokens=params.pop("max_new_tokens", 4), **params)
            print("MMEDGE_OK")
        except native.NativeError as e:
            print(e.name)
            print(e.message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
