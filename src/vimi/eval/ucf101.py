"""UCF101 zero-shot protocol: class names as prompts, FVD against cached real statistics, IS with C3D.

Protocol (as in Make-A-Video / VideoLDM zero-shot UCF101): the prompt of a class is its folder name
split into words ("ApplyEyeMakeup" -> "apply eye makeup"); `ucf_videos_per_class` videos per class
(101 x 100 ~ 10k); 16 frames; every clip, real or generated, goes to I3D after the same resize (short
side to 224, antialiased bilinear) + center crop; real clips are the first 16 frames of each video.
The Inception Score needs a user-given C3D TorchScript and CLIP score a local CLIP folder; without
them the report says "not computed" rather than substituting another network.
"""

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vimi.config import EvalConfig
from vimi.data.video_io import read_video
from vimi.errors import CheckpointError, DataError
from vimi.eval.frechet import FeatureStats, cached_stats, frechet_from_stats, i3d_features
from vimi.eval.i3d import InceptionI3d, default_i3d_weights_path, load_i3d, preprocess_for_i3d
from vimi.eval.inception import class_probabilities, inception_score, load_c3d
from vimi.utils.atomic import write_json_atomic
from vimi.utils.device import resolve_device

GenerateFn = Callable[[list[str], list[int]], torch.Tensor]
"""generate_fn(prompts, seeds) -> videos [B, C, T, H, W] in [-1, 1]; video i depends only on seeds[i]."""

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov")
NOT_COMPUTED_IS = "not computed: no local C3D weights given (set eval.c3d_path)"
NOT_COMPUTED_CLIP = "not computed: no local CLIP weights given (set eval.clip_path)"


def class_name_to_prompt(folder: str) -> str:
    """Split a CamelCase UCF101 folder name into lower-case words: "ApplyEyeMakeup" -> "apply eye makeup"."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", folder.replace("_", " "))
    return " ".join(word.lower() for word in words) or folder.lower()


def list_ucf101(root: str | Path) -> dict[str, list[Path]]:
    """Class folder name -> its sorted video files, classes sorted (the UCF101 layout: ROOT/Class/*.avi)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"UCF101 root not found: {root}; point it at the folder holding the 101 class folders"
        )
    classes = {
        folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }
    classes = {name: videos for name, videos in classes.items() if videos}
    if not classes:
        raise DataError(f"{root}: no class folders with videos ({', '.join(VIDEO_SUFFIXES)}) inside")
    return classes


def real_videos(classes: dict[str, list[Path]], per_class: int) -> list[Path]:
    """The real videos the statistics use: the first `per_class` of each class (0: all)."""
    return [
        video for videos in classes.values() for video in (videos[:per_class] if per_class > 0 else videos)
    ]


def read_real_clip(path: Path, cfg: EvalConfig) -> torch.Tensor:
    """The protocol's real clip [C, T, H, W]: the first frames, looping videos shorter than the clip."""
    return read_video(path, cfg.ucf_num_frames, stride=cfg.ucf_frame_stride, start=0, loop=True)


def real_statistics(
    root: str | Path, cfg: EvalConfig, model: InceptionI3d, device: torch.device
) -> tuple[FeatureStats, bool]:
    """I3D statistics of the real UCF101 clips, from the cache when present; returns (stats, cache_hit)."""
    root = Path(root).resolve()
    videos = real_videos(list_ucf101(root), cfg.ucf_real_videos_per_class)
    weights = Path(cfg.i3d_path) if cfg.i3d_path else default_i3d_weights_path()
    key = {
        "name": "ucf101-i3d",
        "dataset": str(root),
        "num_videos": len(videos),
        "videos_per_class": cfg.ucf_real_videos_per_class,
        "num_frames": cfg.ucf_num_frames,
        "frame_stride": cfg.ucf_frame_stride,
        "clip_start": 0,
        "preprocess": "short-side-224-antialiased-bilinear-center-crop",
        "feature_net": f"i3d-kinetics-400-logits:{weights.name}:{weights.stat().st_size}",
    }

    def compute() -> np.ndarray:
        clips = (read_real_clip(path, cfg) for path in videos)
        return i3d_features(clips, model, cfg.batch_size, device, total=len(videos), desc="UCF101 real I3D")

    return cached_stats(cfg.stats_cache_dir, key, compute)


def generation_plan(classes: list[str], cfg: EvalConfig) -> list[tuple[int, str, int]]:
    """(class index, prompt, seed) for every generated video, class by class."""
    plan = []
    for index, name in enumerate(classes):
        prompt = cfg.ucf_prompt_template.format(name=class_name_to_prompt(name))
        plan += [(index, prompt, 0) for _ in range(cfg.ucf_videos_per_class)]
    return [(index, prompt, cfg.ucf_seed + i) for i, (index, prompt, _) in enumerate(plan)]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_generated(videos: torch.Tensor, count: int, cfg: EvalConfig) -> torch.Tensor:
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[0] != count:
        shape = tuple(videos.shape) if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(f"generate_fn must return videos [B={count}, C, T, H, W] in [-1, 1], got {shape}")
    if videos.shape[2] != cfg.ucf_num_frames:
        raise ValueError(
            f"generate_fn returned {videos.shape[2]} frames; the protocol uses eval.ucf_num_frames={cfg.ucf_num_frames}"
        )
    return videos.detach().float().clamp(-1, 1)


def run_ucf101(
    root: str | Path,
    generate_fn: GenerateFn,
    cfg: EvalConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
) -> dict:
    """Run the zero-shot UCF101 protocol; writes OUT_DIR/ucf101.json and returns the same results dict.

    The feature networks run on `device` (default: eval.device); pass the generator's to use one device."""
    device = resolve_device(cfg.device if device is None else device)
    classes = list_ucf101(root)
    model = load_i3d(cfg.i3d_path, device)
    real_stats, cache_hit = real_statistics(root, cfg, model, device)
    c3d = load_c3d(cfg.c3d_path, device) if cfg.c3d_path else None
    clip = load_clip_scorer(cfg.clip_path, device) if cfg.clip_path else None

    plan = generation_plan(list(classes), cfg)
    features, probabilities, clip_scores = [], [], []
    started = time.perf_counter()
    with tqdm(total=len(plan), desc="UCF101 generate + I3D", unit="video") as bar:
        for chunk in _chunks(plan, cfg.batch_size):
            prompts, seeds = [p for _, p, _ in chunk], [s for _, _, s in chunk]
            videos = _check_generated(generate_fn(prompts, seeds), len(chunk), cfg)
            with torch.inference_mode():
                batch = videos.to(device)
                features.append(model(preprocess_for_i3d(batch)).double().cpu().numpy())
                if c3d is not None:
                    c3d_input = preprocess_for_i3d(batch, size=cfg.c3d_size)
                    probabilities.append(class_probabilities(c3d, c3d_input).double().cpu().numpy())
                if clip is not None:
                    clip_scores.append(clip(batch, prompts))
            bar.update(len(chunk))
    fake_stats = FeatureStats.from_features(np.concatenate(features))

    results: dict = {
        "fvd": frechet_from_stats(real_stats, fake_stats),
        "inception_score": NOT_COMPUTED_IS,
        "clip_score": NOT_COMPUTED_CLIP,
        "num_classes": len(classes),
        "num_generated": len(plan),
        "num_real": real_stats.count,
        "real_stats_cached": cache_hit,
        "generate_seconds": round(time.perf_counter() - started, 3),
        "protocol": {
            "root": str(Path(root).resolve()),
            "videos_per_class": cfg.ucf_videos_per_class,
            "real_videos_per_class": cfg.ucf_real_videos_per_class,
            "num_frames": cfg.ucf_num_frames,
            "frame_stride": cfg.ucf_frame_stride,
            "i3d_input": "short side 224 (bilinear, antialias) + center crop 224, [-1, 1]",
            "prompt_template": cfg.ucf_prompt_template,
            "first_seed": cfg.ucf_seed,
        },
        "example_prompts": sorted({p for _, p, _ in plan})[:5],
    }
    if c3d is not None:
        mean, std = inception_score(np.concatenate(probabilities), splits=min(cfg.is_splits, len(plan)))
        results["inception_score"] = {"mean": mean, "std": std, "splits": min(cfg.is_splits, len(plan))}
    if clip is not None:
        results["clip_score"] = float(np.mean(np.concatenate(clip_scores)))
    write_json_atomic(Path(out_dir) / "ucf101.json", results)
    return results


def load_clip_scorer(
    path: str | Path, device: torch.device
) -> Callable[[torch.Tensor, list[str]], np.ndarray]:
    """CLIP score from a local Hugging Face CLIP folder: per video, mean over frames of max(100 cos, 0)."""
    from transformers import AutoTokenizer, CLIPModel  # heavy import, only when CLIP weights are given

    try:
        model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval().to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a local CLIP model folder ({err})") from None
    size = model.config.vision_config.image_size
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def score(videos: torch.Tensor, prompts: list[str]) -> np.ndarray:
        batch, _, frames = videos.shape[:3]
        images = preprocess_for_i3d(videos, size=size)  # [B, 3, T, S, S]: short side + center crop
        images = images.permute(0, 2, 1, 3, 4).reshape(batch * frames, 3, size, size)  # -> [B*T, 3, S, S]
        images = ((images + 1) / 2 - mean) / std
        text = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt").to(device)
        image_emb = torch.nn.functional.normalize(model.get_image_features(pixel_values=images), dim=-1)
        text_emb = torch.nn.functional.normalize(model.get_text_features(**text), dim=-1)
        cosine = (image_emb.view(batch, frames, -1) * text_emb[:, None]).sum(-1)  # [B, T]
        return (100 * cosine).clamp(min=0).mean(dim=1).cpu().numpy()

    return score
