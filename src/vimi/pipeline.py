"""VimiPipeline: a multimodal prompt in, a video out (the public inference API, diffusers-style).

    pipe = VimiPipeline.from_pretrained("checkpoints/groundedworld-s")
    out = pipe("A <image:dog.png> is playing in <image:yard.jpg>", num_inference_steps=18, seed=0)
    export_to_video(out.frames[0], "dog.mp4")           # out.frames: [B, C, T, H, W] in [-1, 1]

`__call__` shows the steps in order: check the inputs, template the prompts, encode the full, image-only
and unconditional conditions, draw each sample's noise from its own seed, run the sampler over the
guided denoiser (guidance is a free function wrapping it, never part of the model), decode.
"""

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from vimi.checkpoint import (
    COMPLETE,
    CONFIG_NAME,
    TRAIN_STATE,
    WEIGHTS_NAME,
    inference_state_dict,
    load_inference_weights,
    load_pipeline_config,
    load_weights,
    pipeline_config_json,
)
from vimi.condition import Condition
from vimi.config import PipelineConfig
from vimi.diffusion import (
    SAMPLERS,
    STOCHASTIC_SAMPLERS,
    multimodal_guidance,
    randn_per_sample,
    sampling_sigmas,
    seeded_noise_sampler,
)
from vimi.errors import CheckpointError, ConfigError, PromptError
from vimi.models.vimi_model import VimiModel
from vimi.prompt import Image, MultimodalPrompt, RetrievedExamples, apply_template, parse_prompt
from vimi.utils.atomic import atomic_directory
from vimi.utils.device import resolve_device

log = logging.getLogger(__name__)

# Sanity limits on what a user may ask for: larger requests are typos, not videos (they would exhaust memory).
MAX_FRAMES = 1024
MAX_SIDE = 4096
MAX_STEPS = 1000
OUTPUT_TYPES = ("pt", "np", "pil")

PromptInput = str | MultimodalPrompt
FrameInput = Tensor | str | Path | Image
OutputType = Literal["pt", "np", "pil"]


@dataclass
class VimiPipelineOutput:
    """What `VimiPipeline.__call__` returns."""

    frames: Any
    """One video per prompt. output_type "pt": a tensor [B, C, T, H, W] in [-1, 1] (vimi's layout); "np": an
    array [B, T, H, W, C] of floats in [0, 1]; "pil": a list (per video) of lists (per frame) of PIL images."""


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


def to_prompt(
    text: str, images: Sequence[FrameInput] | None = None, base_dir: str | Path | None = None
) -> MultimodalPrompt:
    """Parse `<image:path>` tags and `<image>` slots (filled from `images`); task subject with images, else t2v."""
    parsed = parse_prompt(text, images=images, base_dir=base_dir, task="subject")
    return parsed if parsed.images else MultimodalPrompt(parsed.segments, "t2v")


class VimiPipeline:
    """Generates videos from multimodal prompts with a trained VimiModel."""

    def __init__(self, model: VimiModel, cfg: PipelineConfig, device: str | torch.device | None = None):
        """device: where to move the model ("auto": cuda when available); None leaves it where it is (a
        training run's model, sharded or not, samples where it trains)."""
        self.cfg = cfg
        if device is not None:
            model = model.to(resolve_device(device))  # ConfigError for a bad name or cuda without CUDA
        self.model = model.eval()
        self.device = next(model.parameters()).device

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
        if weights not in ("ema", "raw"):
            raise ValueError(f"weights={weights!r}: choose 'ema' or 'raw'")
        folder, cfg = load_pipeline_config(path)
        file = folder / WEIGHTS_NAME if weights == "ema" else folder / TRAIN_STATE / WEIGHTS_NAME
        if weights == "raw" and not file.is_file():
            raise CheckpointError(
                f"{folder} has no raw weights ({file} is missing): it is not a training checkpoint"
            )
        model = VimiModel(cfg.model, cfg.diffusion)
        load_inference_weights(model, load_weights(file), str(file))
        log.info("loaded %s", folder)
        return cls(model, cfg, resolve_device(device))

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write config.json + model.safetensors + COMPLETE to a temp folder, then rename it onto `path`.

        `dtype=torch.float16` halves the file (how the shipped checkpoint is stored); floating-point
        weights are cast back to the model's dtype on load.
        """
        from safetensors.torch import save_file

        with atomic_directory(path, marker=COMPLETE, marker_text="pipeline\n") as tmp:
            (tmp / CONFIG_NAME).write_text(pipeline_config_json(self.cfg), encoding="utf-8")
            # clone(): safetensors refuses tensors that share storage (tied weights).
            weights = {
                k: v.detach().cpu().contiguous().clone() for k, v in inference_state_dict(self.model).items()
            }
            if dtype is not None:
                weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
            save_file(weights, tmp / WEIGHTS_NAME)
        return Path(path)

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
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        guidance_text: float | None = None,
        guidance_image: float | None = None,
        seed: int | Sequence[int] | None = None,
        output_type: OutputType = "pt",
        index: Any = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        progress: bool = True,
    ) -> VimiPipelineOutput:
        """One video per prompt; unset arguments come from the checkpoint's sample defaults (cfg.sample).

        prompt: text with `<image:path>` tags, or a MultimodalPrompt (a list of them for a batch).
        first_frame: video prediction from this image (one per prompt, or None).
        seed: sample i uses seed + i (an int) or seed[i] (one per prompt): a video never depends on its batch.
        index: a retrieval index folder or object; a text-only prompt is grounded by its retrieved examples.
        context, context_mask: given frames as pixels [B, 3, T, H, W] in [-1, 1] and their mask [B, 1, T, H, W]
        (any frames, not just the first); they are returned in place of the generated ones.
        """
        defaults = self.cfg.sample
        num_frames = defaults.num_frames if num_frames is None else num_frames
        height = defaults.height if height is None else height
        width = defaults.width if width is None else width
        num_inference_steps = (
            defaults.num_inference_steps if num_inference_steps is None else num_inference_steps
        )
        sampler = defaults.sampler if sampler is None else sampler
        guidance_text = defaults.guidance_text if guidance_text is None else float(guidance_text)
        guidance_image = defaults.guidance_image if guidance_image is None else float(guidance_image)
        seed = defaults.seed if seed is None else seed

        # 1. Check inputs: one first frame (or None) and one seed per prompt, sizes the model can take.
        prompts, first_frames, seeds = self.check_inputs(
            prompt, first_frame, seed, num_frames, height, width, num_inference_steps, sampler, output_type
        )
        latent_shape = self.latent_shape(len(prompts), num_frames, height, width)
        if any(frame is not None for frame in first_frames):
            context, context_mask = self.prepare_context(first_frames, num_frames, height, width)
        elif context is not None:
            context, context_mask = self.check_context(
                context, context_mask, (len(prompts), num_frames, height, width)
            )

        # 2. Template each prompt by its task (subject, predict, retrieval_t2v or t2v).
        prompts = [self.prepare_prompt(p, f, index) for p, f in zip(prompts, first_frames)]

        # 3. Encode the full condition, its image-only variant and the unconditional one (for guidance);
        #    the given frames constrain all three.
        conditions = self.encode_prompts(prompts, context, context_mask)

        # 4. Each sample's starting noise from its own seed, at the schedule's first noise level.
        sigmas = sampling_sigmas(num_inference_steps, self.cfg.diffusion, latent_shape, device=self.device)
        latents = randn_per_sample(latent_shape, seeds, device=self.device) * sigmas[0].to(torch.float32)

        # 5. Denoise: the sampler over the guided denoiser (stochastic samplers' fresh noise seeded per sample too).
        model_fn = multimodal_guidance(self.model.denoiser, guidance_text, guidance_image)
        options = {}
        if sampler in STOCHASTIC_SAMPLERS:
            options["noise_sampler"] = seeded_noise_sampler(latent_shape, seeds, device=self.device)
        latents = SAMPLERS[sampler](
            model_fn, latents, sigmas, extra_args=conditions, disable=not progress, **options
        )

        # 6. Decode; given frames come back as given (as SVD's pipeline returns its conditioning frame).
        videos = self.model.autoencoder.decode(latents).float().clamp(-1.0, 1.0)  # [B, C, T, H, W]
        if context is not None:
            videos = torch.where(context_mask.to(videos.device).bool(), context.to(videos), videos)
        return VimiPipelineOutput(frames=postprocess_video(videos, output_type))

    # ----------------------------------------------------------------------------------------------
    # The steps
    # ----------------------------------------------------------------------------------------------

    def check_inputs(
        self,
        prompt: PromptInput | Sequence[PromptInput],
        first_frame: FrameInput | Sequence[FrameInput | None] | None,
        seed: int | Sequence[int],
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        sampler: str,
        output_type: str,
    ) -> tuple[list[PromptInput], list[FrameInput | None], list[int]]:
        """The prompts, one first frame (or None) per prompt and one seed per prompt; ConfigError or
        PromptError naming what is wrong."""
        prompts = [prompt] if isinstance(prompt, str | MultimodalPrompt) else list(prompt)
        if not prompts:
            raise PromptError("no prompt given")
        if first_frame is None or isinstance(first_frame, FrameInput):
            first_frames = [first_frame] * len(prompts)
        else:
            first_frames = list(first_frame)
            if len(first_frames) != len(prompts):
                raise PromptError(f"{len(first_frames)} first frames given for {len(prompts)} prompts")
        if any(frame is not None for frame in first_frames) and not self.cfg.model.backbone.context_frames:
            raise ConfigError("this model was trained without context frames (backbone.context_frames=false)")
        seeds = (
            [int(seed) + i for i in range(len(prompts))] if isinstance(seed, int) else [int(s) for s in seed]
        )
        if len(seeds) != len(prompts):
            raise ConfigError(
                f"{len(seeds)} seeds given for {len(prompts)} prompts; give one seed per prompt or an int"
            )
        check_sample_size(num_frames, height, width, self.size_multiple)
        steps = num_inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ConfigError(f"num_inference_steps={steps!r} is out of range; use 1..{MAX_STEPS}")
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        check_output_type(output_type)
        return prompts, first_frames, seeds

    @property
    def size_multiple(self) -> tuple[int, int, int]:
        """(frames, height, width) must be multiples of these: the backbone patch times the autoencoder's compression."""
        backbone, autoencoder = self.cfg.model.backbone, self.model.autoencoder
        frames = 1 if autoencoder.causal_time else backbone.patch_t * autoencoder.temporal_compression
        spatial = autoencoder.spatial_compression
        return frames, backbone.patch_h * spatial, backbone.patch_w * spatial

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

    def check_context(
        self, context: Tensor, context_mask: Tensor | None, size: tuple[int, int, int, int]
    ) -> tuple[Tensor, Tensor]:
        """Given frames [B, 3, T, H, W] and their mask [B, 1, T, H, W] on the pipeline's device."""
        batch, frames, height, width = size
        if not self.cfg.model.backbone.context_frames:
            raise ConfigError("this model was trained without context frames (backbone.context_frames=false)")
        expected = (batch, 3, frames, height, width)
        if (
            context_mask is None
            or tuple(context.shape) != expected
            or tuple(context_mask.shape) != (batch, 1, *expected[2:])
        ):
            got = None if context_mask is None else tuple(context_mask.shape)
            raise ConfigError(
                f"context {tuple(context.shape)} and context_mask {got}: expected {expected} and a mask with 1 channel"
            )
        return context.to(self.device), context_mask.to(self.device)

    def prepare_prompt(
        self, prompt: PromptInput, first_frame: FrameInput | None = None, index: Any = None
    ) -> MultimodalPrompt:
        """One user prompt -> the templated MultimodalPrompt of its task (predict, retrieval_t2v, subject, t2v)."""
        if isinstance(prompt, str):
            prompt = to_prompt(prompt)
        elif not isinstance(prompt, MultimodalPrompt):
            raise PromptError(f"a prompt is a string or a MultimodalPrompt, got {type(prompt).__name__}")
        if first_frame is not None:
            return apply_template("predict", prompt, first_frame=first_frame)
        if index is not None and not prompt.images:
            from vimi.retrieval.retrieve import retrieve_examples

            hits = retrieve_examples(prompt.text, index, k=self.cfg.sample.retrieved_examples)
            if not hits:
                log.warning("no example in the index matches %r; generating from the text alone", prompt.text)
            pairs = [(hit.text, hit.image) for hit in hits]
            return apply_template("retrieval_t2v", RetrievedExamples(pairs, caption=prompt.text))
        return apply_template(prompt.task, prompt)

    def encode_prompts(
        self, prompts: list[MultimodalPrompt], context: Tensor | None, context_mask: Tensor | None
    ) -> dict[str, Condition]:
        """The sampler's extra_args: the full condition, its image-only variant (text dropped) and the
        unconditional one (text and images dropped), as `multimodal_guidance` takes them. The given frames,
        the same for all three, go through the autoencoder once."""
        full = self.model.condition(prompts, context, context_mask)
        frames = {"context": full.context, "context_mask": full.context_mask}
        variants = {
            "cond_image": [p.drop_text() for p in prompts],
            "cond_uncond": [p.drop_text().drop_images() for p in prompts],
        }
        return {"cond": full} | {
            name: dataclasses.replace(self.model.condition(variant), **frames)
            for name, variant in variants.items()
        }


def postprocess_video(videos: Tensor, output_type: OutputType = "pt") -> Any:
    """Videos [B, C, T, H, W] in [-1, 1] as `output_type` (see VimiPipelineOutput.frames)."""
    if output_type == "pt":
        return videos
    frames = ((videos.float().cpu() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1)  # [B, T, H, W, C] in [0, 1]
    if output_type == "np":
        return frames.numpy()
    if output_type == "pil":
        from PIL import Image as PILImage

        from vimi.data.image_io import to_uint8

        return [[PILImage.fromarray(frame) for frame in to_uint8(video)] for video in videos]
    check_output_type(output_type)


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"unknown output_type {output_type!r}; use one of {', '.join(OUTPUT_TYPES)}")


def load_frame(frame: FrameInput, size: tuple[int, int]) -> Tensor:
    """A first frame (path, tensor [C, H, W] in [-1, 1] or prompt Image) resized and centre-cropped to `size`."""
    import numpy as np
    from PIL import Image as PILImage

    from vimi.data.image_io import from_uint8, resize_center_crop, to_uint8

    image = frame if isinstance(frame, Image) else Image(frame if isinstance(frame, Tensor) else str(frame))
    pixels = image.load()  # [3, H, W]; a bad path raises PromptError naming it
    resized = resize_center_crop(PILImage.fromarray(to_uint8(pixels)), size)
    return from_uint8(np.asarray(resized))
