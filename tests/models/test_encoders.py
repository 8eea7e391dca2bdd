"""Multimodal encoders: shapes, masks, null token, determinism, batch independence, caching, frozen LMs."""

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from vimi.config import EncoderConfig
from vimi.errors import ConfigError, PromptError
from vimi.models.encoders import (
    EncoderCache,
    MultimodalEncoder,
    SmallMultimodalEncoder,
    build_encoder,
    pad_rows,
    prepare_encoder_input,
)
from vimi.models.encoders.small import (
    IMAGE_SEGMENT,
    NULL_SEGMENT,
    PAD_SEGMENT,
    TEXT_SEGMENT,
    PromptLayout,
    prompt_layout,
    word_tokens,
)
from vimi.models.encoders.vision import prepare_images
from vimi.models.registry import ENCODERS
from vimi.prompt import Image, MultimodalPrompt, Text

TINY = EncoderConfig(
    dim=32, depth=1, heads=2, image_size=16, image_patch=8, max_tokens=160, cache_memory_items=0
)


def random_image(seed: int, size: tuple[int, int] = (20, 24)) -> torch.Tensor:
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def sample_prompts() -> list[MultimodalPrompt]:
    return [
        MultimodalPrompt(
            ["A ", Image(random_image(0)), " is playing in ", Image(random_image(1))], "subject"
        ),
        MultimodalPrompt(["a red fox runs left"], "t2v"),
        MultimodalPrompt([], "t2v"),
        MultimodalPrompt([Image(random_image(2))], "predict"),
    ]


def valid_rows(tokens: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [tokens[i][mask[i]] for i in range(tokens.shape[0])]


def check_encoder_contract(encoder, prompts: list[MultimodalPrompt]) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes, padding, >= 1 token per row, determinism and batch independence (shared by all encoders)."""
    tokens, mask = encoder.encode(prompts)
    assert tokens.shape[:2] == mask.shape and tokens.shape[0] == len(prompts)
    assert tokens.shape[2] == encoder.out_dim and mask.dtype == torch.bool
    assert mask.sum(1).min() >= 1
    for row in range(len(prompts)):  # real tokens first, then zero-valued padding
        length = int(mask[row].sum())
        assert mask[row, :length].all() and not mask[row, length:].any()
        assert not tokens[row, length:].any()
    again, again_mask = encoder.encode(prompts)
    assert torch.equal(again_mask, mask) and torch.allclose(again, tokens, atol=1e-6)
    for prompt, row in zip(prompts, valid_rows(tokens, mask)):
        alone, alone_mask = encoder.encode([prompt])
        assert alone.shape[1] == row.shape[0] and alone_mask.all()
        torch.testing.assert_close(alone[0], row, atol=1e-4, rtol=1e-4)
    return tokens, mask


def test_prepare_images_centre_crops_to_square() -> None:
    image = torch.full((3, 10, 30), -1.0)
    image[:, :, 10:20] = 1.0  # only the centre square is white
    out = prepare_images([image], 8)
    assert out.shape == (1, 3, 8, 8) and torch.allclose(out, torch.ones_like(out))


@torch.no_grad()
def test_small_encoder_contract_and_token_counts() -> None:
    encoder = SmallMultimodalEncoder(TINY).eval()
    prompts = sample_prompts()
    tokens, mask = check_encoder_contract(encoder, prompts)
    patches = (16 // 8) ** 2
    assert mask.sum(1).tolist() == [1 + 2 + 15 + 2 * patches, 1 + 19, 1, 1 + patches]
    rows = valid_rows(tokens, mask)
    assert not torch.allclose(rows[0][0], rows[1][0])  # the null token row sees the rest of the prompt


@torch.no_grad()
def test_small_encoder_sees_text_image_content_and_order() -> None:
    encoder = SmallMultimodalEncoder(TINY).eval()
    a, b = Image(random_image(0)), Image(random_image(1))
    variants = [
        MultimodalPrompt(["A ", a, " in ", b]),
        MultimodalPrompt(["A ", b, " in ", a]),  # same images, swapped order
        MultimodalPrompt(["A ", a, " in ", Image(random_image(5))]),  # one image changed
        MultimodalPrompt(["B ", a, " in ", b]),  # one character changed
    ]
    tokens, _ = encoder.encode(variants)
    for i in range(1, len(variants)):
        assert (tokens[0] - tokens[i]).abs().max() > 1e-3, f"variant {i} gave the same condition"


@torch.no_grad()
def test_word_tokenizer_is_one_token_a_word_case_free_and_stable() -> None:
    encoder = SmallMultimodalEncoder(dataclasses.replace(TINY, tokenizer="words", vocab_size=1024)).eval()
    ids = encoder.tokenize("A red fox, in the City.")
    assert len(ids) == 8  # a red fox , in the city .
    assert ids == encoder.tokenize("a  RED fox ,in the city .")  # case and spacing do not matter
    assert ids[0] != ids[1] and all(0 <= i < 1024 for i in ids)
    assert word_tokens("meadow", 4096) == [zlib.crc32(b"meadow") % 4096]  # no per-process hash seed
    assert encoder.text_embed.num_embeddings == 1024
    _, mask = check_encoder_contract(encoder, sample_prompts())
    patches = (16 // 8) ** 2
    assert mask.sum(1).tolist() == [1 + 1 + 3 + 2 * patches, 1 + 5, 1, 1 + patches]
    a, b = encoder.encode([MultimodalPrompt(["in the city"]), MultimodalPrompt(["in the desert"])])[0]
    assert (a - b).abs().max() > 1e-3


def test_small_encoder_layout_matches_a_segment_by_segment_embedding() -> None:
    """prompt_layout + encode_layout (batched gathers) against the plain construction: per prompt, the null
    token, then each text segment's word embeddings and each image's patch tokens, each plus its segment type.
    The tokens agree bit for bit; the gradients up to the order in which an embedding row's uses are summed."""
    torch.manual_seed(0)
    encoder = SmallMultimodalEncoder(TINY).eval()
    prompts = sample_prompts()
    layout = prompt_layout(TINY, prompts)
    patches = encoder.vision.num_tokens
    # The last prompt's image is the batch's third: its patch rows follow the first prompt's two images'.
    assert layout.image_slots[3, 1 : 1 + patches].tolist() == list(range(2 * patches, 3 * patches))
    assert layout.segment[2].tolist() == [NULL_SEGMENT] + [PAD_SEGMENT] * (layout.segment.shape[1] - 1)
    image_tokens = encoder.vision(prepare_images([im.load() for p in prompts for im in p.images], 16))
    kinds, rows, next_image = encoder.segment_embed.weight, [], 0
    for prompt in prompts:
        pieces = [encoder.null_token[None] + kinds[NULL_SEGMENT]]
        for segment in prompt.segments:
            if isinstance(segment, Text):
                pieces.append(
                    encoder.text_embed(torch.tensor(encoder.tokenize(segment.text))) + kinds[TEXT_SEGMENT]
                )
            else:
                pieces.append(image_tokens[next_image] + kinds[IMAGE_SEGMENT])
                next_image += 1
        rows.append(torch.cat(pieces))
    x, mask = pad_rows(rows)
    x = x + encoder.position[: x.shape[1]]
    for block in encoder.blocks:
        x = block(x, mask)
    expected = encoder.norm(x) * mask[..., None]
    tokens, layout_mask = encoder.encode_layout(layout)
    assert torch.equal(layout_mask, mask) and torch.equal(tokens, expected)
    weights = torch.randn(tokens.shape)
    grads = [
        torch.autograd.grad((out * weights).sum(), list(encoder.parameters())) for out in (expected, tokens)
    ]
    for (name, _), plain, batched in zip(encoder.named_parameters(), *grads):
        assert plain.abs().sum() > 0, name  # every part of the encoder is reached, and checked
        torch.testing.assert_close(batched, plain, rtol=1e-5, atol=1e-7, msg=name)


def test_small_encoder_trains_and_rejects_overlong_prompts() -> None:
    torch.manual_seed(0)
    encoder = SmallMultimodalEncoder(TINY)
    prompts = [
        MultimodalPrompt(["a dog ", Image(random_image(0))]),
        MultimodalPrompt(["a cat ", Image(random_image(1))]),
    ]
    target = torch.tensor([[1.0], [-1.0]])
    head = torch.nn.Linear(TINY.dim, 1)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(15):
        tokens, mask = encoder.encode(prompts)
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        loss = torch.nn.functional.mse_loss(head(pooled), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert encoder.vision.patch_embed.weight.grad is not None and encoder.null_token.grad is not None
    with pytest.raises(PromptError, match=r"needs 161 condition tokens .*max_tokens is 160"):
        encoder.encode([MultimodalPrompt(["x" * 160])])


def test_cache_hit_skips_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = tmp_path / "dog.png"
    PILImage.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(photo)
    cfg = dataclasses.replace(TINY, cache_memory_items=8, cache_dir=str(tmp_path / "cache"))
    encoder = build_encoder(cfg).eval().requires_grad_(False)
    assert isinstance(encoder.cache, EncoderCache)
    calls: list[int] = []
    original = SmallMultimodalEncoder._encode_batch

    def counting(self, prompts, prepared):
        calls.append(len(prompts))
        return original(self, prompts, prepared)

    monkeypatch.setattr(SmallMultimodalEncoder, "_encode_batch", counting)
    prompts = [MultimodalPrompt(["a ", Image(str(photo))]), MultimodalPrompt(["a cat"])]
    first, first_mask = encoder.encode(prompts)
    assert calls == [2]
    new = MultimodalPrompt(["new"])
    second, second_mask = encoder.encode([prompts[1], prompts[0], new, new])
    assert calls == [2, 1]  # only the new prompt reached the model, once
    assert torch.equal(second[2], second[3])
    assert torch.equal(second[1][second_mask[1]], first[0][first_mask[0]])

    # A fresh encoder with the same weights finds the rows on disk, and none in its empty memory.
    reloaded = build_encoder(cfg).eval().requires_grad_(False)
    reloaded.load_state_dict(encoder.state_dict())
    cached, _ = reloaded.encode(prompts)
    assert calls == [2, 1] and torch.equal(cached, first)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3

    # A changed image file, changed weights, or a trainable encoder each bypass the stale entries.
    PILImage.fromarray(np.full((12, 12, 3), 10, np.uint8)).save(photo)
    changed, _ = reloaded.encode(prompts[:1])
    assert calls == [2, 1, 1] and not torch.allclose(changed[0], first[0][first_mask[0]])
    with torch.no_grad():
        reloaded.null_token.add_(1.0)
    reloaded.encode(prompts[1:])
    assert calls == [2, 1, 1, 1]
    reloaded.requires_grad_(True)
    reloaded.encode(prompts[1:])
    assert calls == [2, 1, 1, 1, 1]


def test_build_encoder_without_cache() -> None:
    encoder = build_encoder(TINY)
    assert isinstance(encoder, SmallMultimodalEncoder) and encoder.cache is None and encoder.out_dim == 32
    assert encoder.external_state_prefixes == ()  # every weight of the small encoder is trained and saved


def test_encoder_kinds_come_from_the_registry_and_an_unknown_kind_names_the_choices() -> None:
    assert ENCODERS.names() == ["hf_vlm", "llm", "small"] and ENCODERS.get("small") is SmallMultimodalEncoder
    with pytest.raises(ConfigError, match=r"^model\.encoder\.kind='clip' is not one of hf_vlm, llm, small$"):
        build_encoder(dataclasses.replace(TINY, kind="clip"))
    with pytest.raises(ConfigError, match=r"model\.encoder\.kind='clip'"):
        prepare_encoder_input(dataclasses.replace(TINY, kind="clip"), sample_prompts())


@torch.no_grad()
def test_small_encoder_prepared_ahead_equals_prepared_in_encode() -> None:
    """prepare (a DataLoader worker's CPU work, config alone) + encode(prompts, prepared) == encode(prompts)."""
    torch.manual_seed(0)
    encoder = SmallMultimodalEncoder(TINY).eval()
    prompts = [prompt.with_images_loaded() for prompt in sample_prompts()]
    prepared = prepare_encoder_input(TINY, prompts)
    assert isinstance(prepared, PromptLayout) and prepared.segment.shape[0] == len(prompts)
    tokens, mask = encoder.encode(prompts)
    ahead, ahead_mask = encoder.encode(prompts, prepared)
    assert torch.equal(ahead_mask, mask) and torch.equal(ahead, tokens)
    # The prepared layout is what is read: the prompts are not looked at again.
    other, _ = encoder.encode(prompts, SmallMultimodalEncoder.prepare(TINY, prompts[::-1]))
    assert torch.equal(other, encoder.encode(prompts[::-1])[0])
    empty, empty_mask = encoder.encode([], prepare_encoder_input(TINY, []))
    assert empty.shape == (0, 1, 32) and empty_mask.shape == (0, 1)


def test_base_encoder_defaults_prepare_nothing_and_build_from_the_config() -> None:
    class MeanEncoder(MultimodalEncoder):
        def __init__(self, cfg: EncoderConfig):
            super().__init__(cfg)
            self.out_dim = 4
            self.scale = torch.nn.Parameter(torch.ones(4))

        def _encode_batch(self, prompts, prepared):
            assert prepared is None
            return self.scale.expand(len(prompts), 1, 4), torch.ones(len(prompts), 1, dtype=torch.bool)

    assert MeanEncoder.prepare(TINY, sample_prompts()) is None
    encoder = MeanEncoder.from_config(TINY)
    assert isinstance(encoder, MeanEncoder) and encoder.cfg is TINY
    assert encoder.external_state_prefixes == ()
    tokens, mask = encoder.encode(sample_prompts(), None)
    assert tokens.shape == (4, 1, 4) and mask.all()


# --------------------------------------------------------------------------------------------------
# LLM encoder with the real SmolLM2-135M (loaded once per module: ~20 s)
# --------------------------------------------------------------------------------------------------

LLM_CFG = EncoderConfig(
    kind="llm", dim=32, depth=1, heads=2, image_size=16, image_patch=8, max_tokens=128, cache_memory_items=0
)


@pytest.fixture
def llm_encoder(smollm2):
    from vimi.models.encoders.llm import LLMMultimodalEncoder

    torch.manual_seed(0)
    return LLMMultimodalEncoder(LLM_CFG, *smollm2)


@pytest.mark.slow
@torch.no_grad()
def test_llm_encoder_contract_and_text_matches_the_lm(llm_encoder, smollm2) -> None:
    encoder = llm_encoder.eval()
    assert encoder.out_dim == 576 and encoder.external_state_prefixes == ("language_model.",)
    assert any(name.startswith("language_model.") for name in encoder.state_dict())
    tokens, mask = check_encoder_contract(encoder, sample_prompts())
    assert mask[2].sum() == 1  # the empty prompt: the start token alone
    # A text-only prompt gives exactly the LM's own last hidden states for [start, text ids].
    model, tokenizer = smollm2
    ids = [encoder.start_token_id, *tokenizer("a red fox runs left", add_special_tokens=False)["input_ids"]]
    reference = model.base_model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(tokens[1][mask[1]], reference[0], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@torch.no_grad()
def test_llm_encoder_conditions_differ_and_layer_is_configurable(llm_encoder, smollm2) -> None:
    from vimi.models.encoders.llm import LLMMultimodalEncoder

    prompts = [
        MultimodalPrompt(["A ", Image(random_image(0)), " dog runs"]),
        MultimodalPrompt(["A ", Image(random_image(1)), " dog runs"]),
        MultimodalPrompt(["A ", Image(random_image(0)), " cat sits"]),
    ]
    tokens, mask = llm_encoder.eval().encode(prompts)
    assert (tokens[0] - tokens[1]).abs().max() > 1e-2  # the spliced image matters
    assert (tokens[0] - tokens[2]).abs().max() > 1e-2  # the text matters
    middle = LLMMultimodalEncoder(dataclasses.replace(LLM_CFG, llm_hidden_layer=6), *smollm2)
    middle.load_state_dict(llm_encoder.state_dict())
    middle_tokens, middle_mask = middle.eval().encode(prompts)
    assert torch.equal(middle_mask, mask) and (middle_tokens - tokens).abs().max() > 1e-2


@pytest.mark.slow
def test_llm_encoder_trains_projector_and_keeps_lm_frozen(llm_encoder) -> None:
    encoder = llm_encoder.train()
    assert not encoder.language_model.training  # frozen LM stays in eval mode
    tokens, mask = encoder.encode([MultimodalPrompt(["A ", Image(random_image(0)), " dog runs"])])
    (tokens * mask[..., None]).square().mean().backward()
    assert encoder.projector[0].weight.grad is not None and encoder.projector[0].weight.grad.abs().sum() > 0
    assert encoder.vision.patch_embed.weight.grad is not None
    lm_parameters = list(encoder.language_model.parameters())
    assert lm_parameters and all(not p.requires_grad and p.grad is None for p in lm_parameters)


# --------------------------------------------------------------------------------------------------
# Any local HF vision-language model, with a tiny random LLaVA saved to disk
# --------------------------------------------------------------------------------------------------

WORDS = [
    "<pad>",
    "<s>",
    "</s>",
    "<unk>",
    "<image>",
    *["a", "dog", "cat", "is", "playing", "in", "the", "yard", "runs"],
]


@pytest.fixture(scope="module")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},  # so expanded "<image><image>..." splits per token
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
        tokenizer=tokenizer,
        patch_size=4,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=4,
        ),
        text_config=LlamaConfig(
            vocab_size=len(WORDS),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
        ),
        image_token_index=WORDS.index("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_llava")
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@torch.no_grad()
def test_hf_vlm_encoder_from_local_folder(tiny_llava_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vimi.models.encoders.hf_vlm import HFVisionLanguageEncoder

    cfg = EncoderConfig(kind="hf_vlm", llm_path=str(tiny_llava_dir), max_tokens=64, cache_memory_items=4)
    encoder = build_encoder(cfg)
    assert isinstance(encoder, HFVisionLanguageEncoder) and encoder.out_dim == 32 and encoder.is_frozen
    assert encoder.external_state_prefixes == ("model.",) and prepare_encoder_input(cfg, []) is None
    assert all(name.startswith("model.") for name in encoder.state_dict())
    prompts = [
        MultimodalPrompt(["a dog ", Image(random_image(0)), " is playing"]),
        MultimodalPrompt(["a dog ", Image(random_image(1)), " is playing"]),
        MultimodalPrompt(["the cat runs"]),
        MultimodalPrompt([]),
    ]
    encoder.cache = None  # the contract check must reach the model every time
    tokens, mask = check_encoder_contract(encoder, prompts)
    image_tokens = (16 // 4) ** 2  # the processor expands <image> into one token per patch
    assert mask.sum(1).tolist() == [2 + image_tokens + 2, 2 + image_tokens + 2, 3, 1]
    assert (tokens[0] - tokens[1]).abs().max() > 1e-3  # the image reaches the language model

    encoder.cache = EncoderCache(4)
    calls: list[int] = []
    original = HFVisionLanguageEncoder._encode_batch
    monkeypatch.setattr(
        HFVisionLanguageEncoder,
        "_encode_batch",
        lambda self, p, prepared: calls.append(len(p)) or original(self, p, prepared),
    )
    encoder.encode(prompts)
    cached, _ = encoder.encode(prompts)
    assert calls == [4] and torch.allclose(cached, tokens, atol=1e-6)

    text_only = HFVisionLanguageEncoder(cfg, encoder.model, tokenizer=encoder.tokenizer)
    with pytest.raises(PromptError, match="without an image processor"):
        text_only.encode(prompts[:1])
    with pytest.raises(PromptError, match="max_tokens is 64"):
        encoder.encode([MultimodalPrompt([Text("a " * 70)])])


def test_bad_model_paths_raise_config_errors(tmp_path: Path) -> None:
    from vimi.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs model\.encoder\.llm_path"):
        build_encoder(EncoderConfig(kind="hf_vlm"))
    with pytest.raises(ConfigError, match=r"cannot load a causal LM from model.encoder.llm_path=.*empty_lm"):
        build_encoder(EncoderConfig(kind="llm", llm_path=str(tmp_path / "empty_lm")))


def test_hub_names_are_never_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """local_files_only on every from_pretrained: a hub id that is not a local folder fails fast, offline."""
    from vimi.errors import ConfigError
    from vimi.models.encoders.llm import load_causal_lm

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ConfigError, match="HuggingFaceTB/no-such-model"):
        load_causal_lm("HuggingFaceTB/no-such-model")


def test_image_file_digests_are_memoised_in_a_bounded_cache(tmp_path: Path) -> None:
    from vimi.models.encoders.cache import FILE_DIGEST_CACHE_SIZE, _file_digest, image_digest

    path = tmp_path / "a.png"
    PILImage.new("RGB", (4, 4), (1, 2, 3)).save(path)
    first = image_digest(Image(str(path)))
    hits = _file_digest.cache_info().hits
    assert image_digest(Image(str(path))) == first and _file_digest.cache_info().hits == hits + 1
    assert _file_digest.cache_info().maxsize == FILE_DIGEST_CACHE_SIZE
    PILImage.new("RGB", (4, 4), (9, 9, 9)).save(path)  # new bytes (and mtime/size): a new digest
    assert image_digest(Image(str(path))) != first
