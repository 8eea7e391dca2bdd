"""VimiPipeline: determinism, per-sample seeds, batch invariance, save/load, guidance, output types,
input checks, checkpoints of other versions."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from vimi.errors import CheckpointError, ConfigError, PromptError
from vimi.pipeline import VimiPipeline, check_sample_size, load_frame, to_prompt


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint: Path) -> VimiPipeline:
    return VimiPipeline.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def subject_prompt(real_photos: dict[str, Path]) -> str:
    return f"A <image:{real_photos['cat.png']}> spins in <image:{real_photos['astronaut.jpg']}>"


def generate(pipe: VimiPipeline, prompt, **kwargs) -> torch.Tensor:
    return pipe(prompt, progress=False, **kwargs).frames


def test_output_shape_range_and_defaults(pipe, subject_prompt):
    video = generate(pipe, subject_prompt, seed=0)
    sample = pipe.cfg.sample
    assert video.shape == (1, 3, sample.num_frames, sample.height, sample.width)
    assert video.min() >= -1 and video.max() <= 1
    assert video.std() > 0.05  # not a constant image
    wide = generate(pipe, "a red ball", num_frames=2, height=8, width=24, num_inference_steps=2, seed=0)
    assert wide.shape == (1, 3, 2, 8, 24)


def test_output_types_hold_the_same_video(pipe, subject_prompt, tmp_path):
    from vimi.utils.export import as_tensor, export_to_video

    video = generate(pipe, subject_prompt, seed=2)  # [B, C, T, H, W] in [-1, 1]
    array = generate(pipe, subject_prompt, seed=2, output_type="np")
    images = generate(pipe, subject_prompt, seed=2, output_type="pil")
    _, channels, frames, height, width = video.shape
    assert array.shape == (1, frames, height, width, channels) and array.min() >= 0 and array.max() <= 1
    torch.testing.assert_close(torch.from_numpy(array[0]).permute(3, 0, 1, 2) * 2 - 1, video[0])
    assert len(images) == 1 and len(images[0]) == frames and images[0][0].size == (width, height)
    # Each form goes back to the same tensor (the PIL frames to within uint8 rounding) and to a file.
    torch.testing.assert_close(as_tensor(array[0]), video[0], atol=1e-6, rtol=0)
    assert (as_tensor(images[0]) - video[0]).abs().max() <= 1 / 127.5 + 1e-6
    from vimi.data.video_io import probe_video

    for form in (video[0], array[0], images[0]):
        written = export_to_video(form, tmp_path / "video.mp4", fps=8)
        assert probe_video(written).num_frames == frames
    with pytest.raises(ConfigError, match=r"mp4 or \.gif"):
        export_to_video(video[0], tmp_path / "video.avi")
    with pytest.raises(ConfigError, match="output_type 'latent'"):
        generate(pipe, subject_prompt, output_type="latent")


def test_same_seed_same_video_and_different_seed_different_video(pipe, subject_prompt):
    first, again = generate(pipe, subject_prompt, seed=7), generate(pipe, subject_prompt, seed=7)
    other = generate(pipe, subject_prompt, seed=8)
    assert torch.equal(first, again)
    assert (first - other).abs().mean() > 1e-2


def test_batch_equals_per_sample_results(pipe, subject_prompt, real_photos):
    # Prompts of different lengths (padding), tasks and a first frame for one of them.
    prompts = [subject_prompt, "a small blue cube slides left", "the cat jumps"]
    frames = [None, None, real_photos["cat.jpg"]]
    batch = generate(pipe, prompts, first_frame=frames, seed=[11, 5, 3])
    assert batch.shape[0] == 3
    for i, (prompt, frame, seed) in enumerate(zip(prompts, frames, [11, 5, 3])):
        single = generate(pipe, prompt, first_frame=frame, seed=seed)
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-4, rtol=0)
    # seed=int gives sample i the seed seed + i
    torch.testing.assert_close(
        generate(pipe, prompts[:2], seed=4)[1:], generate(pipe, prompts[1], seed=5), atol=1e-4, rtol=0
    )


def test_stochastic_sampler_is_seeded_per_sample(pipe, subject_prompt):
    prompts = [subject_prompt, "a small blue cube slides left"]
    batch = generate(pipe, prompts, seed=[3, 9], sampler="euler_ancestral")
    for i, seed in enumerate([3, 9]):
        single = generate(pipe, prompts[i], seed=seed, sampler="euler_ancestral")
        torch.testing.assert_close(batch[i : i + 1], single, atol=1e-4, rtol=0)
    other = generate(pipe, prompts[0], seed=4, sampler="euler_ancestral")
    assert (other - batch[:1]).abs().mean() > 1e-2
    deterministic = generate(pipe, prompts[0], seed=3, sampler="euler")
    assert (deterministic - batch[:1]).abs().mean() > 1e-3  # the fresh noise matters


def test_save_load_round_trip_gives_identical_outputs(pipe, subject_prompt, tmp_path):
    saved = pipe.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in saved.iterdir()) == ["COMPLETE", "config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".copy.tmp-*"))  # the temp folder was renamed, not left behind
    loaded = VimiPipeline.from_pretrained(saved, device="cpu")
    assert torch.equal(generate(pipe, subject_prompt, seed=3), generate(loaded, subject_prompt, seed=3))
    # Saving over an existing folder replaces it atomically.
    pipe.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "COMPLETE").is_file()


def test_guidance_scales_change_the_video(pipe, subject_prompt):
    videos = {
        scales: generate(pipe, subject_prompt, seed=1, guidance_text=scales[0], guidance_image=scales[1])
        for scales in [(1.0, 1.0), (4.0, 1.0), (1.0, 4.0), (4.0, 4.0)]
    }
    keys = list(videos)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert (videos[a] - videos[b]).abs().mean() > 1e-3, f"guidance {a} and {b} gave the same video"


def test_first_frame_conditions_the_video(pipe, real_photos):
    cat = generate(pipe, "it moves", first_frame=real_photos["cat.png"], seed=0)
    rocket = generate(pipe, "it moves", first_frame=real_photos["rocket.png"], seed=0)
    assert (cat[:, :, 1:] - rocket[:, :, 1:]).abs().mean() > 1e-3  # the generated frames, too
    # The given frame comes back exactly as given; the frames after it are generated.
    given = load_frame(real_photos["cat.png"], tuple(cat.shape[-2:]))  # [3, H, W]
    torch.testing.assert_close(cat[0, :, 0], given)
    assert (cat[0, :, 1] - given).abs().mean() > 1e-3
    prompt = pipe.prepare_prompt("it moves", first_frame=real_photos["cat.png"])
    assert prompt.task == "predict" and len(prompt.images) == 1
    assert prompt.text.startswith("Generate a video with the text and first frame:")


def test_prepare_prompt_picks_the_task(pipe, subject_prompt):
    subject = pipe.prepare_prompt(subject_prompt)
    assert subject.task == "subject" and len(subject.images) == 2
    assert subject.text.startswith("Generate a video with the text and image(s):")
    assert pipe.prepare_prompt("a red ball").task == "t2v"


def test_index_grounds_a_text_only_prompt(pipe, tmp_path):
    from vimi.config import RetrievalConfig, WorldConfig
    from vimi.data.world import build_world, load_world
    from vimi.retrieval import build_index

    build_world(WorldConfig(preset="tiny"), tmp_path / "world")
    world = load_world(tmp_path / "world")
    build_index(world.memory_dir, tmp_path / "index", RetrievalConfig(), progress=False)
    subject = world.subjects_in("heldout")[0]
    caption = f"A {subject.name} spins quickly in the forest."
    prompt = pipe.prepare_prompt(caption, index=tmp_path / "index")
    assert prompt.task == "retrieval_t2v" and prompt.text.endswith(f"+ {caption}")
    assert prompt.text.startswith("Generate a video with the retrieved text-image pairs:")
    assert 1 <= len(prompt.images) <= pipe.cfg.sample.retrieved_examples
    assert str(world.reference_image(subject.id)) in [image.path for image in prompt.images]
    grounded = generate(pipe, caption, index=tmp_path / "index", seed=0)
    plain = generate(pipe, caption, seed=0)
    assert (grounded - plain).abs().mean() > 1e-3


def test_text_only_checkpoint_ignores_prompt_images(tiny_checkpoint, subject_prompt, real_photos, tmp_path):
    text_only = tmp_path / "text-only"
    shutil.copytree(tiny_checkpoint, text_only)
    config = json.loads((text_only / "config.json").read_text())
    config["model"]["text_only"] = True
    (text_only / "config.json").write_text(json.dumps(config))
    baseline = VimiPipeline.from_pretrained(text_only, device="cpu")
    # The images make no difference to the baseline, the given frame still does.
    with_images = generate(baseline, subject_prompt, seed=0)
    without = generate(baseline, baseline.prepare_prompt(subject_prompt).drop_images(), seed=0)
    torch.testing.assert_close(with_images, without)
    framed = generate(baseline, "the cat jumps", first_frame=real_photos["cat.jpg"], seed=0)
    assert (framed - generate(baseline, "the cat jumps", seed=0)).abs().mean() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_frames": 2000}, "frames=2000"),
        ({"height": 18}, "height=18 is not divisible"),
        ({"width": 8192}, "width=8192 is out of range"),
        ({"num_inference_steps": 0}, "num_inference_steps=0"),
        ({"sampler": "ddim"}, "unknown sampler 'ddim'"),
        ({"seed": [1, 2]}, "2 seeds given for 1 prompts"),
    ],
)
def test_bad_arguments_raise_config_errors_naming_them(pipe, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        generate(pipe, "a red ball", **kwargs)


def test_bad_prompts_raise_prompt_errors(pipe, real_photos, tmp_path):
    with pytest.raises(PromptError, match=r"not found: .*missing\.png"):
        generate(pipe, "A <image:missing.png> spins")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(PromptError, match=r"broken\.png"):
        generate(pipe, f"A <image:{broken}> spins")
    with pytest.raises(PromptError, match="1 <image> placeholder"):
        to_prompt("A <image> spins in <image:x.png>", images=[], base_dir=tmp_path)


def test_check_sample_size_suggests_a_valid_size():
    with pytest.raises(ConfigError, match="try 16"):
        check_sample_size(4, 18, 16, (1, 4, 4))
    check_sample_size(1024, 4096, 4096, (1, 4, 4))


def test_loading_refuses_incomplete_and_mismatched_checkpoints(tiny_checkpoint, tmp_path):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(tiny_checkpoint, incomplete)
    (incomplete / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match="COMPLETE"):
        VimiPipeline.from_pretrained(incomplete)
    wider = tmp_path / "wider"
    shutil.copytree(tiny_checkpoint, wider)
    config = json.loads((wider / "config.json").read_text())
    config["model"]["backbone"]["depth"] = 2
    (wider / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing key"):
        VimiPipeline.from_pretrained(wider)


def test_checkpoints_hold_only_what_generation_needs(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert sorted(config) == ["diffusion", "model", "sample"]


def test_a_checkpoint_with_a_whole_run_config_loads_and_says_what_it_ignores(
    tiny_checkpoint, tmp_path, caplog
):
    older = tmp_path / "older"
    shutil.copytree(tiny_checkpoint, older)
    config = json.loads((older / "config.json").read_text())
    config["data"] = {"shuffle_buffer": 1000}  # sections generation never reads, even with unknown keys
    config["train"] = {"steps": 10}
    (older / "config.json").write_text(json.dumps(config))
    with caplog.at_level("INFO", logger="vimi.checkpoint"):
        loaded = VimiPipeline.from_pretrained(older, device="cpu")
    assert [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()] == [
        f"{older / 'config.json'}: ignoring section(s) data, train, which generation does not use"
    ]
    assert loaded.cfg.model == VimiPipeline.from_pretrained(tiny_checkpoint, device="cpu").cfg.model
    config["model"]["backbone"]["widht"] = 3  # a genuinely unknown key of a needed section is refused
    (older / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="widht"):
        VimiPipeline.from_pretrained(older, device="cpu")


@pytest.mark.parametrize(
    ("section", "key"), [("sample", None), ("model", "backbone.patch_t"), ("diffusion", "sigma_data")]
)
def test_a_checkpoint_missing_a_needed_key_names_it(tiny_checkpoint, tmp_path, section, key):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    if key is None:
        del config[section]
    else:
        *parents, leaf = key.split(".")
        node = config[section]
        for parent in parents:
            node = node[parent]
        del node[leaf]
    (broken / "config.json").write_text(json.dumps(config))
    dotted = section if key is None else f"{section}.{key}"
    with pytest.raises(CheckpointError, match=rf"missing config key\(s\) {dotted}"):
        VimiPipeline.from_pretrained(broken, device="cpu")


def test_progress_bar_is_shown_on_request(pipe, capsys):
    pipe("a red ball", num_inference_steps=2, progress=True)
    assert "heun" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_asking_for_cuda_without_a_gpu_names_the_fix(tiny_checkpoint):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        VimiPipeline.from_pretrained(tiny_checkpoint, device="cuda")


def test_fp16_save_halves_the_file_and_stays_close(pipe, subject_prompt, tmp_path):
    full = pipe.save_pretrained(tmp_path / "fp32")
    half = pipe.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    size = lambda folder: (folder / "model.safetensors").stat().st_size  # noqa: E731
    assert size(half) < 0.6 * size(full)
    loaded = VimiPipeline.from_pretrained(half, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # cast back on load
    reference, approx = generate(pipe, subject_prompt, seed=3), generate(loaded, subject_prompt, seed=3)
    assert (reference - approx).abs().max() < 0.05
