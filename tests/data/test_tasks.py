"""Task datasets: manifest rows -> (prompt, video, context) samples, deterministic per global index."""

import re
from pathlib import Path

import pytest
import torch

from vimi.config import RetrievalConfig, VimiConfig, WorldConfig
from vimi.data.tasks import build_task_dataset, collate_samples, drop_condition
from vimi.errors import ConfigError, DataError
from vimi.prompt import INSTRUCTIONS, MultimodalPrompt, parse_prompt


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from vimi.data.world import build_world
    from vimi.retrieval import build_index, build_prompts

    root = tmp_path_factory.mktemp("tasks")
    build_world(WorldConfig(preset="tiny", seed=5), root / "world")
    build_index(root / "world" / "memory", root / "index", RetrievalConfig())
    build_prompts(
        root / "world" / "videos" / "train",
        root / "index",
        root / "prompts",
        RetrievalConfig(k=2),
        progress=False,
    )
    return root


def config(world: Path, stage="instruct", **tasks) -> VimiConfig:
    cfg = VimiConfig()
    cfg.data.world_dir = str(world / "world")
    cfg.data.train_manifest = str(world / "prompts")
    cfg.data.num_frames, cfg.data.height, cfg.data.width = 4, 16, 16
    cfg.train.stage = stage
    cfg.train.drop_text = cfg.train.drop_images = cfg.train.drop_both = 0.0
    for name in ("subject", "predict", "retrieval_t2v", "pretrain", "t2v"):
        setattr(cfg.train.tasks, name, tasks.get(name, 0.0))
    return cfg


def test_samples_are_a_function_of_seed_and_index(world):
    cfg = config(world, subject=1, predict=1, retrieval_t2v=1)
    a, b = build_task_dataset(cfg), build_task_dataset(cfg)
    for i in (0, 7, 123):
        x, y = a.sample(i), b.sample(i)
        assert x.prompt.placeholder_text == y.prompt.placeholder_text and x.seed == y.seed
        assert torch.equal(x.video, y.video) and x.video.shape == (3, 4, 16, 16)
    assert len({a.sample(i).seed for i in range(20)}) == 20
    assert {a.sample(i).prompt.task for i in range(30)} == {"subject", "predict", "retrieval_t2v"}


def test_stage1_uses_the_build_prompts_dataset(world):
    dataset = build_task_dataset(config(world, stage="pretrain", subject=1))
    assert dataset.names == ["pretrain"]  # stage 1 ignores the stage-2 mixture
    prompt = dataset.sample(0).prompt
    assert prompt.task == "pretrain" and len(prompt.images) == 2
    assert all(Path(image.path).is_file() for image in prompt.images)
    assert "<image>+ " in prompt.placeholder_text and not prompt.text.startswith("Generate")


def test_subject_images_are_memory_images_of_the_named_subjects(world):
    dataset = build_task_dataset(config(world, subject=1))
    memory = (world / "world" / "memory").resolve()
    seen_forms = set()
    for i in range(30):
        prompt = dataset.sample(i).prompt
        assert prompt.text.startswith(INSTRUCTIONS["subject"])
        assert 1 <= len(prompt.images) <= 2
        for image in prompt.images:  # never a frame of the target video: a file in the memory
            assert Path(image.path).resolve().is_relative_to(memory) and "/subjects/" in image.path
        for word in re.findall(r"(\w+) ?<image>", prompt.placeholder_text):
            seen_forms.add("template" if word.lower() in ("a", "an") else "name")
    assert len(seen_forms) == 2  # both "<name> <image>" and the "A <image>" template occur


def test_subject_reference_prob_picks_the_reference_images_that_evaluation_prompts_with(world):
    from vimi.data.world.loader import load_world

    loaded = load_world(world / "world")
    references = {str(loaded.reference_image(s.id).resolve()) for s in loaded.subjects_in("train")}

    def images(prob: float) -> list[str]:
        cfg = config(world, subject=1)
        cfg.train.subject_reference_prob = prob
        dataset = build_task_dataset(cfg)
        return [str(Path(i.path).resolve()) for n in range(40) for i in dataset.sample(n).prompt.images]

    assert set(images(1.0)) <= references
    mixed = images(0.0)  # any of a subject's images: mostly one in a scene
    assert any(image not in references for image in mixed) and any(image in references for image in mixed)
    with pytest.raises(ConfigError, match=r"train\.subject_reference_prob"):
        images(1.5)


def test_predict_gives_first_frame_in_prompt_and_as_context(world):
    cfg = config(world, predict=1)
    sample = build_task_dataset(cfg).sample(3)
    assert sample.prompt.text.startswith(INSTRUCTIONS["predict"])
    (frame,) = sample.prompt.images
    assert torch.equal(frame.source, sample.video[:, 0])
    assert sample.context_mask.shape == (1, 4, 16, 16)
    assert sample.context_mask[:, 0].eq(1).all() and sample.context_mask[:, 1:].eq(0).all()
    assert torch.equal(sample.context[:, 0], sample.video[:, 0]) and sample.context[:, 1:].eq(0).all()
    cfg.train.predict_frames = 2
    sample = build_task_dataset(cfg).sample(3)
    assert len(sample.prompt.images) == 2 and sample.context_mask[:, :2].eq(1).all()


def test_retrieval_t2v_wraps_the_retrieved_prompt_in_its_instruction(world):
    prompt = build_task_dataset(config(world, retrieval_t2v=1)).sample(0).prompt
    assert prompt.task == "retrieval_t2v" and prompt.text.startswith(INSTRUCTIONS["retrieval_t2v"])
    assert len(prompt.images) == 2


def test_condition_dropout_each_independently(world):
    cfg = config(world)
    cfg.train.drop_both, cfg.train.drop_text, cfg.train.drop_images = 0.1, 0.2, 0.3
    prompt = parse_prompt("A <image> in the city", images=[torch.zeros(3, 4, 4)], task="subject")
    assert drop_condition(prompt, 0.05, cfg).is_empty
    dropped_text = drop_condition(prompt, 0.15, cfg)
    assert dropped_text.text == "" and len(dropped_text.images) == 1
    dropped_images = drop_condition(prompt, 0.45, cfg)
    assert dropped_images.images == [] and dropped_images.text == "A in the city"
    assert drop_condition(prompt, 0.65, cfg) is prompt
    cfg.train.tasks.subject = 1.0
    dataset = build_task_dataset(cfg)
    empty = sum(dataset.sample(i).prompt.is_empty for i in range(200))
    assert 8 <= empty <= 35  # ~10% of 200


def test_collate_pads_missing_context_with_zero_mask(world):
    dataset = build_task_dataset(config(world, subject=1, predict=1))
    samples = [dataset.sample(i) for i in range(12)]
    assert {s.context is None for s in samples} == {True, False}
    batch = collate_samples(samples)
    assert batch.videos.shape == (12, 3, 4, 16, 16) and batch.context.shape == (12, 3, 4, 16, 16)
    assert batch.context_mask.shape == (12, 1, 4, 16, 16)
    for i, s in enumerate(samples):
        assert batch.context_mask[i].sum() == (0 if s.context is None else 16 * 16)
    assert batch.indices == list(range(12))


def test_batches_prepared_in_a_worker_train_the_model_as_in_the_loop(world):
    """The trainer's collate prepares a batch (image files read, text tokenized, the seeds' noise drawn) in a
    DataLoader worker process; the model's condition and loss on that are those on the batch itself."""
    from functools import partial

    from vimi.models.vimi_model import VimiModel
    from vimi.train.batch_prep import PreparedBatch, prepare_batch

    cfg = config(world, subject=1, predict=1, retrieval_t2v=1)
    for key, value in (("hidden", 32), ("depth", 1), ("heads", 2), ("image_thumbnail", 4)):
        setattr(cfg.model.backbone, key, value)
    cfg.model.encoder.dim, cfg.model.encoder.depth, cfg.model.encoder.heads = 32, 1, 2
    dataset = build_task_dataset(cfg)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[list(range(12))],
        num_workers=1,
        collate_fn=partial(
            collate_samples, prepare=partial(prepare_batch, cfg.model, cfg.diffusion, (3, 4, 16, 16))
        ),
    )
    batch = next(iter(loader))
    prepared = batch.prepared
    assert isinstance(prepared, PreparedBatch) and prepared.prompts.encoder_input.images.shape[0] > 0
    assert prepared.prompts.pooled.shape == (12, 3 * 4 * 4 + 1)
    assert prepared.noise.shape == (12, 3, 4, 16, 16) and prepared.sigma.shape == (12,)
    model = VimiModel(cfg.model, cfg.diffusion)
    here, there = model.condition(batch.prompts), model.condition(prepared.prompts)
    for field in ("tokens", "mask", "pooled"):
        assert torch.equal(getattr(here, field), getattr(there, field)), field
    assert not torch.equal(here.pooled, model.condition(batch.prompts[::-1]).pooled)
    frames = (batch.videos, batch.context, batch.context_mask)
    noise = {"sigma": prepared.sigma, "noise": prepared.noise}
    assert torch.equal(
        model(frames[0], batch.prompts, *frames[1:], **noise),
        model(frames[0], prepared.prompts, *frames[1:], **noise),
    )
    # Another sample's noise is another loss; noise of the wrong shape is an error that names both shapes.
    shifted = prepare_batch(
        cfg.model, cfg.diffusion, (3, 4, 16, 16), batch.prompts, [seed + 1 for seed in batch.seeds]
    )
    assert not torch.equal(
        model(frames[0], prepared.prompts, *frames[1:], **noise),
        model(frames[0], prepared.prompts, *frames[1:], sigma=shifted.sigma, noise=shifted.noise),
    )
    wrong = prepare_batch(cfg.model, cfg.diffusion, (3, 4, 8, 8), batch.prompts, batch.seeds)
    with pytest.raises(ValueError, match=r"noise \(12, 3, 4, 8, 8\) for x0 \(12, 3, 4, 16, 16\)"):
        model(frames[0], prepared.prompts, *frames[1:], sigma=wrong.sigma, noise=wrong.noise)


def test_in_memory_and_streaming_clips_agree(world):
    cfg = config(world, t2v=1)
    streamed = config(world, t2v=1)
    streamed.data.in_memory = False
    for i in (0, 5):
        assert torch.equal(
            build_task_dataset(cfg).sample(i).video, build_task_dataset(streamed).sample(i).video
        )


def test_missing_datasets_are_data_errors_naming_them(world, tmp_path):
    cfg = config(world, stage="pretrain")
    cfg.data.train_manifest = str(tmp_path / "no_prompts")
    with pytest.raises(DataError, match="no_prompts"):
        build_task_dataset(cfg)
    cfg = config(world, subject=1)
    cfg.data.world_dir = str(tmp_path / "no_world")
    with pytest.raises(DataError, match="no_world"):
        build_task_dataset(cfg)
    with pytest.raises(DataError, match="every task weight is 0"):
        build_task_dataset(config(world))
    assert MultimodalPrompt([], "t2v").is_empty


def video_rows(world: Path) -> list[dict]:
    """The tiny world's video rows with absolute video paths, so a manifest written elsewhere can use them."""
    from vimi.data.manifest import iter_records

    videos = world / "world" / "videos" / "train"
    return [{**row, "video": str(videos / row["video"])} for row in iter_records(videos)]


def test_manifest_rows_match_the_streamed_rows_across_shards(world, tmp_path):
    from vimi.data.manifest import ManifestWriter, iter_records
    from vimi.data.tasks import ManifestRows

    rows = video_rows(world)
    with ManifestWriter(tmp_path / "videos", shard_size=3) as writer:
        writer.write_many(rows)
    table_rows = ManifestRows(tmp_path / "videos", "video-text", ("caption", "video"), ("id", "nope"))
    assert len(table_rows) == len(rows) and len(table_rows.tables) == -(-len(rows) // 3)
    assert table_rows.columns == ["caption", "video", "id"]  # absent optional columns are skipped
    streamed = list(iter_records(tmp_path / "videos", columns=["caption", "video", "id"]))
    assert [table_rows[i] for i in range(len(rows))] == streamed
    with pytest.raises(IndexError):
        table_rows[len(rows)]
    with pytest.raises(DataError, match=r"lacks column\(s\) prompt"):
        ManifestRows(tmp_path / "videos", "multimodal-prompt", ("prompt", "video"))


def test_malformed_prompt_json_is_a_data_error_naming_task_row_and_manifest(world, tmp_path):
    from vimi.data.manifest import ManifestWriter

    rows = video_rows(world)[:2]
    with ManifestWriter(tmp_path / "bad_prompts") as writer:
        writer.write_many({"id": r["id"], "prompt": '{"segments": [', "video": r["video"]} for r in rows)
    cfg = config(world, stage="pretrain")
    cfg.data.train_manifest = str(tmp_path / "bad_prompts")
    with pytest.raises(DataError, match=r"task pretrain, row \d of .*bad_prompts: .*not valid JSON"):
        build_task_dataset(cfg).sample(0)


def test_missing_subject_image_is_a_data_error_naming_the_image(world, tmp_path):
    from vimi.data.manifest import ManifestWriter

    rows = [
        {"id": r["id"], "caption": "A cat sits.", "video": r["video"], "subject_names": ["cat"]}
        | {"subject_images": [str(tmp_path / "crops" / "gone.png")]}
        for r in video_rows(world)[:2]
    ]
    with ManifestWriter(tmp_path / "real_videos") as writer:
        writer.write_many(rows)
    cfg = config(world, subject=1)
    cfg.data.video_manifest = str(tmp_path / "real_videos")
    with pytest.raises(DataError, match=r"task subject, row \d of .*real_videos: .*not found: .*gone\.png"):
        build_task_dataset(cfg).sample(0)
