"""Session fixtures: each tiny checkpoint and each bundle is built once per test run."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The runtime's verdict cache (runtime/onnx_full_check.py) starts empty in every run, in a folder
# of its own that subprocesses inherit, so no test depends on what an earlier run remembered.
os.environ["MMEDGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="mmedge-test-cache-")

PARITY_PRESETS = ("clip-llama-bpe", "siglip-qwen2-tied")
# The fast tier (`pytest -m "not slow and not heavy"`, a few minutes) leaves these out: the native
# builds and the qemu runs, subprocess exports (CLI, interrupted, out of room), the server, bench
# workers, ExecuTorch/Core ML targets, video parity. The full run (plain `pytest`) has everything.
HEAVY = ("tests/native/", "tests/benchmarks/", "tests/quantize/test_int8_any_cpu.py", "tests/mmedge/test_cli.py",
         "tests/mmedge/test_cli_damaged_bundle.py", "tests/export/test_export_no_room.py",
         "tests/export/test_export_interrupted.py", "tests/export/test_target_executorch.py",
         "tests/export/test_target_coreml.py", "tests/export/test_multi_target.py", "tests/export/test_video_parity.py",
         "tests/export/test_tiny_weights.py", "tests/runtime/test_serve.py", "tests/runtime/test_bench.py",
         "tests/runtime/test_bench_remote.py", "tests/runtime/test_remote.py", "tests/runtime/test_executorch_pool.py",
         "tests/runtime/test_hostile_onnx_parts.py")


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))
    missing = [h for h in HEAVY if not (root / h).exists()]
    if missing:  # a renamed file would silently join the fast tier
        raise pytest.UsageError(f"tests/conftest.py HEAVY names paths that do not exist: {missing}")
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix()
        if where.startswith(HEAVY):
            item.add_marker(pytest.mark.heavy)
KQUANT_PRESET = "clip-llama-spm-256"


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """preset name -> checkpoint folder, built lazily and once."""
    from mmedge.export.tiny import build_tiny

    root = tmp_path_factory.mktemp("checkpoints")
    cache: dict[str, Path] = {}

    def get(preset: str) -> Path:
        if preset not in cache:
            cache[preset] = build_tiny(preset, root / preset, seed=0)
        return cache[preset]

    return get


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, checkpoints):
    """(preset, encoder, projector, llm) -> (bundle folder, manifest), exported and verified once."""
    from mmedge.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("bundles")
    cache: dict[tuple, tuple] = {}

    def get(preset: str, encoder: str = "fp32", projector: str = "fp32", llm: str = "F32", allow_below_floor: bool = False):
        key = (preset, encoder, projector, llm)
        if key not in cache:
            out = root / "-".join(key)
            cfg = ExportConfig(checkpoint=checkpoints(preset), output=out, encoder=encoder, projector=projector, llm=llm,
                               allow_below_floor=allow_below_floor)
            cache[key] = (out, export_bundle(cfg))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def bundles_with_targets(tmp_path_factory, checkpoints):
    """(preset, (encoder target, precision), (projector target, precision), llm[, allow_below_floor]) ->
    (folder, manifest), once. Quantized tiny random models may measure below a floor (their flat
    logits flip argmaxes easily); tests of something else than floors keep the bundle anyway."""
    from mmedge.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("et-bundles")
    cache = {}

    def get(preset, encoder, projector, llm, allow_below_floor: bool = False):
        key = (preset, encoder, projector, llm, allow_below_floor)
        if key not in cache:
            out = root / f"{len(cache)}"
            cfg = ExportConfig(checkpoint=checkpoints(preset), output=out, encoder_target=encoder[0], encoder=encoder[1],
                               projector_target=projector[0], projector=projector[1], llm=llm,
                               allow_below_floor=allow_below_floor)
            cache[key] = (out, export_bundle(cfg))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def fp32_bundle(bundles):
    """The default tiny LLaVA (CLIP + Llama, BPE) at full precision."""
    return bundles("clip-llama-bpe")[0]


@pytest.fixture(scope="session")
def pipeline(fp32_bundle):
    from mmedge.runtime.pipeline import Pipeline, RuntimeOptions

    pipe = Pipeline(fp32_bundle, RuntimeOptions(exact=True, n_ctx=1024))
    yield pipe
    pipe.close()


@pytest.fixture
def bundle_copy(fp32_bundle, tmp_path):
    """A private copy of the fp32 bundle that a test may corrupt."""
    import shutil

    dst = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, dst)
    return dst


@pytest.fixture(scope="session")
def photos():
    """Real photographs shipped with scikit-image, as PIL images."""
    from PIL import Image
    from skimage import data

    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "camera")
    return {n: Image.fromarray(getattr(data, n)()) for n in names}
