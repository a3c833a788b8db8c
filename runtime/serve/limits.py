"""What one server accepts: typed, validated, and shown on `GET /health`."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from mmedge.errors import ServeError


@dataclass(frozen=True)
class ServeLimits:
    max_body_bytes: int = 20 << 20  # a request body (base64 images included)
    max_images: int = 8  # per request
    max_tokens: int = 1024  # the largest max_tokens a request may ask for
    default_max_tokens: int = 256  # when the request gives none
    max_queue: int = 64  # requests waiting for the worker; more get 503
    image_root: Path | None = None  # local image files (file:// or paths) only under this folder

    def __post_init__(self) -> None:
        for name, low, high in (("max_body_bytes", 1024, 1 << 30), ("max_images", 0, 256), ("max_tokens", 1, 1 << 20),
                                ("default_max_tokens", 1, 1 << 20), ("max_queue", 1, 1 << 16)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ServeError(f"{name} must be in {low} .. {high}, got {value}")
        if self.default_max_tokens > self.max_tokens:
            raise ServeError(f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens ({self.max_tokens})")
        if self.image_root is not None:
            root = Path(self.image_root)
            if not root.is_dir():
                raise ServeError(f"--image-root {root}: not a folder; give the folder local images may be read from")
            object.__setattr__(self, "image_root", root.resolve())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_root"] = str(self.image_root) if self.image_root else None
        return d


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`mmedge serve`'s limit options, with ServeLimits' defaults."""
    d = ServeLimits()
    p.add_argument("--image-root", help="a folder whose image files requests may name (file:// URLs or paths); "
                   "without it only data URIs are accepted")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="the largest max_tokens a request may ask for")
    p.add_argument("--default-max-tokens", type=int, default=d.default_max_tokens, help="max_tokens when a request gives none")
    p.add_argument("--max-images", type=int, default=d.max_images, help="images per request")
    p.add_argument("--max-body-mib", type=float, default=d.max_body_bytes / (1 << 20),
                   help="request body size limit in MiB (base64 images included)")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="requests that may wait; more get HTTP 503")


def limits_from_args(args: argparse.Namespace) -> ServeLimits:
    return ServeLimits(max_body_bytes=int(args.max_body_mib * (1 << 20)), max_images=args.max_images,
                       max_tokens=args.max_tokens, default_max_tokens=min(args.default_max_tokens, args.max_tokens),
                       max_queue=args.max_queue, image_root=Path(args.image_root) if args.image_root else None)
