"""Autoencoders: identity, frame-wise AutoencoderKL, 3D video VAE (tiny random diffusers models on disk)."""

import pytest
import torch

from vimi.config import AutoencoderConfig
from vimi.errors import ConfigError
from vimi.models.autoencoders import DiffusersKLAutoencoder, DiffusersVideoAutoencoder, build_autoencoder


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        scale_factor_spatial=4,
        latents_mean=[0.1, 0.2, 0.3, 0.4],
        latents_std=[1.0, 2.0, 4.0, 0.5],
    )
    folder = tmp_path_factory.mktemp("wan")
    vae.save_pretrained(folder)
    return folder


def test_identity_is_pixel_space_with_scale():
    ae = build_autoencoder(AutoencoderConfig(kind="identity", scaling_factor=2.0))
    x = torch.rand(2, 3, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(ae.encode(x), 2 * x)
    torch.testing.assert_close(ae.decode(ae.encode(x)), x)
    assert ae.latent_channels == 3 and ae.latent_shape(5, 8, 8) == (3, 5, 8, 8)


def test_kl_autoencoder_is_framewise_and_scaled(kl_folder):
    ae = build_autoencoder(AutoencoderConfig(kind="kl", path=str(kl_folder)))
    assert isinstance(ae, DiffusersKLAutoencoder)
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 4, 3, 8, 8) == (2, *ae.latent_shape(3, 16, 16))
    # Frame-wise: frame 1 of video 1 encodes alone to the same latent; scaling (raw - shift) * scale.
    raw = ae.vae.encode(x[1, :, 1][None]).latent_dist.mode()[0]
    torch.testing.assert_close(z[1, :, 1], (raw - 0.1) * 0.5, atol=1e-5, rtol=1e-5)
    decoded = ae.decode(z)
    assert decoded.shape == x.shape
    torch.testing.assert_close(decoded[1, :, 1], ae.vae.decode(raw[None]).sample[0], atol=1e-5, rtol=1e-5)


def test_scaling_factor_override(kl_folder):
    ae = build_autoencoder(AutoencoderConfig(kind="kl", path=str(kl_folder), scaling_factor=2.0))
    assert ae.latent_scale.flatten().tolist() == [2.0] * 4


@pytest.mark.parametrize(("frames", "latent_frames"), [(1, 1), (5, 3)])
def test_video_autoencoder_shapes_and_per_channel_normalisation(video_folder, frames, latent_frames):
    ae = build_autoencoder(AutoencoderConfig(kind="video", path=str(video_folder)))
    assert isinstance(ae, DiffusersVideoAutoencoder)
    assert (ae.temporal_compression, ae.spatial_compression) == (2, 4)
    x = torch.rand(1, 3, frames, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (1, 4, latent_frames, 4, 4) == (1, *ae.latent_shape(frames, 16, 16))
    raw = ae.vae.encode(x).latent_dist.mode()
    mean = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, 4, 1, 1, 1)
    std = torch.tensor([1.0, 2.0, 4.0, 0.5]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std)
    assert ae.decode(z).shape == x.shape


def test_video_autoencoder_rejects_frame_count(video_folder):
    ae = build_autoencoder(AutoencoderConfig(kind="video", path=str(video_folder)))
    with pytest.raises(ConfigError, match=r"T must be 1 \+ 2\*k"):
        ae.encode(torch.zeros(1, 3, 4, 16, 16))


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no diffusers model folder"):
        build_autoencoder(AutoencoderConfig(kind="video", path=str(tmp_path / "nope")))


def test_unsupported_video_class_is_rejected(kl_folder):
    with pytest.raises(ConfigError, match="holds a AutoencoderKL model"):
        build_autoencoder(AutoencoderConfig(kind="video", path=str(kl_folder)))


def test_compression_is_read_from_the_config_alone(kl_folder, video_folder, tmp_path):
    from vimi.models.autoencoders import compression_from_config

    assert compression_from_config(AutoencoderConfig()) == (1, 1, False)
    assert compression_from_config(AutoencoderConfig(kind="kl", path=str(kl_folder))) == (1, 2, False)
    # Wan derives its ratios in code, not in config.json: unknown until the model is built.
    assert compression_from_config(AutoencoderConfig(kind="video", path=str(video_folder))) is None
    (tmp_path / "config.json").write_text('{"_class_name": "AutoencoderKL", "block_out')
    with pytest.raises(ConfigError, match=r"config\.json: corrupt diffusers model config"):
        compression_from_config(AutoencoderConfig(kind="kl", path=str(tmp_path)))
