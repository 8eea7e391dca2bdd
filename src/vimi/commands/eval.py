"""`vimi eval grounding|sensitivity|fvd|ucf101|compare`: evaluate a checkpoint, or compare two evaluations.

vimi eval grounding --checkpoint DIR --world DIR [--split heldout] [--n N] [--task all] [--baseline DIR] --out OUT
vimi eval sensitivity --checkpoint DIR [--world DIR] [--prompts DIR] [--task subject] [--swap images] [--n 32]
vimi eval fvd --real DIR --fake DIR [--out FILE]
vimi eval ucf101 --root UCF101_DIR --checkpoint DIR [--out OUT]
vimi eval compare RESULT RESULT [--out FILE]      (RESULT: a grounding --out folder[:NAME])
"""

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from vimi.cli import add_config_arguments
from vimi.errors import ConfigError, DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")
SENSITIVITY_TASKS = ("subject", "predict", "retrieval_t2v", "t2v")
DEVICE_HELP = "auto, cpu, cuda or cuda:N (default: eval.device, auto = cuda when available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    grounding = sub.add_parser("grounding", help="exact grounding metrics on a GroundedWorld + HTML report")
    add_config_arguments(grounding)
    grounding.add_argument("--checkpoint", required=True, help="pipeline/checkpoint folder (or a run folder)")
    grounding.add_argument("--world", required=True, help="a GroundedWorld folder (vimi world --out)")
    grounding.add_argument("--split", default=None, help="train or heldout (default: eval.split)")
    grounding.add_argument("--n", type=int, default=None, help="prompts per task (default: eval.n)")
    grounding.add_argument(
        "--task",
        default=None,
        help="subject, predict, t2v, two_subject or all (comma-separated; default: eval.tasks)",
    )
    grounding.add_argument(
        "--baseline", default=None, help="a second checkpoint shown side by side (e.g. text-only)"
    )
    grounding.add_argument("--index", default=None, help="retrieval index for the t2v task (vimi index)")
    grounding.add_argument(
        "--num-inference-steps", type=int, default=None, help="sampler steps (default: the checkpoint's)"
    )
    # --set sample.guidance_text=... (and guidance_image, sampler, num_inference_steps) override the checkpoints' own.
    grounding.add_argument("--device", default=None, help=DEVICE_HELP)
    grounding.add_argument("--out", required=True, help="output folder: metrics.json, report.html, media/")

    sens = sub.add_parser(
        "sensitivity",
        help="does a checkpoint use its prompt? denoising error with right vs swapped conditions",
    )
    add_config_arguments(sens)
    sens.add_argument("--checkpoint", required=True, help="pipeline/checkpoint folder (or a run folder)")
    sens.add_argument(
        "--weights",
        choices=["ema", "raw"],
        default="ema",
        help="a training checkpoint's EMA weights (what it ships) or its raw ones (short trials; default: ema)",
    )
    sens.add_argument(
        "--world",
        default=None,
        help="GroundedWorld folder of the samples (default: the checkpoint's data.world_dir)",
    )
    sens.add_argument(
        "--prompts",
        default=None,
        help="`vimi build-prompts` dataset, for --task retrieval_t2v (default: the checkpoint's data.train_manifest)",
    )
    sens.add_argument("--task", default="subject", choices=SENSITIVITY_TASKS, help="the samples' task")
    sens.add_argument(
        "--swap",
        default="images",
        choices=("images", "prompts", "motions"),
        help="swap only the images, whole prompts, or reverse the motion words (GroundedWorld captions)",
    )
    sens.add_argument("--n", type=int, default=32, help="samples (default: 32)")
    sens.add_argument("--sigmas", default="40,20,10,3,1,0.3", help="comma-separated noise levels")
    sens.add_argument("--seed", type=int, default=0, help="seed of the noise")
    sens.add_argument("--device", default=None, help=DEVICE_HELP)
    sens.add_argument("--out", default=None, help="also write the rows to this JSON file")

    fvd = sub.add_parser("fvd", help="FVD between two folders of videos (I3D Kinetics-400 features)")
    add_config_arguments(fvd)
    fvd.add_argument("--real", required=True, help="folder of real videos")
    fvd.add_argument("--fake", required=True, help="folder of generated videos")
    fvd.add_argument("--frames", type=int, default=16, help="frames read from the start of each video")
    fvd.add_argument("--device", default=None, help=DEVICE_HELP)
    fvd.add_argument("--out", default=None, help="also write the result to this JSON file")

    ucf = sub.add_parser("ucf101", help="zero-shot UCF101 protocol: FVD (and IS with C3D weights)")
    add_config_arguments(ucf)
    ucf.add_argument("--root", required=True, help="UCF101 folder holding the 101 class folders")
    ucf.add_argument("--checkpoint", required=True, help="pipeline/checkpoint folder (or a run folder)")
    ucf.add_argument("--device", default=None, help=DEVICE_HELP + "; the generator and I3D share it")
    ucf.add_argument("--out", default="outputs/ucf101", help="output folder for ucf101.json")

    compare = sub.add_parser(
        "compare", help="paired differences between two grounding evaluations of the same prompts"
    )
    for side in ("a", "b"):
        compare.add_argument(
            side,
            metavar=f"RESULT_{side.upper()}",
            help="a `vimi eval grounding --out` folder or its metrics.json, optionally :NAME "
            "(default :checkpoint; :baseline for a --baseline run's)",
        )
    compare.add_argument("--samples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    compare.add_argument("--out", default=None, help="also write the rows to this JSON file")


def run(args: argparse.Namespace) -> int:
    if args.eval_command == "compare":  # reads two metrics.json files: no config, no device
        return _compare(args)
    from vimi.config import load_config
    from vimi.utils.device import resolve_device

    cfg = load_config(args.config, args.overrides)
    # One device per command, checked before any weights load: --device, else eval.device.
    args.device = resolve_device(args.device if args.device is not None else cfg.eval.device)
    commands = {"grounding": _grounding, "sensitivity": _sensitivity, "fvd": _fvd, "ucf101": _ucf101}
    return commands[args.eval_command](args, cfg)


# --------------------------------------------------------------------------------------------------


def _grounding(args: argparse.Namespace, cfg) -> int:
    from vimi.checkpoint import load_pipeline_config
    from vimi.eval.bench import check_tasks, sampling_overrides

    # Everything a user can get wrong is checked before any weights are loaded.
    tasks = check_tasks([args.task] if args.task is not None else cfg.eval.tasks)
    eval_cfg = dataclasses.replace(
        cfg.eval, split=args.split or cfg.eval.split, n=cfg.eval.n if args.n is None else args.n
    )
    sampling = sampling_overrides(args.overrides, cfg.sample, args.num_inference_steps)
    if eval_cfg.split not in ("train", "heldout"):
        raise ConfigError(f"--split {eval_cfg.split}: use train or heldout")
    if eval_cfg.n < 1:
        raise ConfigError(f"--n {eval_cfg.n}: give at least 1 prompt per task")
    checkpoints = {"checkpoint": args.checkpoint} | ({"baseline": args.baseline} if args.baseline else {})
    for flag, path in checkpoints.items():
        if not Path(path).is_dir():
            raise ConfigError(f"--{flag} {path}: no such checkpoint folder")
        load_pipeline_config(path)  # CheckpointError if it is not a complete checkpoint
    if args.index is not None and not Path(args.index).exists():
        raise ConfigError(f"--index {args.index}: no such index folder; build one with `vimi index`")
    from vimi.config import save_config
    from vimi.data.world import load_world
    from vimi.eval.run import evaluate_checkpoints, format_metrics

    save_config(cfg, Path(args.out) / "config.yaml")  # the resolved config, beside the run's outputs
    summary = evaluate_checkpoints(
        checkpoints, load_world(args.world), tasks, eval_cfg, args.out,
        index=args.index, sampling=sampling, device=args.device,
    )  # fmt: skip
    print("\n".join(format_metrics(summary, list(checkpoints))))
    print(f"wrote {Path(args.out) / 'metrics.json'} and {summary['report']}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vimi.eval.compare import compare_results, format_comparison, load_result

    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: give at least 1 bootstrap resample")
    a, b = load_result(args.a), load_result(args.b)
    rows = compare_results(a, b, samples=args.samples)
    print("\n".join(format_comparison(rows, a, b)))
    if args.out:
        from vimi.utils.atomic import write_json_atomic

        result = {"a": {"path": str(a.path), "name": a.name}, "b": {"path": str(b.path), "name": b.name}}
        write_json_atomic(args.out, result | {"rows": [dataclasses.asdict(r) for r in rows]})
    return 0


def _sensitivity(args: argparse.Namespace, cfg) -> int:
    from vimi.checkpoint import load_pipeline_config
    from vimi.config import TaskWeights

    try:
        sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--sigmas {args.sigmas!r}: give comma-separated numbers, e.g. 40,10,1") from None
    if not sigmas or min(sigmas) <= 0:
        raise ConfigError(f"--sigmas {args.sigmas!r}: give at least one noise level, all > 0")
    if args.n < 2:
        raise ConfigError(f"--n {args.n}: a swap needs at least 2 samples")
    _, checkpoint_cfg = load_pipeline_config(args.checkpoint)  # CheckpointError before anything else loads
    if args.swap == "images" and checkpoint_cfg.model.text_only:
        raise ConfigError(
            f"{args.checkpoint} is text-only (model.text_only): it sees no images; use --swap prompts"
        )
    # Clips of the checkpoint's own video size, drawn as --config's tasks draw them (its train.* settings),
    # from the chosen world and prompts.
    sample = checkpoint_cfg.sample
    data = dataclasses.replace(
        cfg.data,
        world_dir=args.world or cfg.data.world_dir,
        train_manifest=args.prompts or cfg.data.train_manifest,
        num_frames=sample.num_frames,
        height=sample.height,
        width=sample.width,
    )
    weights = TaskWeights(**{f.name: float(f.name == args.task) for f in dataclasses.fields(TaskWeights)})
    train = dataclasses.replace(cfg.train, stage="instruct", tasks=weights)
    sample_cfg = dataclasses.replace(cfg, data=data, train=train, model=checkpoint_cfg.model)

    from vimi.data.tasks import build_task_dataset, collate_samples
    from vimi.eval.sensitivity import SWAPS, condition_sensitivity, format_sensitivity
    from vimi.pipeline import VimiPipeline

    dataset = build_task_dataset(sample_cfg)
    batch = collate_samples([dataset.sample(i, dropout=False, stream="eval") for i in range(args.n)])
    swapped = SWAPS[args.swap](batch.prompts)
    changed = sum(
        a is not b for a, b in zip(batch.prompts, swapped)
    )  # a swap returns unchanged prompts as is
    if not changed:
        why = {"images": "no images to swap", "motions": "no motion words", "prompts": "all one prompt"}[
            args.swap
        ]
        raise DataError(f"--swap {args.swap} changed none of the {args.n} {args.task} prompts ({why})")
    pipe = VimiPipeline.from_pretrained(args.checkpoint, device=args.device, weights=args.weights)
    # model.condition moves the context frames to the model's device itself.
    rows = condition_sensitivity(
        pipe.model, batch.videos.to(pipe.device), batch.prompts, swapped, sigmas,
        batch.context, batch.context_mask, seed=args.seed,
    )  # fmt: skip
    print(f"{args.checkpoint}: {args.n} {args.task} samples, {changed} with a swapped condition")
    print("\n".join(format_sensitivity(rows, args.swap)))
    if args.out:
        from vimi.utils.atomic import write_json_atomic

        rows_json = [dataclasses.asdict(r) | {"gain": r.gain} for r in rows]
        result = {"checkpoint": str(args.checkpoint), "task": args.task, "swap": args.swap, "n": args.n}
        write_json_atomic(args.out, result | {"changed": changed, "rows": rows_json})
    return 0


def _video_files(folder: str, flag: str) -> list[Path]:
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{flag} {folder}: no such folder of videos")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if len(files) < 2:
        raise ConfigError(f"{flag} {folder}: found {len(files)} video(s); FVD needs at least 2 per side")
    return files


def _fvd(args: argparse.Namespace, cfg) -> int:
    from vimi.eval.i3d import I3D_MIN_FRAMES

    real, fake = _video_files(args.real, "--real"), _video_files(args.fake, "--fake")
    if args.frames < I3D_MIN_FRAMES:
        raise ConfigError(f"--frames {args.frames}: I3D needs at least {I3D_MIN_FRAMES} (16 is standard)")
    from vimi.data.video_io import probe_video, read_video
    from vimi.eval.frechet import fvd
    from vimi.eval.i3d import load_i3d

    # Every clip has exactly --frames frames: features of clips of other lengths are not comparable.
    for file in real + fake:
        if (count := probe_video(file).num_frames) < args.frames:
            raise DataError(f"{file}: {count} frames, fewer than --frames {args.frames}; lower --frames")

    def clips(files):
        for file in files:
            yield read_video(file, args.frames)

    model = load_i3d(cfg.eval.i3d_path, args.device)
    value = fvd(clips(real), clips(fake), model=model, batch_size=cfg.eval.batch_size, device=args.device)
    result = {"fvd": value, "num_real": len(real), "num_fake": len(fake), "frames": args.frames}
    if args.out:
        from vimi.utils.atomic import write_json_atomic

        write_json_atomic(args.out, result)
    print(json.dumps(result))
    return 0


def _ucf101(args: argparse.Namespace, cfg) -> int:
    from vimi.checkpoint import load_pipeline_config
    from vimi.eval.ucf101 import list_ucf101, run_ucf101
    from vimi.pipeline import VimiPipeline

    list_ucf101(args.root)  # DataError naming the folder before the weights are loaded
    load_pipeline_config(args.checkpoint)
    pipe = VimiPipeline.from_pretrained(args.checkpoint, device=args.device)

    def generate(prompts, seeds):
        return pipe(prompts, seed=list(seeds), num_frames=cfg.eval.ucf_num_frames, progress=False).frames

    results = run_ucf101(args.root, generate, cfg.eval, args.out, device=args.device)
    print(json.dumps({k: v for k, v in results.items() if k != "protocol"}, default=str))
    return 0
