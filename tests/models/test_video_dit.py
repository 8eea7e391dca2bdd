"""VideoDiT behaviour: shapes, adaLN-zero init, masked condition tokens, the pooled vector, checkpointing,
overfitting."""

import dataclasses

import pytest
import torch

from vimi.condition import Condition
from vimi.config import BackboneConfig, DiffusionConfig
from vimi.diffusion import EDMDenoiser, edm_loss
from vimi.errors import ConfigError
from vimi.models.video_dit import VideoDiT, count_parameters, resolve_backbone_size

COND_DIM = 16


def make_inputs(batch=2, channels=3, frames=2, size=8, tokens=5, seed=0):
    """x [B, C, T, H, W], c_noise [B] and a Condition of random tokens (all valid)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, frames, size, size, generator=gen)
    c_noise = torch.randn(batch, generator=gen)
    cond_tokens = torch.randn(batch, tokens, COND_DIM, generator=gen)
    return x, c_noise, Condition(cond_tokens, torch.ones(batch, tokens, dtype=torch.bool))


def first_frame_given(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Context frames (x's first frame, zeros after) and their mask [B, 1, T, H, W]."""
    context_mask = torch.zeros(x.shape[0], 1, *x.shape[2:])
    context_mask[:, :, 0] = 1
    return x * context_mask, context_mask


def randomize_output_layer(net: VideoDiT) -> None:
    """Give the zero-initialised layers random values so the output depends on every input."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "adaLN" in name or "final_layer" in name:
                param.normal_(0, 0.05)


@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("context", [False, True])
def test_output_shape_matches_input(frames, context):
    cfg = BackboneConfig(size="debug", context_frames=context, patch_h=2, patch_w=2)
    net = VideoDiT(cfg, in_channels=3, cond_dim=COND_DIM)
    x, c_noise, cond = make_inputs(frames=frames)
    if context:
        cond = dataclasses.replace(cond, **dict(zip(("context", "context_mask"), first_frame_given(x))))
    assert net(x, c_noise, cond).shape == x.shape


def test_context_frames_change_the_output_and_need_a_model_built_for_them():
    net = VideoDiT(BackboneConfig(context_frames=True), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(net)
    x, c_noise, cond = make_inputs(frames=2)
    given = dataclasses.replace(cond, **dict(zip(("context", "context_mask"), first_frame_given(x))))
    assert not torch.allclose(net(x, c_noise, given), net(x, c_noise, cond))
    blind = VideoDiT(BackboneConfig(context_frames=False), in_channels=3, cond_dim=COND_DIM)
    with pytest.raises(ValueError, match="context_frames=False"):
        blind(x, c_noise, given)


def test_patch_temporal_and_spatial():
    cfg = BackboneConfig(patch_t=2, patch_h=4, patch_w=2, context_frames=False)
    net = VideoDiT(cfg, in_channels=4, cond_dim=COND_DIM)
    x, c_noise, cond = make_inputs(channels=4, frames=4)
    assert net(x, c_noise, cond).shape == x.shape


def test_size_not_divisible_by_patch_names_the_sizes():
    net = VideoDiT(BackboneConfig(patch_h=4, patch_w=4), in_channels=3, cond_dim=COND_DIM)
    x, c_noise, cond = make_inputs(size=10)
    with pytest.raises(ConfigError, match="not divisible by the backbone patch"):
        net(x, c_noise, cond)


def test_named_sizes_and_overrides():
    assert resolve_backbone_size(BackboneConfig(size="XL")).hidden == 1152
    size = resolve_backbone_size(BackboneConfig(size="S", depth=3))
    assert (size.hidden, size.depth, size.heads) == (384, 3, 6)
    with pytest.raises(ConfigError, match="unknown size 'XXXL'"):
        resolve_backbone_size(BackboneConfig(size="XXXL"))


def test_output_is_exactly_zero_at_init():
    net = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    x, c_noise, cond = make_inputs()
    assert torch.equal(net(x, c_noise, cond), torch.zeros_like(x))
    denoiser = EDMDenoiser(net, sigma_data=0.5)
    sigma = torch.tensor([0.3, 2.0])
    expected = (0.25 / (sigma**2 + 0.25)).view(-1, 1, 1, 1, 1) * x
    torch.testing.assert_close(denoiser(x, sigma, cond), expected)


@pytest.mark.parametrize("full_attention_every", [1, 2])
def test_masked_tokens_are_ignored_and_valid_ones_used(full_attention_every):
    # full_attention_every=2: frame-local blocks must ignore padding as full ones do.
    net = VideoDiT(BackboneConfig(full_attention_every=full_attention_every), 3, COND_DIM).eval()
    randomize_output_layer(net)
    x, c_noise, cond = make_inputs(tokens=6)
    cond.mask[0, 3:] = False
    cond.mask[1, 1:] = False
    changed = cond.tokens.clone()
    changed[0, 3:] = torch.randn(3, COND_DIM) * 10
    changed[1, 1:] = torch.randn(5, COND_DIM) * 10
    out = net(x, c_noise, cond)
    torch.testing.assert_close(out, net(x, c_noise, dataclasses.replace(cond, tokens=changed)))
    # ... while a valid token does matter (not a constant shift: cond_embed starts with a LayerNorm).
    changed[0, 0] = -changed[0, 0]
    assert not torch.allclose(
        out[0], net(x, c_noise, dataclasses.replace(cond, tokens=changed))[0], atol=1e-4
    )


def test_all_masked_row_gives_finite_output():
    net = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(net)
    x, c_noise, cond = make_inputs()
    cond.mask[1] = False
    assert torch.isfinite(net(x, c_noise, cond)).all()


def test_activation_checkpointing_same_output_and_gradients():
    torch.manual_seed(0)
    plain = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(plain)
    ckpt = VideoDiT(BackboneConfig(activation_checkpointing=True), in_channels=3, cond_dim=COND_DIM)
    ckpt.load_state_dict(plain.state_dict())
    x, c_noise, cond = make_inputs()
    outs, grads = [], []
    for net in (plain, ckpt):
        out = net(x, c_noise, cond)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
    torch.testing.assert_close(outs[0], outs[1])
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_edm_loss_overfits_one_batch():
    torch.manual_seed(0)
    net = VideoDiT(BackboneConfig(size="debug", patch_h=2, patch_w=2), in_channels=3, cond_dim=COND_DIM)
    denoiser = EDMDenoiser(net, sigma_data=0.5)
    x0 = torch.rand(2, 3, 2, 8, 8) - 0.5
    _, _, cond = make_inputs()
    cfg = DiffusionConfig()
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=2e-3)
    losses = []
    for _ in range(200):
        # The same noise and sigma every step: a truly fixed batch to memorise.
        loss = edm_loss(denoiser, x0, cond, cfg, generator=torch.Generator().manual_seed(0)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_parameter_count_grows_with_size():
    small = count_parameters(VideoDiT(BackboneConfig(size="debug"), 3, COND_DIM))
    bigger = count_parameters(VideoDiT(BackboneConfig(size="debug", depth=4), 3, COND_DIM))
    assert bigger > small


def test_rope_scores_depend_only_on_relative_position():
    from vimi.models.rope import apply_rope, rope_3d_tables

    grid, head_dim = (4, 4, 4), 16
    rotations = rope_3d_tables(grid, head_dim, torch.device("cpu"))
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(query_pos, key_pos):
        index = [t * 16 + h * 4 + w for t, h, w in (query_pos, key_pos)]
        rotated_q = apply_rope(q.expand(1, 1, 64, head_dim), rotations)[0, 0, index[0]]
        rotated_k = apply_rope(k.expand(1, 1, 64, head_dim), rotations)[0, 0, index[1]]
        return torch.dot(rotated_q, rotated_k)

    torch.testing.assert_close(score((0, 1, 0), (1, 2, 2)), score((2, 2, 1), (3, 3, 3)))
    assert not torch.allclose(score((0, 1, 0), (1, 2, 2)), score((0, 1, 0), (1, 2, 3)))


def test_the_pooled_thumbnail_starts_as_a_no_op_and_is_required_once_built():
    plain = VideoDiT(BackboneConfig(), 3, COND_DIM).eval()
    randomize_output_layer(plain)
    with_thumbnail = VideoDiT(BackboneConfig(image_thumbnail=2), 3, COND_DIM).eval()
    missing, unexpected = with_thumbnail.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("thumbnail_embed.") for key in missing)
    x, c_noise, cond = make_inputs()
    pooled = dataclasses.replace(cond, pooled=torch.randn(2, 3 * 2 * 2 + 1))
    torch.testing.assert_close(with_thumbnail(x, c_noise, pooled), plain(x, c_noise, cond))
    with torch.no_grad():
        with_thumbnail.thumbnail_embed[-1].weight.normal_(0, 0.5)
    assert not torch.allclose(with_thumbnail(x, c_noise, pooled), plain(x, c_noise, cond), atol=1e-4)
    with pytest.raises(ValueError, match="pooled"):
        with_thumbnail(x, c_noise, cond)
    with pytest.raises(ConfigError, match="image_thumbnail=-1"):
        VideoDiT(BackboneConfig(image_thumbnail=-1), 3, COND_DIM)


def test_frame_local_attention_equals_attending_each_frame_alone():
    from vimi.models.attention import JointAttention
    from vimi.models.rope import rope_3d_tables

    torch.manual_seed(0)
    attn = JointAttention(hidden=32, heads=2)
    frames, per_frame, batch = 3, 4, 2
    x = torch.randn(batch, frames * per_frame, 32)  # frame-major tokens
    cond, cond_mask = torch.randn(batch, 5, 32), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    rope = rope_3d_tables((frames, 2, 2), 16, torch.device("cpu"))  # [L, Dh/2]
    local = attn(x, rope, cond, cond_mask, frames=frames)
    for f in range(frames):
        tokens = slice(f * per_frame, (f + 1) * per_frame)
        alone = attn(x[:, tokens], rope[tokens], cond, cond_mask)
        torch.testing.assert_close(local[:, tokens], alone)
    assert not torch.allclose(local, attn(x, rope, cond, cond_mask))  # full 3D attention differs


def test_full_attention_every_must_be_positive():
    with pytest.raises(ConfigError, match="full_attention_every=0"):
        VideoDiT(BackboneConfig(full_attention_every=0), 3, COND_DIM)
