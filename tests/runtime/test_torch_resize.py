"""resize_uint8 is bit-exact with torch's uint8 antialiased bicubic/bilinear interpolate (CPU), the
resize HF's video processors apply to decoded frames, and it never imports torch."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmedge.runtime.torch_resize import axis_weights, resize_uint8
from tests.aten_capabilities import aten_capabilities, run_under

torch = pytest.importorskip("torch", reason="torch is the reference for resize_uint8; it is not installed")
skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photographs")
F = torch.nn.functional

MODES = ("bicubic", "bilinear")
SIZES = [
    (384, 384),   # the usual video-processor target
    (224, 224),
    (56, 84),     # strong downscale, odd aspect
    (140, 196),
    (301, 223),   # odd sizes
    (1, 1),
    (3, 500),     # squash one axis, stretch the other
    (700, 900),   # upscaling on both axes
    (97, 1201),   # mixed: down in height, up in width
]


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    gray = skdata.camera()
    return {
        "astronaut": skdata.astronaut(),      # 512x512
        "chelsea": skdata.chelsea(),          # 300x451
        "coffee": skdata.coffee(),            # 400x600
        "camera": np.repeat(gray[..., None], 3, axis=2),  # grayscale stacked to 3 channels
    }


def torch_resize(frames: np.ndarray, out_h: int, out_w: int, mode: str, contiguous: bool = False) -> np.ndarray:
    """The reference: torch's uint8 kernel on [N, 3, H, W]. By default the tensor is the channels-last
    view of the frames (as decoded video frames reach torchvision); `contiguous` makes it NCHW."""
    batch = frames if frames.ndim == 4 else frames[None]
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    if contiguous:
        t = t.contiguous()
    out = F.interpolate(t, size=(out_h, out_w), mode=mode, antialias=True, align_corners=False)
    out = out.permute(0, 2, 3, 1).contiguous().numpy()
    return out if frames.ndim == 4 else out[0]


def assert_bit_exact(ours: np.ndarray, ref: np.ndarray, label: str) -> None:
    assert ours.dtype == np.uint8 and ours.shape == ref.shape, (label, ours.dtype, ours.shape, ref.shape)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() == 0, f"{label}: max diff {diff.max()}, {np.mean(diff > 0):.4%} of values differ"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "camera"])
def test_photos_match_torch(images, name, mode):
    img = images[name]
    h, w = img.shape[:2]
    sizes = SIZES + [(h // 2 + 1, w), (h, w // 3), (h * 2 - 1, w), (h, w)]  # one axis kept; identity
    for out_h, out_w in sizes:
        assert_bit_exact(resize_uint8(img, out_h, out_w, mode), torch_resize(img, out_h, out_w, mode),
                         f"{name} {mode} {img.shape[:2]} -> {(out_h, out_w)}")


@pytest.mark.parametrize("mode", MODES)
def test_batch_of_frames(images, mode):
    """A clip: frames of one size, resized together, equal torch's batched call (and per frame)."""
    coffee = images["coffee"]
    frames = np.stack([coffee[i * 7:i * 7 + 360, i * 11:i * 11 + 540] for i in range(5)])  # [5, 360, 540, 3]
    for out_h, out_w in [(384, 384), (224, 336), (361, 541)]:
        ours = resize_uint8(frames, out_h, out_w, mode)
        assert_bit_exact(ours, torch_resize(frames, out_h, out_w, mode), f"batch {mode} -> {(out_h, out_w)}")
        assert_bit_exact(ours[2], resize_uint8(frames[2], out_h, out_w, mode), "frame 2 alone")


def float_reference(img: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    """The same resize computed in float32 and rounded: within 1 of the uint8 kernel where one pass runs
    (with two, the uint8 kernel clamps the intermediate image and the float one does not)."""
    t = torch.from_numpy(img[None].astype(np.float32)).permute(0, 3, 1, 2)
    out = F.interpolate(t, size=(out_h, out_w), mode=mode, antialias=True, align_corners=False)
    return out.round().clamp(0, 255).permute(0, 2, 3, 1)[0].numpy().astype(np.uint8)


@pytest.mark.parametrize("mode", MODES)
def test_random_noise(mode):
    """Noise stresses the clamping and rounding (bicubic's negative lobes overshoot 0..255)."""
    rng = np.random.default_rng(1234)
    portable = torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    for in_h, in_w, out_h, out_w in [(97, 131, 384, 384), (360, 640, 384, 384), (64, 48, 7, 5),
                                     (5, 3, 50, 61), (1, 9, 4, 2), (200, 1, 13, 1), (33, 33, 33, 34)]:
        img = rng.integers(0, 256, size=(in_h, in_w, 3), dtype=np.uint8)
        ours, label = resize_uint8(img, out_h, out_w, mode), f"noise {mode} {(in_h, in_w)} -> {(out_h, out_w)}"
        if portable and in_w == 1:
            # torch's portable uint8 kernel (ATEN_CPU_CAPABILITY=default, CPUs without AVX2) misreads a
            # one-pixel-wide image (off by up to 242 levels; its AVX2 kernel and its float kernel agree
            # with each other and with us). mmedge never resizes one (images have >= 8 pixels a side):
            # here the float computation of this one-pass resize is the reference, within 1.
            assert np.abs(ours.astype(int) - float_reference(img, out_h, out_w, mode)).max() <= 1, label
            assert not np.array_equal(ours, torch_resize(img, out_h, out_w, mode)), "torch's kernel was fixed: drop this"
            continue
        assert_bit_exact(ours, torch_resize(img, out_h, out_w, mode), label)
    extremes = rng.choice(np.array([0, 255], dtype=np.uint8), size=(2, 41, 53, 3))
    assert_bit_exact(resize_uint8(extremes, 90, 17, mode), torch_resize(extremes, 90, 17, mode), "0/255 noise")


def test_nchw_contiguous_input_gives_the_same_result(images):
    """torch's result does not depend on the tensor's memory format (NCHW contiguous vs channels-last).
    (Output size (1, 1) is left out: torch 2.13 raises an internal assert for it on NCHW uint8 input.)"""
    img = images["chelsea"]
    for out_h, out_w in [(384, 384), (56, 84), (3, 500), (700, 900)]:
        assert_bit_exact(resize_uint8(img, out_h, out_w), torch_resize(img, out_h, out_w, "bicubic", contiguous=True),
                         f"NCHW chelsea -> {(out_h, out_w)}")


# The child: torch's uint8 antialiased resize of photographs and noise, as digests of the outputs.
_TORCH_RESIZES = """
import hashlib
import numpy as np
import skimage.data
F = torch.nn.functional
rng = np.random.default_rng(7)
sources = {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(),
           "noise": rng.integers(0, 256, size=(97, 131, 3), dtype=np.uint8)}
digests = {}
for name, img in sources.items():
    for out_h, out_w in json.loads(sys.argv[1]):
        for mode in ("bicubic", "bilinear"):
            for contiguous in (False, True):
                t = torch.from_numpy(img[None].copy()).permute(0, 3, 1, 2)
                t = t.contiguous() if contiguous else t
                out = F.interpolate(t, size=(out_h, out_w), mode=mode, antialias=True, align_corners=False)
                key = f"{name}:{out_h}x{out_w}:{mode}:{'nchw' if contiguous else 'nhwc'}"
                digests[key] = hashlib.sha256(out.permute(0, 2, 3, 1).contiguous().numpy().tobytes()).hexdigest()
print(json.dumps({"capability": _CAPABILITY, "digests": digests}))
"""


@pytest.mark.parametrize("capability", aten_capabilities())
def test_equal_to_torch_under_every_kernel_set(capability):
    """torch has an AVX2 uint8 kernel (run under avx2 and avx512: it has no AVX-512 variant) and a
    portable one (default). The transformers an export runs on any x86 CPU takes one of them:
    resize_uint8 must equal each."""
    import hashlib

    sizes = [(384, 384), (56, 84), (3, 500), (700, 900), (97, 1201), (301, 223)]
    child = run_under(capability, _TORCH_RESIZES, json.dumps(sizes))
    rng = np.random.default_rng(7)
    sources = {"astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(),
               "noise": rng.integers(0, 256, size=(97, 131, 3), dtype=np.uint8)}
    for key, digest in child["digests"].items():
        name, size, mode, _ = key.split(":")
        out_h, out_w = map(int, size.split("x"))
        ours = resize_uint8(sources[name], out_h, out_w, mode)
        assert hashlib.sha256(ours.tobytes()).hexdigest() == digest, (capability, key)


def test_layouts_and_errors(images):
    img = images["astronaut"][:100, :120]
    single = resize_uint8(img, 40, 50)
    assert single.shape == (40, 50, 3) and single.dtype == np.uint8
    assert np.array_equal(resize_uint8(img[None], 40, 50)[0], single)
    same = resize_uint8(img, 100, 120)
    assert np.array_equal(same, img) and not np.shares_memory(same, img)
    with pytest.raises(TypeError):
        resize_uint8(img.astype(np.float32), 40, 50)
    with pytest.raises(ValueError):
        resize_uint8(img, 40, 50, mode="nearest")
    with pytest.raises(ValueError):
        resize_uint8(img, 0, 50)
    with pytest.raises(ValueError):
        resize_uint8(img[..., 0], 40, 50)


def test_weight_tables():
    """Each output's int16 weights sum to about 2**precision and the precision leaves int16 headroom."""
    for n_in, n_out in [(640, 384), (360, 384), (10, 1), (1, 10), (1920, 56)]:
        index, weight, precision = axis_weights(n_in, n_out)
        assert index.shape == weight.shape and index.min() >= 0 and index.max() < n_in
        assert weight.max() < 2 ** 15 and 1 <= precision <= 22
        assert np.all(np.abs(weight.sum(axis=1) - 2 ** precision) <= weight.shape[1])


def test_module_never_imports_torch():
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch': raise ImportError('torch is forbidden')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from mmedge.runtime.torch_resize import resize_uint8\n"
        "out = resize_uint8(np.zeros((2, 30, 40, 3), np.uint8), 12, 16)\n"
        "assert out.shape == (2, 12, 16, 3)\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
