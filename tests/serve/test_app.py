"""The web UI's request logic and examples, without a browser."""

from pathlib import Path
from types import SimpleNamespace

import av
import pytest

from vimi.errors import PromptError
from vimi.pipeline import VimiPipeline
from vimi.serve.app import build_request, generate_video, upload_paths
from vimi.serve.examples import subject_prompt, world_examples


@pytest.fixture(scope="module")
def photos(real_photos):
    return [str(real_photos["cat.png"]), str(real_photos["astronaut.jpg"])]


def test_subject_request_binds_uploads_to_slots_in_order(photos):
    prompt, first_frame = build_request("subject", "A <image> spins in <image>", photos, has_index=False)
    assert first_frame is None and prompt.task == "subject"
    assert [image.path for image in prompt.images] == photos


@pytest.mark.parametrize(
    ("task", "text", "count", "has_index", "fragment"),
    [
        ("subject", "A <image> spins in <image>", 1, False, "2 <image> slot(s) but 1 image(s)"),
        ("subject", "A <image> spins", 2, False, "1 <image> slot(s) but 2 image(s)"),
        ("subject", "A cat spins", 0, False, "needs at least one <image>"),
        ("subject", "A <image:/etc/hosts> spins", 0, False, "<image:path> is not allowed"),
        ("predict", "A <image> moves", 1, False, "without <image> slots"),
        ("predict", "it moves", 2, False, "exactly one uploaded image"),
        ("retrieval_t2v", "a cat runs", 0, False, "no retrieval index is loaded"),
        ("retrieval_t2v", "a cat runs", 1, True, "text only"),
    ],
)
def test_mismatched_requests_say_what_is_wrong(photos, task, text, count, has_index, fragment):
    with pytest.raises(PromptError) as caught:
        build_request(task, text, photos[:count] + photos[: max(count - 2, 0)], has_index)
    assert fragment in str(caught.value)


def test_predict_and_retrieval_requests(photos):
    prompt, first_frame = build_request("predict", "the cat jumps", photos[:1], has_index=False)
    assert first_frame == photos[0] and prompt.text == "the cat jumps" and not prompt.images
    prompt, first_frame = build_request("retrieval_t2v", "a cat runs", [], has_index=True)
    assert first_frame is None and prompt.task == "t2v"


def test_upload_paths_accepts_gradio_values():
    assert upload_paths(None) == []
    assert upload_paths("a.png") == ["a.png"]
    assert upload_paths(["a.png", SimpleNamespace(path="b.png")]) == ["a.png", "b.png"]


def test_generate_video_writes_a_playable_mp4(tiny_checkpoint, photos, tmp_path):
    pipe = VimiPipeline.from_pretrained(tiny_checkpoint, device="cpu")
    path = generate_video(pipe, "subject", "A <image> in <image>", photos, 2.0, 2.0, 1, 2, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".mp4"
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == pipe.cfg.sample.num_frames and (frames[0].width, frames[0].height) == (16, 16)


def test_subject_prompt_puts_a_slot_after_each_named_subject():
    text, images = subject_prompt(
        "A dax spins while a blicket waits.", ["blicket", "dax"], [Path("b"), Path("d")]
    )
    assert text == "A dax <image> spins while a blicket <image> waits."
    assert images == ["d", "b"]  # in the order of the slots, not of the name list


def test_world_examples_cover_the_three_tasks(tmp_path):
    from vimi.config import WorldConfig
    from vimi.data.world import build_world

    build_world(WorldConfig(preset="tiny"), tmp_path / "world")
    examples = world_examples(tmp_path / "world", limit=4, frames_dir=tmp_path)
    assert {e.task for e in examples} == {"subject", "predict", "retrieval_t2v"}
    for example in examples:
        assert example.text.count("<image>") == (len(example.images) if example.task == "subject" else 0)
        assert all(Path(image).is_file() for image in example.images)
        build_request(
            example.task, example.text, example.images, has_index=True
        )  # each one is a valid request
    assert world_examples(tmp_path / "no-world") == []


def test_serve_removes_its_video_folder_on_exit_and_checks_the_device(tiny_checkpoint, monkeypatch, capsys):
    pytest.importorskip("gradio")
    import vimi.serve.app
    from vimi.cli import main

    seen = []

    def fake_launch(app, **kwargs):  # stands in for the blocking server: one video written, then Ctrl-C
        seen.append(Path(app.vimi_out_dir))
        (seen[0] / "vimi-x.mp4").write_bytes(b"video")
        raise KeyboardInterrupt

    monkeypatch.setattr(vimi.serve.app, "launch_app", fake_launch)
    assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 130
    assert len(seen) == 1 and not seen[0].exists()
    assert main(["serve", "--checkpoint", str(tiny_checkpoint), "--device", "gpu"]) == 2
    assert "device 'gpu' is not a device name" in capsys.readouterr().err
