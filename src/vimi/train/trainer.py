"""`train(cfg)`: both stages (retrieval-augmented pretraining, multimodal instruction tuning), differing only by config.

Determinism: the global batch of step s is the samples with global indices [s*B, (s+1)*B); rank r
takes a contiguous slice of it and splits that into accumulation micro-batches. Every sample's data,
dropout and noise depend only on (seed, index) (vimi.data.tasks), and the loss is normalised by the
global batch, so 1 process and N processes follow the same trajectory and a resume from step k is
bit-exact on CPU.
"""

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch

from vimi.checkpoint import (
    WEIGHTS_NAME,
    is_inference_key,
    latest_checkpoint,
    load_inference_weights,
    load_weights,
    resolve_checkpoint,
    trainable_state_dict,
)
from vimi.config import VimiConfig, save_config, to_dict
from vimi.data.tasks import TaskBatch, TaskMixture, build_task_dataset, collate_samples
from vimi.errors import CheckpointError, ConfigError
from vimi.models.vimi_model import VimiModel
from vimi.train import checkpoint as ckpt
from vimi.train import distributed as dist
from vimi.train.batch_prep import prepare_batch
from vimi.train.ema import EMA
from vimi.train.logging import RunLogger
from vimi.train.optim import build_optimizer, build_scheduler, lr_factor, saved_optimizer
from vimi.utils.atomic import write_json_atomic

log = logging.getLogger(__name__)

StepHook = Callable[[int], None]
FROM_SCRATCH = "scratch"
"""train.init_from value for the instruction tasks from random weights."""


def check_config(cfg: VimiConfig, world_size: int = 1) -> None:
    """Fail before any work on a config that cannot run (ConfigError naming the key)."""
    train = cfg.train
    if train.steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {train.steps}")
    if train.grad_accum < 1 or train.batch_size < 1:
        raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
    # Steps between logs / checkpoints / sample videos (0 turns samples off; the last step always logs and saves).
    for key, value, least in (
        ("log_every", train.log_every, 1),
        ("ckpt_every", train.ckpt_every, 1),
        ("sample_every", train.sample_every, 0),
    ):
        if value < least:
            raise ConfigError(f"train.{key} must be >= {least} (a step interval), got {value}")
    if train.schedule == "wsd" and not 0 < train.decay_steps <= train.steps - train.warmup_steps:
        raise ConfigError(
            f"train.schedule=wsd needs 0 < train.decay_steps <= train.steps - train.warmup_steps "
            f"({train.steps} - {train.warmup_steps}), got train.decay_steps={train.decay_steps}"
        )
    if train.max_time_s < 0:
        raise ConfigError(f"train.max_time_s must be >= 0 seconds (0: no limit), got {train.max_time_s}")
    if train.batch_size % (world_size * train.grad_accum):
        raise ConfigError(
            f"train.batch_size={train.batch_size} must be divisible by world size {world_size} x "
            f"train.grad_accum={train.grad_accum} (the global batch is split over both)"
        )
    if train.stage == "instruct" and not train.init_from:
        raise ConfigError(
            "train.stage=instruct needs train.init_from: a stage-1 (pretrain) checkpoint folder or run folder "
            f"(or {FROM_SCRATCH!r} to start from random weights)"
        )
    if train.init_from and train.init_from != FROM_SCRATCH:
        try:
            resolve_checkpoint(train.init_from)
        except CheckpointError as err:
            raise ConfigError(f"train.init_from: {err}") from None
    if train.precision == "bf16" and not torch.cuda.is_available():
        log.info("train.precision=bf16 requested without a GPU: running fp32 on CPU")


def train(cfg: VimiConfig, on_step: StepHook | None = None) -> Path:
    """Train stage cfg.train.stage under torchrun or in one process; returns the last checkpoint folder.

    `on_step(step)` runs after each completed step (after its checkpoint, if any); tests use it to
    inject a failure.
    """
    started_dist = not torch.distributed.is_initialized()
    info = dist.init_distributed()
    # No teardown after an error: the other ranks may be inside a collective (torchtitan does the same);
    # torchrun ends them.
    check_config(cfg, info.world_size)
    last = Trainer(cfg, info).run(on_step)
    if started_dist:
        dist.shutdown_distributed()
    return last


class Trainer:
    """The state of one run: model, optimizer, EMA, data stream; `run()` is the loop."""

    def __init__(self, cfg: VimiConfig, info: dist.DistInfo):
        self.cfg, self.info = cfg, info
        self.out_dir = Path(cfg.train.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        torch.manual_seed(cfg.train.seed + info.rank)
        self.dataset: TaskMixture = build_task_dataset(cfg)  # raises DataError before the model is built
        self.model = VimiModel(cfg.model, cfg.diffusion)
        if cfg.train.init_from and cfg.train.init_from != FROM_SCRATCH:
            self._init_from(cfg.train.init_from)
        if cfg.train.freeze_encoder:
            self.model.encoder.requires_grad_(False)
        self.model.to(info.device)
        num_params = sum(p.numel() for p in self.model.parameters())
        self.mode = dist.choose_parallel(cfg.train.parallel, num_params, cfg.train.fsdp_auto_params, info)
        self.wrapped = dist.wrap_model(self.model, self.mode, info, self.model.shard_modules())
        self.optimizer = build_optimizer(self.model, cfg.train, sharded=self.mode == "fsdp")
        self.scheduler = build_scheduler(self.optimizer, cfg.train)
        self.ema = EMA(
            self.model, cfg.train.ema_halflife_steps, include=lambda k: is_inference_key(self.model, k)
        )
        self.step = 0
        if cfg.train.resume:
            self._resume()
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if cfg.train.precision == "bf16" and info.device.type == "cuda"
            else contextlib.nullcontext()
        )
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if info.is_main:
            log.info(
                "stage %s: %.2fM params (%.2fM trainable), %s on %d rank(s), tasks %s",
                cfg.train.stage,
                num_params / 1e6,
                trainable / 1e6,
                self.mode,
                info.world_size,
                dict(zip(self.dataset.names, self.dataset.weights)),
            )
            # Where each task's rows come from: subject, predict and t2v read the video manifest
            # (data.video_manifest, default WORLD/videos/train), not data.train_manifest.
            for name, task in self.dataset.tasks.items():
                log.info("task %s: %d rows of %s", name, len(task), task.manifest)

    # ---------------------------------------------------------------------------------------------
    # Loading
    # ---------------------------------------------------------------------------------------------

    def _init_from(self, path: str) -> None:
        """Stage 2 starts from the stage-1 inference (EMA) weights; the optimizer starts fresh."""
        folder = resolve_checkpoint(path)
        weights = load_weights(folder / WEIGHTS_NAME)
        load_inference_weights(self.model, weights, str(folder), hint="; use the stage-1 model settings")
        if self.info.is_main:
            log.info("initialised from %s", folder)

    def _resume(self) -> None:
        latest = latest_checkpoint(self.ckpt_dir)
        if latest is None:
            if self.info.is_main:
                log.warning("--resume: no complete checkpoint in %s; starting from step 0", self.ckpt_dir)
            return
        state = ckpt.load_train_state(latest)
        if state["state"]["global_batch"] != self.cfg.train.batch_size:
            raise CheckpointError(
                f"{latest}: saved with train.batch_size={state['state']['global_batch']}, now "
                f"{self.cfg.train.batch_size}; resume with the same global batch"
            )
        expected = set(trainable_state_dict(self.model))
        if set(state["model"]) != expected:
            raise CheckpointError(
                f"{latest}: its weights do not match this config's model; resume with the same model"
            )
        if saved_optimizer(state["optimizer"]) != self.cfg.train.optimizer:
            raise CheckpointError(
                f"{latest}: saved with train.optimizer={saved_optimizer(state['optimizer'])}, now "
                f"{self.cfg.train.optimizer}; resume with the same optimizer"
            )
        dist.load_full_state_dict(self.model, state["model"], strict=False)
        self.ema.load_state_dict({k: v.to(self.info.device) for k, v in state["ema"].items()})
        dist.load_optimizer_state(self.model, self.optimizer, state["optimizer"], self.mode)
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["state"]["step"])
        # The next step's rate comes from this config's rate and schedule, which may differ from the saved
        # ones (a constant-rate run resumed with schedule=wsd to cool down, a cooled run re-warmed at a lower
        # peak); unchanged, this is the saved rate exactly.
        self.scheduler.base_lrs = [self.cfg.train.lr for _ in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.cfg.train.lr
            group["lr"] = self.cfg.train.lr * lr_factor(self.step, self.cfg.train)
        if self.info.is_main:
            log.info("resumed from %s at step %d", latest, self.step)

    # ---------------------------------------------------------------------------------------------
    # The loop
    # ---------------------------------------------------------------------------------------------

    def run(self, on_step: StepHook | None = None) -> Path:
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        logger = RunLogger(self.out_dir, self.step, cfg.train.steps, info.is_main, cfg.train.progress)
        eval_samples = (
            self.dataset.fixed_samples(cfg.train.num_sample_prompts) if cfg.train.sample_every else []
        )
        if eval_samples and info.is_main:
            prompts = [{"task": s.prompt.task, "prompt": s.prompt.placeholder_text} for s in eval_samples]
            write_json_atomic(self.out_dir / "samples" / "prompts.json", prompts)
        batches = self._batches()
        last = None
        began = time.perf_counter()
        try:
            while self.step < cfg.train.steps:
                started = time.perf_counter()
                metrics = self._train_step(batches)
                self.step += 1
                metrics["step_time_s"] = time.perf_counter() - started
                out_of_time = self._out_of_time(began)
                final = self.step == cfg.train.steps or out_of_time
                logger.log_step(self.step, metrics, self.step % cfg.train.log_every == 0 or final)
                if self.step % cfg.train.ckpt_every == 0 or final:
                    last = self.save()
                if cfg.train.sample_every and (
                    self.step % cfg.train.sample_every == 0 or self.step == cfg.train.steps
                ):
                    self._write_samples(logger, eval_samples)
                if on_step is not None:
                    on_step(self.step)
                if out_of_time and self.step < cfg.train.steps:
                    if info.is_main:
                        log.info(
                            "train.max_time_s=%g reached at step %d of %d; continue with --resume",
                            cfg.train.max_time_s,
                            self.step,
                            cfg.train.steps,
                        )
                    break
        finally:
            logger.close()
        return last if last is not None else latest_checkpoint(self.ckpt_dir)

    def _out_of_time(self, began: float) -> bool:
        """Whether train.max_time_s has passed; every rank takes rank 0's answer, so all stop at one step."""
        limit = self.cfg.train.max_time_s
        if limit <= 0:
            return False
        passed = torch.tensor(float(time.perf_counter() - began >= limit), device=self.info.device)
        return bool(dist.broadcast_from_main(passed) > 0)

    def _batches(self) -> Iterator[TaskBatch]:
        """This rank's micro-batches from self.step on (a DataLoader over the global sample indices)."""
        train, data = self.cfg.train, self.cfg.data
        latent_shape = self.model.autoencoder.latent_shape(data.num_frames, data.height, data.width)
        sampler = MicroBatchSampler(
            self.step, train.steps, train.batch_size, train.grad_accum, self.info, train.overfit_batches
        )
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            # The batch's CPU work (images read, text tokenized, noise drawn) in the workers: on a GPU it would
            # otherwise bound the step (benchmarks/batch_prep.py).
            collate_fn=partial(
                collate_samples,
                prepare=partial(prepare_batch, self.cfg.model, self.cfg.diffusion, latent_shape),
            ),
            num_workers=data.num_workers,
            persistent_workers=False,
        )
        return iter(loader)

    def _train_step(self, batches: Iterator[TaskBatch]) -> dict[str, float]:
        cfg, device = self.cfg.train, self.info.device
        # Per-step global RNG (dropout layers, if any): a function of (seed, step, rank), so resumes match.
        torch.manual_seed(cfg.seed * 1_000_003 + self.step * 1009 + self.info.rank)
        rank_batch = cfg.batch_size // self.info.world_size
        loss_sum = torch.zeros((), device=device)
        self.wrapped.train()
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            sync = micro == cfg.grad_accum - 1
            no_sync = self.wrapped.no_sync() if self.mode == "ddp" and not sync else contextlib.nullcontext()
            with no_sync, self.autocast:
                prepared = batch.prepared
                per_sample = self.wrapped(
                    batch.videos.to(device),
                    prepared.prompts,
                    _to(batch.context, device),
                    _to(batch.context_mask, device),
                    sigma=prepared.sigma.to(device),
                    noise=prepared.noise.to(device),
                )
                # Normalised by this rank's share of the global batch; DDP/FSDP average over ranks.
                loss = per_sample.float().sum() / rank_batch
            loss.backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        return {
            "loss": float(dist.all_reduce_mean(loss_sum)),
            "grad_norm": float(dist.full_tensor(grad_norm)),
            "lr": self.scheduler.get_last_lr()[0],
        }

    # ---------------------------------------------------------------------------------------------
    # Outputs
    # ---------------------------------------------------------------------------------------------

    def save(self) -> Path | None:
        """A checkpoint of the current step (all ranks gather under FSDP; rank 0 writes)."""
        raw = dist.full_state_dict(trainable_state_dict(self.model))
        ema = dist.full_state_dict(self.ema.state_dict())
        optimizer_state = dist.optimizer_state(self.model, self.optimizer, self.mode)
        # Every DDP rank must hold the same weights; the digests make that checkable in each checkpoint.
        digests = dist.gather_objects(ckpt.weights_digest(raw)) if self.mode != "fsdp" else []
        path = None
        if self.info.is_main:
            path = ckpt.save_checkpoint(
                self.ckpt_dir,
                self.step,
                config=to_dict(self.cfg.pipeline_config()),
                inference_weights=ema,
                raw_weights=raw,
                optimizer_state=optimizer_state,
                scheduler_state=self.scheduler.state_dict(),
                train_state={
                    "samples_seen": self.step * self.cfg.train.batch_size,
                    "global_batch": self.cfg.train.batch_size,
                    "world_size": self.info.world_size,
                    "stage": self.cfg.train.stage,
                    "rank_weight_digests": digests,
                },
                keep_last=self.cfg.train.keep_last,
            )
        dist.barrier()
        return path

    def _write_samples(self, logger: RunLogger, samples) -> None:
        from vimi.train.samples import generate_samples

        # Under FSDP every rank samples (each block's forward gathers its shards from all ranks); rank 0 writes.
        if not samples or (self.mode != "fsdp" and not self.info.is_main):
            return
        self.model.eval()
        with self.ema.applied(self.model), dist.unsharded(self.model, self.mode), self.autocast:
            videos = generate_samples(self.model, samples, self.cfg.pipeline_config())
        if self.info.is_main:
            logger.log_videos(self.step, videos, fps=self.cfg.world.fps)


class MicroBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches of global sample indices, step after step, from `start_step`."""

    def __init__(
        self,
        start_step: int,
        steps: int,
        global_batch: int,
        grad_accum: int,
        info: dist.DistInfo,
        repeat: int = 0,
    ):
        self.start_step, self.steps, self.repeat = start_step, steps, repeat
        self.global_batch, self.grad_accum = global_batch, grad_accum
        self.rank, self.world_size = info.rank, info.world_size

    def __iter__(self) -> Iterator[list[int]]:
        rank_batch = self.global_batch // self.world_size
        micro = rank_batch // self.grad_accum
        for step in range(self.start_step, self.steps):
            batch_index = step % self.repeat if self.repeat > 0 else step
            first = batch_index * self.global_batch + self.rank * rank_batch
            for m in range(self.grad_accum):
                yield list(range(first + m * micro, first + (m + 1) * micro))

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.grad_accum


def _to(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return tensor.to(device) if tensor is not None else None
