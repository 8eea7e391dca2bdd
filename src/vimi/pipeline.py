"""VimiPipeline: a multimodal prompt in, a video out (the public inference API).

    pipe = VimiPipeline.from_pretrained("runs/debug")            # a pipeline or training checkpoint folder
    video = pipe("A <image:dog.png> is playing in <image:yard.jpg>", seed=0)   # [B, C, T, H, W] in [-1, 1]

Guidance lives here, outside the model (diffusers style): the prompt is encoded three times (full,
image-only, unconditional) and `multimodal_guidance` combines the denoiser's outputs. Loading reads
only JSON and safetensors, so a checkpoint folder can never run code.
"""

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vimi.config import VimiConfig, from_dict, to_dict
from vimi.diffusion import SAMPLERS
from vimi.diffusion.sampling import sample_videos
from vimi.errors import CheckpointError, ConfigError, PromptError
from vimi.prompt import Image, MultimodalPrompt, RetrievedExamples, apply_template, parse_prompt
from vimi.train.checkpoint import COMPLETE, TRAIN_STATE, load_weights, resolve_checkpoint
from vimi.utils.atomic import atomic_directory
from vimi.utils.device import resolve_device

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# Sanity limits on what a user may ask for: larger requests are typos, not videos (they would exhaust memory).
MAX_FRAMES = 1024
MAX_SIDE = 4096
MAX_STEPS = 1000
# (section, key) of config fields that were removed as unused; older checkpoints' config.json still has them.
REMOVED_CONFIG_KEYS = (("data", "shuffle_buffer"),)

PromptInput = str | MultimodalPrompt
FrameInput = Tensor | str | Path | Image


def check_sample_size(num_frames: int, height: int, width: int, multiple: tuple[int, int, int]) -> None:
    """Raise ConfigError naming the bad size: frames/height/width must be positive, bounded, and patch multiples."""
    for name, value, limit, step in (
        ("frames", num_frames, MAX_FRAMES, multiple[0]),
        ("height", height, MAX_SIDE, multiple[1]),
        ("width", width, MAX_SIDE, multiple[2]),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if not 1 <= value <= limit:
            raise ConfigError(f"{name}={value} is out of range; use 1..{limit}")
        if value % step:
            raise ConfigError(
                f"{name}={value} is not divisible by the model's patch size {step}; try {_round(value, step)}"
            )


def _round(value: int, step: int) -> int:
    return max(step, round(value / step) * step)


def load_pipeline_config(path: str | Path) -> tuple[Path, VimiConfig]:
    """The complete checkpoint folder for `path` (a pipeline/checkpoint folder or a run folder) and its config."""
    folder = resolve_checkpoint(path)
    config_path = folder / CONFIG_NAME
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; not a vimi checkpoint folder") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: unreadable config ({err})") from None
    for section, key in REMOVED_CONFIG_KEYS:
        if isinstance(raw, dict) and isinstance(raw.get(section), dict):
            raw[section].pop(key, None)
    return folder, from_dict(VimiConfig, raw, source=str(config_path))


def to_prompt(
    text: str, images: Sequence[FrameInput] | None = None, base_dir: str | Path | None = None
) -> MultimodalPrompt:
    """Parse `<image:path>` tags and `<image>` slots (filled from `images`); task subject with images, else t2v."""
    parsed = parse_prompt(text, images=images, base_dir=base_dir, task="subject")
    return parsed if parsed.images else MultimodalPrompt(parsed.segments, "t2v")


def default_device(name: str | torch.device | None = None) -> torch.device:
    """The device a pipeline runs on: `name` checked by vimi.utils.device (None/"auto": cuda if available)."""
    return resolve_device(name)


class VimiPipeline:
    """Generates videos [B, C, T, H, W] in [-1, 1] from multimodal prompts with a trained VimiModel."""

    def __init__(self, model: torch.nn.Module, cfg: VimiConfig, device: str | torch.device | None = None):
        self.cfg = cfg
        self.device = default_device(device)  # ConfigError for a bad name or cuda without CUDA
        self.model = model.to(self.device).eval()

    # ----------------------------------------------------------------------------------------------
    # Saving and loading
    # ----------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device | None = None, weights: str = "ema"
    ) -> "VimiPipeline":
        """Load a pipeline folder (or the newest complete checkpoint of a run folder); JSON + safetensors only.

        weights="raw": a training checkpoint's raw weights (train_state/) instead of its EMA ones, which lag
        them by about the EMA half-life (what a short trial wants to see).
        """
        from vimi.models.vimi_model import build_model, load_inference_weights

        if weights not in ("ema", "raw"):
            raise ValueError(f"weights={weights!r}: choose 'ema' or 'raw'")
        folder, cfg = load_pipeline_config(path)
        file = folder / WEIGHTS_NAME if weights == "ema" else folder / TRAIN_STATE / WEIGHTS_NAME
        if weights == "raw" and not file.is_file():
            raise CheckpointError(
                f"{folder} has no raw weights ({file} is missing): it is not a training checkpoint"
            )
        model = build_model(cfg)
        load_inference_weights(model, load_weights(file), str(file))
        log.info("loaded %s", folder)
        return cls(model, cfg, device)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write config.json + model.safetensors + COMPLETE to a temp folder, then rename it onto `path`.

        `dtype=torch.float16` halves the file (how the shipped checkpoint is stored); floating-point
        weights are cast back to the model's dtype on load.
        """
        from safetensors.torch import save_file

        with atomic_directory(path, marker=COMPLETE, marker_text="pipeline\n") as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(to_dict(self.cfg), indent=2, sort_keys=True) + "\n")
            # clone(): safetensors refuses tensors that share storage (tied weights).
            weights = {
                k: v.detach().cpu().contiguous().clone() for k, v in self.model.inference_state_dict().items()
            }
            if dtype is not None:
                weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
            save_file(weights, tmp / WEIGHTS_NAME)
        return Path(path)

    # ----------------------------------------------------------------------------------------------
    # Inputs
    # ----------------------------------------------------------------------------------------------

    @property
    def size_multiple(self) -> tuple[int, int, int]:
        """(frames, height, width) must be multiples of these: the backbone patch times the autoencoder's compression."""
        backbone, autoencoder = self.cfg.model.backbone, self.model.autoencoder
        frames = 1 if autoencoder.causal_time else backbone.patch_t * autoencoder.temporal_compression
        spatial = autoencoder.spatial_compression
        return frames, backbone.patch_h * spatial, backbone.patch_w * spatial

    def prepare_prompt(
        self, prompt: PromptInput, first_frame: FrameInput | None = None, index: Any = None
    ) -> MultimodalPrompt:
        """One user prompt -> the templated MultimodalPrompt of its task (predict, retrieval_t2v, subject, t2v).

        A checkpoint trained with train.text_only (the text-only baseline) gets the prompt without its images,
        as it saw every prompt in training; given first frames still reach it as context frames.
        """
        templated = self._template(prompt, first_frame, index)
        return templated.drop_images() if self.cfg.train.text_only else templated

    def _template(self, prompt: PromptInput, first_frame: FrameInput | None, index: Any) -> MultimodalPrompt:
        if isinstance(prompt, str):
            prompt = to_prompt(prompt)
        elif not isinstance(prompt, MultimodalPrompt):
            raise PromptError(f"a prompt is a string or a MultimodalPrompt, got {type(prompt).__name__}")
        parsed, task = prompt, prompt.task
        if first_frame is not None:
            return apply_template("predict", parsed, first_frame=first_frame)
        if index is not None and not parsed.images:
            from vimi.retrieval.retrieve import retrieve_examples

            retrieval = self.cfg.retrieval
            hits = retrieve_examples(parsed.text, index, k=retrieval.k, min_score=retrieval.min_score)
            if not hits:
                log.warning("no example in the index matches %r; generating from the text alone", parsed.text)
            pairs = [(hit.text, hit.image) for hit in hits]
            return apply_template("retrieval_t2v", RetrievedExamples(pairs, caption=parsed.text))
        return apply_template(task, parsed)

    def check_inputs(
        self, batch: int, num_frames: int, height: int, width: int, steps: int, sampler: str, seeds
    ) -> None:
        check_sample_size(num_frames, height, width, self.size_multiple)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"steps={steps!r} is out of range; use 1..{MAX_STEPS}")
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        if len(seeds) != batch:
            raise ConfigError(
                f"{len(seeds)} seeds given for {batch} prompts; give one seed per prompt or an int"
            )

    # ----------------------------------------------------------------------------------------------
    # Generation
    # ----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: PromptInput | Sequence[PromptInput],
        first_frame: FrameInput | Sequence[FrameInput | None] | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        guidance_text: float | None = None,
        guidance_image: float | None = None,
        seed: int | Sequence[int] | None = None,
        index: Any = None,
        progress: bool = True,
    ) -> Tensor:
        """Generate one video per prompt: [B, C, T, H, W] in [-1, 1]; unset arguments come from cfg.sample."""
        defaults = self.cfg.sample
        num_frames = defaults.num_frames if num_frames is None else num_frames
        height = defaults.height if height is None else height
        width = defaults.width if width is None else width
        steps = defaults.steps if steps is None else steps
        sampler = defaults.sampler if sampler is None else sampler
        guidance_text = defaults.guidance_text if guidance_text is None else float(guidance_text)
        guidance_image = defaults.guidance_image if guidance_image is None else float(guidance_image)

        # 1. Check inputs: one prompt per sample, one first frame (or None) per prompt, one seed per sample.
        prompts = [prompt] if isinstance(prompt, str | MultimodalPrompt) else list(prompt)
        if not prompts:
            raise PromptError("no prompt given")
        if first_frame is None or isinstance(first_frame, FrameInput):
            first_frames = [first_frame] * len(prompts)
        else:
            first_frames = list(first_frame)
            if len(first_frames) != len(prompts):
                raise PromptError(f"{len(first_frames)} first frames given for {len(prompts)} prompts")
        seed = defaults.seed if seed is None else seed
        seeds = (
            [int(seed) + i for i in range(len(prompts))] if isinstance(seed, int) else [int(s) for s in seed]
        )
        self.check_inputs(len(prompts), num_frames, height, width, steps, sampler, seeds)
        latent_shape = self.latent_shape(len(prompts), num_frames, height, width)
        if any(frame is not None for frame in first_frames) and not self.cfg.model.backbone.context_frames:
            raise ConfigError("this model was trained without context frames (backbone.context_frames=false)")

        # 2. Prepare prompts: the templated full prompt (sample_videos derives its image-only and
        #    unconditional variants).
        full = [self.prepare_prompt(p, f, index) for p, f in zip(prompts, first_frames)]

        # 3. Prepare context frames (pixels): the first frame at t=0, zeros elsewhere, and their mask.
        context, context_mask = None, None
        if any(frame is not None for frame in first_frames):
            context, context_mask = self.prepare_context(first_frames, num_frames, height, width)

        # 4. Encode the three conditions, draw per-seed noise, denoise with the guided sampler, decode.
        return sample_videos(
            self.model,
            full,
            latent_shape,
            seeds,
            self.cfg.diffusion,
            steps=steps,
            sampler=sampler,
            guidance_text=guidance_text,
            guidance_image=guidance_image,
            context=context,
            context_mask=context_mask,
            device=self.device,
            progress=progress,
        )

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """[B, C, t, h, w] of the diffusion space for a pixel video [B, 3, T, H, W]; ConfigError if it does not fit."""
        latent = self.model.autoencoder.latent_shape(num_frames, height, width)  # (C, t, h, w)
        patch_t = self.cfg.model.backbone.patch_t
        if latent[1] % patch_t:
            raise ConfigError(
                f"frames={num_frames} gives {latent[1]} latent frames, not a multiple of patch_t={patch_t}"
            )
        return (batch, *latent)

    def prepare_context(
        self, first_frames: list[FrameInput | None], num_frames: int, height: int, width: int
    ) -> tuple[Tensor, Tensor]:
        """Pixel context [B, 3, T, H, W] (the first frame at t=0, zeros elsewhere) and its mask [B, 1, T, H, W]."""
        batch = len(first_frames)
        context = torch.zeros(batch, 3, num_frames, height, width, device=self.device)
        context_mask = torch.zeros(batch, 1, num_frames, height, width, device=self.device)
        for i, frame in enumerate(first_frames):
            if frame is not None:
                context[i, :, 0] = load_frame(frame, (height, width)).to(self.device)  # [3, H, W]
                context_mask[i, :, 0] = 1.0
        return context, context_mask


def load_frame(frame: FrameInput, size: tuple[int, int]) -> Tensor:
    """A first frame (path, tensor [C, H, W] in [-1, 1] or prompt Image) resized and centre-cropped to `size`."""
    import numpy as np
    from PIL import Image as PILImage

    from vimi.data.image_io import from_uint8, resize_center_crop, to_uint8

    image = frame if isinstance(frame, Image) else Image(frame if isinstance(frame, Tensor) else str(frame))
    pixels = image.load()  # [3, H, W]; a bad path raises PromptError naming it
    resized = resize_center_crop(PILImage.fromarray(to_uint8(pixels)), size)
    return from_uint8(np.asarray(resized))
