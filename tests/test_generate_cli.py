"""`vimi generate`: writes a playable mp4 (and GIF); bad inputs exit 2 with a one-line reason."""

from pathlib import Path

import av
import pytest
from PIL import Image

from vimi.cli import main


def test_generate_writes_a_playable_mp4_and_gif(tiny_checkpoint, real_photos, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    prompt = f"A <image:{real_photos['cat.png']}> spins in <image>"
    argv = ["generate", prompt, "--image", str(real_photos["astronaut.jpg"])]
    argv += [
        "--checkpoint",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--gif",
        "--seed",
        "3",
        "--num-inference-steps",
        "2",
    ]
    argv += [
        "--frames",
        "6",
        "--height",
        "16",
        "--width",
        "24",
        "--guidance-text",
        "2",
        "--guidance-image",
        "1.5",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and f"wrote {out.with_suffix('.gif')}" in captured.out
    assert "heun" in captured.err  # the sampler's progress bar
    with av.open(str(out)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (16, 24, 3)
    assert max(frame.std() for frame in frames) > 5  # a picture, not a blank
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == 6 and gif.size == (24, 16)


def test_generate_first_frame_and_defaults(tiny_checkpoint, real_photos, tmp_path):
    out = tmp_path / "predict.mp4"
    argv = ["generate", "the cat walks", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    assert main([*argv, "--first-frame", str(real_photos["cat.jpg"]), "--num-inference-steps", "1"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (16, 16)  # cfg.sample of the checkpoint
        assert sum(1 for _ in container.decode(video=0)) == 4


def _broken_png(tmp_path: Path) -> Path:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return path


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing_image", "nope.png"),
        ("unreadable_image", "broken.png"),
        ("more_slots_than_images", "2 <image> placeholder(s) but 1 image(s)"),
        ("too_many_frames", "frames=2000"),
        ("height_not_patch_multiple", "height=18 is not divisible"),
        ("width_too_large", "width=8192 is out of range"),
        ("missing_first_frame", "--first-frame: nope.png"),
        ("missing_checkpoint", "checkpoint not found"),
        ("incomplete_checkpoint", "COMPLETE"),
        ("bad_out_suffix", "use a .mp4 or .gif"),
        ("bad_steps", "num_inference_steps=0"),
        ("bad_device", "device 'gpu' is not a device name"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_reason(
    case, fragment, tiny_checkpoint, real_photos, tmp_path, capsys
):
    ckpt, out, cat = str(tiny_checkpoint), str(tmp_path / "out.mp4"), str(real_photos["cat.png"])
    prompt, extra = f"A <image:{cat}> spins", []
    if case == "missing_image":
        prompt = "A <image:nope.png> spins"
    elif case == "unreadable_image":
        prompt = f"A <image:{_broken_png(tmp_path)}> spins"
    elif case == "more_slots_than_images":
        prompt, extra = "A <image> spins in <image>", ["--image", cat]
    elif case == "too_many_frames":
        extra = ["--frames", "2000"]
    elif case == "height_not_patch_multiple":
        extra = ["--height", "18"]
    elif case == "width_too_large":
        extra = ["--width", "8192"]
    elif case == "missing_first_frame":
        extra = ["--first-frame", "nope.png"]
    elif case == "missing_checkpoint":
        ckpt = str(tmp_path / "no-such-run")
    elif case == "incomplete_checkpoint":
        incomplete = tmp_path / "incomplete"
        incomplete.mkdir()
        for name in ("config.json", "model.safetensors"):
            (incomplete / name).write_bytes((tiny_checkpoint / name).read_bytes())
        ckpt = str(incomplete)
    elif case == "bad_out_suffix":
        out = str(tmp_path / "out.avi")
    elif case == "bad_steps":
        extra = ["--num-inference-steps", "0"]
    elif case == "bad_device":
        extra = ["--device", "gpu"]
    code = main(["generate", prompt, "--checkpoint", ckpt, "--out", out, *extra])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vimi generate: error:") and fragment in lines[0]
    assert not Path(out).exists()


def test_size_check_includes_the_autoencoder_compression_before_loading(tiny_checkpoint, tmp_path, capsys):
    """A 4x VAE under a patch-4 backbone needs multiples of 16: refused from config.json, before any weights."""
    import json

    vae = tmp_path / "vae"
    vae.mkdir()  # config.json only: loading the weights would fail with another error
    (vae / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderKL", "block_out_channels": [8, 8, 8]})
    )
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for item in tiny_checkpoint.iterdir():
        if item.is_file():
            (ckpt / item.name).write_bytes(item.read_bytes())
    config = json.loads((ckpt / "config.json").read_text())
    config["model"]["autoencoder"] = {"kind": "kl", "path": str(vae), "scaling_factor": 0.0}
    (ckpt / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out.mp4"
    code = main(["generate", "a cat", "--checkpoint", str(ckpt), "--out", str(out), "--height", "24"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert "height=24 is not divisible by the model's patch size 16" in lines[0]
