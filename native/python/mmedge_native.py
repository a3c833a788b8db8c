"""ctypes binding of the native runtime's C ABI (native/include/mmedge.h), for tests and benchmarks
that drive libmmedge from Python. Nothing here imports numpy or torch; images are bytes.

    from mmedge_native import NativeRuntime
    rt = NativeRuntime(lib_path)
    with rt.open(bundle_dir, n_threads=1, exact=True) as ctx:
        result = ctx.generate([(rgb_bytes, width, height)], "What is this?", max_new_tokens=16)
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

STATUS_NAMES = ("MMEDGE_OK", "MMEDGE_ERR_INVALID_ARGUMENT", "MMEDGE_ERR_IO", "MMEDGE_ERR_MANIFEST", "MMEDGE_ERR_VERSION",
                "MMEDGE_ERR_INTEGRITY", "MMEDGE_ERR_UNSUPPORTED", "MMEDGE_ERR_BACKEND", "MMEDGE_ERR_IMAGE",
                "MMEDGE_ERR_PROMPT", "MMEDGE_ERR_STOPPED", "MMEDGE_ERR_INTERNAL", "MMEDGE_ERR_FORMAT")
OK, STOPPED = 0, 10
ABI_VERSION = 2  # MMEDGE_ABI_VERSION of the header these structures mirror


class Params(ctypes.Structure):
    _fields_ = [("n_ctx", ctypes.c_int32), ("n_batch", ctypes.c_int32), ("n_threads", ctypes.c_int32),
                ("exact", ctypes.c_int32), ("check_hashes", ctypes.c_int32)]


class Image(ctypes.Structure):
    _fields_ = [("rgb", ctypes.POINTER(ctypes.c_uint8)), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("stride", ctypes.c_int32)]


class GenerationParams(ctypes.Structure):
    _fields_ = [("max_new_tokens", ctypes.c_int32), ("min_new_tokens", ctypes.c_int32), ("temperature", ctypes.c_double),
                ("top_k", ctypes.c_int32), ("top_p", ctypes.c_double), ("seed", ctypes.c_uint64),
                ("raw_prompt", ctypes.c_int32)]


class Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in
                ("load_s", "preprocess_s", "encode_s", "project_s", "prefill_s", "first_token_s", "decode_s")] + \
               [("prompt_positions", ctypes.c_int32), ("new_tokens", ctypes.c_int32), ("stopped", ctypes.c_int32)]


TokenCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p)


class NativeError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status_name(status)}: {message}")
        self.status, self.name, self.message = status, status_name(status), message


def status_name(status: int) -> str:
    return STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else f"status {status}"


@dataclass
class NativeResult:
    status: int
    tokens: list[int]
    text: str
    stats: dict = field(default_factory=dict)


class NativeRuntime:
    def __init__(self, lib_path: str | Path):
        lib = ctypes.CDLL(str(lib_path))
        if lib.mmedge_abi_version() != ABI_VERSION:  # the structures below would be read with the wrong layout
            raise NativeError(1, f"{lib_path} has ABI version {lib.mmedge_abi_version()}, this binding reads {ABI_VERSION}: "
                                 "rebuild native/ (./setup.sh) or use the binding beside that build")
        lib.mmedge_params_default.restype = Params
        lib.mmedge_generation_params_default.restype = GenerationParams
        lib.mmedge_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(Params), ctypes.POINTER(ctypes.c_void_p)]
        lib.mmedge_generate.argtypes = [ctypes.c_void_p, ctypes.POINTER(Image), ctypes.c_int32, ctypes.c_char_p,
                                        ctypes.POINTER(GenerationParams), TokenCallback, ctypes.c_void_p,
                                        ctypes.POINTER(ctypes.c_int32), ctypes.c_int32, ctypes.POINTER(ctypes.c_int32),
                                        ctypes.POINTER(Stats)]
        lib.mmedge_preprocess_image.argtypes = [ctypes.c_void_p, ctypes.POINTER(Image), ctypes.POINTER(ctypes.c_float),
                                                ctypes.c_int64, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32)]
        lib.mmedge_last_error.restype = ctypes.c_char_p
        lib.mmedge_image_marker.argtypes = [ctypes.c_void_p]
        lib.mmedge_image_marker.restype = ctypes.c_char_p
        lib.mmedge_close.argtypes = [ctypes.c_void_p]
        lib.mmedge_stop.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def last_error(self) -> str:
        return self.lib.mmedge_last_error().decode("utf-8", errors="replace")

    def open(self, bundle_dir: str | Path | None, **params) -> "NativeContext":
        p = self.lib.mmedge_params_default()
        for name, value in params.items():
            setattr(p, name, value)
        handle = ctypes.c_void_p()
        path = None if bundle_dir is None else str(bundle_dir).encode()
        status = self.lib.mmedge_open(path, ctypes.byref(p), ctypes.byref(handle))
        if status != OK:
            raise NativeError(status, self.last_error())
        return NativeContext(self, handle)


def _image(rgb: bytes, width: int, height: int, stride: int | None = None):
    buf = (ctypes.c_uint8 * max(len(rgb), 1)).from_buffer_copy(rgb or b"\0")
    return Image(ctypes.cast(buf, ctypes.POINTER(ctypes.c_uint8)), width, height, 3 * width if stride is None else stride), buf


class NativeContext:
    def __init__(self, runtime: NativeRuntime, handle: ctypes.c_void_p):
        self.rt, self.handle = runtime, handle

    def __enter__(self) -> "NativeContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.handle:
            self.rt.lib.mmedge_close(self.handle)
            self.handle = ctypes.c_void_p()

    def stop(self) -> None:
        """Ask a generate() running in another thread to stop (mmedge_stop)."""
        self.rt.lib.mmedge_stop(self.handle)

    @property
    def marker(self) -> str:
        return self.rt.lib.mmedge_image_marker(self.handle).decode()

    def generate(self, images: list[tuple], prompt: str, stop_after: int | None = None, on_piece=None,
                 **params) -> NativeResult:
        """`images`: (rgb bytes, width, height[, stride]) each; `stop_after`: the callback stops after
        that many pieces; `on_piece()`: called with each. Raises NativeError unless OK/STOPPED."""
        gp = self.rt.lib.mmedge_generation_params_default()
        for name, value in params.items():
            setattr(gp, name, value)
        made = [_image(*im) for im in images]
        array = (Image * max(len(made), 1))(*[m[0] for m in made])
        pieces: list[str] = []

        @TokenCallback
        def on_token(token, text, _user):
            pieces.append(text.decode("utf-8"))
            if on_piece is not None:
                on_piece()
            return 0 if stop_after is not None and len(pieces) >= stop_after else 1

        capacity = gp.max_new_tokens
        tokens = (ctypes.c_int32 * capacity)()
        n = ctypes.c_int32()
        stats = Stats()
        status = self.rt.lib.mmedge_generate(self.handle, array if made else None, len(made), prompt.encode(),
                                             ctypes.byref(gp), on_token, None, tokens, capacity, ctypes.byref(n),
                                             ctypes.byref(stats))
        if status not in (OK, STOPPED):
            raise NativeError(status, self.rt.last_error())
        return NativeResult(status, list(tokens[: min(n.value, capacity)]), "".join(pieces),
                            {name: getattr(stats, name) for name, _ in Stats._fields_})

    def preprocess(self, rgb: bytes, width: int, height: int) -> tuple[list[float], int, int]:
        image, _keep = _image(rgb, width, height)
        h, w = ctypes.c_int32(), ctypes.c_int32()
        status = self.rt.lib.mmedge_preprocess_image(self.handle, ctypes.byref(image), None, 0, ctypes.byref(h), ctypes.byref(w))
        if status != OK:
            raise NativeError(status, self.rt.last_error())
        out = (ctypes.c_float * (3 * h.value * w.value))()
        status = self.rt.lib.mmedge_preprocess_image(self.handle, ctypes.byref(image), out, len(out), ctypes.byref(h),
                                                     ctypes.byref(w))
        if status != OK:
            raise NativeError(status, self.rt.last_error())
        return out, h.value, w.value
