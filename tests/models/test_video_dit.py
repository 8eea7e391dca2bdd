"""VideoDiT behaviour: shapes, adaLN-zero init, masked cross-attention, checkpointing, overfitting."""

import pytest
import torch

from vimi.config import BackboneConfig, DiffusionConfig
from vimi.diffusion import EDMDenoiser, edm_loss
from vimi.errors import ConfigError
from vimi.models.video_dit import VideoDiT, count_parameters, resolve_backbone_size

COND_DIM = 16


def make_inputs(batch=2, channels=3, frames=2, size=8, tokens=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, frames, size, size, generator=gen)
    c_noise = torch.randn(batch, generator=gen)
    cond_tokens = torch.randn(batch, tokens, COND_DIM, generator=gen)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    return x, c_noise, cond_tokens, mask


def randomize_output_layer(net: VideoDiT) -> None:
    """Give the zero-initialised layers random values so the output depends on every input."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "adaLN" in name or "final_layer" in name:
                param.normal_(0, 0.05)


@pytest.mark.parametrize("positions", ["rope3d", "learned"])
@pytest.mark.parametrize("frames", [1, 4])
@pytest.mark.parametrize("context", [False, True])
def test_output_shape_matches_input(positions, frames, context):
    cfg = BackboneConfig(size="debug", positions=positions, context_frames=context, patch_h=2, patch_w=2)
    net = VideoDiT(cfg, in_channels=3, cond_dim=COND_DIM)
    x, c_noise, tokens, mask = make_inputs(frames=frames)
    kwargs = {}
    if context:
        context_mask = torch.zeros(2, 1, frames, 8, 8)
        context_mask[:, :, 0] = 1
        kwargs = {"context": x * context_mask, "context_mask": context_mask}
    out = net(x, c_noise, tokens, mask, **kwargs)
    assert out.shape == x.shape


def test_context_frames_change_the_output():
    net = VideoDiT(BackboneConfig(context_frames=True), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(net)
    x, c_noise, tokens, mask = make_inputs(frames=2)
    context_mask = torch.zeros(2, 1, 2, 8, 8)
    context_mask[:, :, 0] = 1
    with_frame = net(x, c_noise, tokens, mask, context=x * context_mask, context_mask=context_mask)
    without = net(x, c_noise, tokens, mask)
    assert not torch.allclose(with_frame, without)


def test_patch_temporal_and_spatial():
    cfg = BackboneConfig(patch_t=2, patch_h=4, patch_w=2, context_frames=False)
    net = VideoDiT(cfg, in_channels=4, cond_dim=COND_DIM)
    x, c_noise, tokens, mask = make_inputs(channels=4, frames=4)
    assert net(x, c_noise, tokens, mask).shape == x.shape


def test_size_not_divisible_by_patch_names_the_sizes():
    net = VideoDiT(BackboneConfig(patch_h=4, patch_w=4), in_channels=3, cond_dim=COND_DIM)
    x, c_noise, tokens, mask = make_inputs(size=10)
    with pytest.raises(ConfigError, match="not divisible by the backbone patch"):
        net(x, c_noise, tokens, mask)


def test_named_sizes_and_overrides():
    assert resolve_backbone_size(BackboneConfig(size="XL")).hidden == 1152
    size = resolve_backbone_size(BackboneConfig(size="S", depth=3))
    assert (size.hidden, size.depth, size.heads) == (384, 3, 6)
    with pytest.raises(ConfigError, match="unknown size 'XXXL'"):
        resolve_backbone_size(BackboneConfig(size="XXXL"))


def test_output_is_exactly_zero_at_init():
    net = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    x, c_noise, tokens, mask = make_inputs()
    assert torch.equal(net(x, c_noise, tokens, mask), torch.zeros_like(x))
    denoiser = EDMDenoiser(net, sigma_data=0.5)
    sigma = torch.tensor([0.3, 2.0])
    expected = (0.25 / (sigma**2 + 0.25)).view(-1, 1, 1, 1, 1) * x
    torch.testing.assert_close(denoiser(x, sigma, {"tokens": tokens, "mask": mask}), expected)


def test_masked_tokens_are_ignored():
    net = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM).eval()
    randomize_output_layer(net)
    x, c_noise, tokens, mask = make_inputs(tokens=6)
    mask[0, 3:] = False
    mask[1, 1:] = False
    changed = tokens.clone()
    changed[0, 3:] = torch.randn(3, COND_DIM) * 10
    changed[1, 1:] = torch.randn(5, COND_DIM) * 10
    out, out_changed = net(x, c_noise, tokens, mask), net(x, c_noise, changed, mask)
    torch.testing.assert_close(out, out_changed)
    # ... while a valid token does matter (not a constant shift: cond_embed starts with a LayerNorm).
    changed[0, 0] = -changed[0, 0]
    assert not torch.allclose(out, net(x, c_noise, changed, mask))


def test_all_masked_row_gives_finite_output():
    net = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(net)
    x, c_noise, tokens, mask = make_inputs()
    mask[1] = False
    assert torch.isfinite(net(x, c_noise, tokens, mask)).all()


def test_activation_checkpointing_same_output_and_gradients():
    torch.manual_seed(0)
    plain = VideoDiT(BackboneConfig(), in_channels=3, cond_dim=COND_DIM)
    randomize_output_layer(plain)
    ckpt = VideoDiT(BackboneConfig(activation_checkpointing=True), in_channels=3, cond_dim=COND_DIM)
    ckpt.load_state_dict(plain.state_dict())
    x, c_noise, tokens, mask = make_inputs()
    outs, grads = [], []
    for net in (plain, ckpt):
        out = net(x, c_noise, tokens, mask)
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
    _, _, tokens, mask = make_inputs()
    cond = {"tokens": tokens, "mask": mask}
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


@pytest.mark.parametrize("condition", ["joint", "cross", "joint+cross"])
def test_condition_modes_ignore_masked_tokens_and_use_valid_ones(condition):
    net = VideoDiT(BackboneConfig(condition=condition, full_attention_every=2), 3, COND_DIM).eval()
    randomize_output_layer(net)
    with torch.no_grad():  # joint+cross: make the added cross-attention do something
        for name, param in net.named_parameters():
            if "cross_attn.proj" in name:
                param.normal_(0, 0.05)
    x, c_noise, tokens, mask = make_inputs(tokens=4)
    mask[0, 2:] = False
    changed = tokens.clone()
    changed[0, 2:] = torch.randn(2, COND_DIM) * 10
    out = net(x, c_noise, tokens, mask)
    torch.testing.assert_close(out, net(x, c_noise, changed, mask))
    changed[1, 0] = -changed[1, 0]
    assert not torch.allclose(out[1], net(x, c_noise, changed, mask)[1], atol=1e-4)


def test_joint_checkpoint_grows_into_joint_plus_cross_unchanged():
    joint = VideoDiT(BackboneConfig(condition="joint"), 3, COND_DIM).eval()
    randomize_output_layer(joint)
    grown = VideoDiT(BackboneConfig(condition="joint+cross"), 3, COND_DIM).eval()
    missing, unexpected = grown.load_state_dict(joint.state_dict(), strict=False)
    assert not unexpected and missing
    assert all(key.startswith(grown.added_module_prefixes()) for key in missing)
    x, c_noise, tokens, mask = make_inputs(tokens=4)
    torch.testing.assert_close(grown(x, c_noise, tokens, mask), joint(x, c_noise, tokens, mask))
    assert VideoDiT(BackboneConfig(condition="cross"), 3, COND_DIM).added_module_prefixes() == ()


def test_image_thumbnails_grow_unchanged_and_are_required_once_built():
    plain = VideoDiT(BackboneConfig(), 3, COND_DIM).eval()
    randomize_output_layer(plain)
    grown = VideoDiT(BackboneConfig(image_thumbnail=2), 3, COND_DIM).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith(grown.added_module_prefixes()) for key in missing)
    x, c_noise, tokens, mask = make_inputs()
    thumbnails = torch.randn(2, 3 * 2 * 2 + 1)
    torch.testing.assert_close(
        grown(x, c_noise, tokens, mask, thumbnails=thumbnails), plain(x, c_noise, tokens, mask)
    )
    with pytest.raises(ValueError, match="thumbnails"):
        grown(x, c_noise, tokens, mask)
    with pytest.raises(ConfigError, match="image_thumbnail=-1"):
        VideoDiT(BackboneConfig(image_thumbnail=-1), 3, COND_DIM)


@pytest.mark.parametrize("depth", [5, 6])
def test_long_skips_grow_unchanged_then_carry_the_early_features(depth):
    plain = VideoDiT(BackboneConfig(depth=depth), 3, COND_DIM).eval()
    randomize_output_layer(plain)
    grown = VideoDiT(BackboneConfig(depth=depth, long_skips=True), 3, COND_DIM).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and len(missing) == 2 * (depth // 2)  # a weight and a bias per skip
    assert all(key.startswith(grown.added_module_prefixes()) for key in missing)
    x, c_noise, tokens, mask = make_inputs()
    torch.testing.assert_close(grown(x, c_noise, tokens, mask), plain(x, c_noise, tokens, mask))
    # Zero at initialisation, yet trainable: the loss reaches every skip, and a trained one changes the output.
    grown(x, c_noise, tokens, mask).square().mean().backward()
    assert all(skip.weight.grad.abs().sum() > 0 for skip in grown.skips)
    with torch.no_grad():
        grown.skips[0].weight.normal_(0, 0.05)
    assert not torch.allclose(grown(x, c_noise, tokens, mask), plain(x, c_noise, tokens, mask), atol=1e-4)


def test_frame_local_attention_equals_attending_each_frame_alone():
    from vimi.models.attention import SelfAttention
    from vimi.models.rope import rope_3d_tables

    torch.manual_seed(0)
    attn = SelfAttention(hidden=32, heads=2, condition_keys=True)
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


def make_references(batch=2, count=2, channels=3, patch_t=1, size=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, count, channels, patch_t, size, size, generator=gen)


@pytest.mark.parametrize("condition", ["joint", "cross"])
@pytest.mark.parametrize("positions", ["rope3d", "learned"])
def test_references_are_read_and_padded_ones_are_not(condition, positions):
    # full_attention_every=2: padded references must be ignored by full and frame-local blocks alike.
    cfg = BackboneConfig(reference_images=2, condition=condition, positions=positions, full_attention_every=2)
    net = VideoDiT(cfg, 3, COND_DIM).eval()
    randomize_output_layer(net)
    x, c_noise, tokens, mask = make_inputs(frames=2)
    references = make_references()
    reference_mask = torch.tensor([[True, True], [True, False]])
    out = net(x, c_noise, tokens, mask, references=references, reference_mask=reference_mask)
    assert out.shape == x.shape
    # Row 1's padded reference changes nothing; row 1 alone with its one reference gives the same output.
    changed = references.clone()
    changed[1, 1] = torch.randn_like(changed[1, 1]) * 10
    torch.testing.assert_close(
        out, net(x, c_noise, tokens, mask, references=changed, reference_mask=reference_mask)
    )
    alone = net(x[1:], c_noise[1:], tokens[1:], mask[1:], references=references[1:, :1])
    torch.testing.assert_close(out[1:], alone, atol=1e-5, rtol=1e-4)
    # A real reference does change the output, and no references at all equals zero references.
    changed[0, 1] = torch.randn_like(changed[0, 1])
    other = net(x, c_noise, tokens, mask, references=changed, reference_mask=reference_mask)
    assert not torch.allclose(out[0], other[0], atol=1e-4)
    none = net(x, c_noise, tokens, mask)
    torch.testing.assert_close(none, net(x, c_noise, tokens, mask, references=references[:, :0]))
    assert not torch.allclose(none, out, atol=1e-4)


def test_references_enter_like_given_frames_until_their_embedding_learns_otherwise():
    # reference_embed starts at zero, so a reference frame is a fully given frame of the video's own
    # patching: the same token a given frame with identical content makes.
    cfg = BackboneConfig(reference_images=1, patch_t=2)
    net = VideoDiT(cfg, 3, COND_DIM)
    assert torch.count_nonzero(net.reference_embed) == 0
    reference = make_references(batch=1, count=1, patch_t=2)
    ref_token = net._reference_tokens(reference, (1, 2, 2))  # [1, 4, D]
    given = torch.cat(
        [torch.zeros_like(reference[:, 0]), reference[:, 0], torch.ones_like(reference[:, 0, :1])], 1
    )
    from einops import rearrange

    patches = rearrange(given, "b c pt (h ph) (w pw) -> b (h w) (c pt ph pw)", ph=4, pw=4)
    torch.testing.assert_close(ref_token, net.patch_embed(patches))
    assert net.added_module_prefixes() == ("reference_embed",)


def test_reference_config_and_shape_errors_name_the_problem():
    with pytest.raises(ConfigError, match="reference_images=-1"):
        VideoDiT(BackboneConfig(reference_images=-1), 3, COND_DIM)
    with pytest.raises(ConfigError, match="context_frames"):
        VideoDiT(BackboneConfig(reference_images=1, context_frames=False), 3, COND_DIM)
    x, c_noise, tokens, mask = make_inputs(frames=2)
    with pytest.raises(ValueError, match="reference_images=0"):
        VideoDiT(BackboneConfig(), 3, COND_DIM)(x, c_noise, tokens, mask, references=make_references())
    net = VideoDiT(BackboneConfig(reference_images=2), 3, COND_DIM)
    with pytest.raises(ValueError, match=r"references must be \[B, N, 3, 1, 8, 8\]"):
        net(x, c_noise, tokens, mask, references=make_references(size=4))


@pytest.mark.parametrize("context", [False, True])
def test_detail_head_grows_unchanged_then_corrects_pixels_within_each_frame(context):
    cfg = BackboneConfig(context_frames=context, patch_h=2, patch_w=2)
    plain = VideoDiT(cfg, 3, COND_DIM).eval()
    randomize_output_layer(plain)
    grown = VideoDiT(BackboneConfig(context_frames=context, patch_h=2, patch_w=2, detail_head=8), 3, COND_DIM)
    missing, unexpected = grown.eval().load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith(grown.added_module_prefixes()) for key in missing)
    assert {key.split(".")[1] for key in missing} == {"conv_in", "film", "conv_mid", "conv_out"}
    x, c_noise, tokens, mask = make_inputs(frames=3)
    torch.testing.assert_close(grown(x, c_noise, tokens, mask), plain(x, c_noise, tokens, mask))
    # Zero at initialisation, yet trainable: the loss reaches the last convolution, and through it the FiLM.
    grown(x, c_noise, tokens, mask).square().mean().backward()
    head = grown.detail_head
    assert head.conv_out.weight.grad.abs().sum() > 0
    with torch.no_grad():
        head.conv_out.weight.normal_(0, 0.05)
    assert not torch.allclose(grown(x, c_noise, tokens, mask), plain(x, c_noise, tokens, mask), atol=1e-4)
    grown.zero_grad()
    grown(x, c_noise, tokens, mask).square().mean().backward()
    assert head.film[-1].weight.grad.abs().sum() > 0
    # Per frame: changing frame 2's pixels leaves the correction of frames 0 and 1 as it was.
    out, c = torch.randn(2, 3, 3, 8, 8), torch.randn(2, grown.size.hidden)
    inputs = torch.randn(2, head.conv_in.in_channels - 3, 3, 8, 8)
    changed = inputs.clone()
    changed[:, :, 2] += 1.0
    before, after = head(out, inputs, c), head(out, changed, c)
    torch.testing.assert_close(before[:, :, :2], after[:, :, :2])
    assert not torch.allclose(before[:, :, 2], after[:, :, 2])
    with pytest.raises(ConfigError, match="detail_head=-1"):
        VideoDiT(BackboneConfig(detail_head=-1), 3, COND_DIM)
