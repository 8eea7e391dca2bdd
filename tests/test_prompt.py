"""Multimodal prompts: parsing, validation, serialisation and the paper's task templates."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from vimi.errors import PromptError
from vimi.prompt import (
    INSTRUCTIONS,
    MAX_PROMPT_CHARS,
    Image,
    MultimodalPrompt,
    RetrievedExamples,
    Text,
    apply_template,
    parse_prompt,
)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, size in (("dog.png", (24, 32)), ("yard.jpg", (16, 16))):
        PILImage.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    return tmp_path


def test_parse_inline_paths_resolves_against_base_dir(image_dir: Path) -> None:
    prompt = parse_prompt("A <image:dog.png> is playing in <image:yard.jpg>", base_dir=image_dir)
    assert prompt.segments == [
        Text("A "),
        Image(str(image_dir / "dog.png")),
        Text(" is playing in "),
        Image(str(image_dir / "yard.jpg")),
    ]
    assert prompt.task == "subject"
    assert prompt.text == "A is playing in"
    assert prompt.placeholder_text == "A <image> is playing in <image>"


def test_placeholders_are_filled_in_order(image_dir: Path) -> None:
    frame = torch.rand(3, 8, 8) * 2 - 1
    prompt = parse_prompt("<image> then <image>", images=[frame, image_dir / "dog.png"], task="predict")
    assert isinstance(prompt.segments[0], Image) and torch.equal(prompt.segments[0].source, frame)
    assert prompt.segments[2] == Image(str(image_dir / "dog.png"))
    rebuilt = parse_prompt(prompt.placeholder_text, images=prompt.images, task="predict")
    assert rebuilt.segments == prompt.segments


@pytest.mark.parametrize(
    ("text", "num_images", "expected"),
    [
        ("A <image> and <image>", 1, "2 <image> placeholder(s) but 1 image(s)"),
        ("A <image>", 3, "1 <image> placeholder(s) but 3 image(s)"),
        ("no slots here", 1, "0 <image> placeholder(s) but 1 image(s)"),
    ],
)
def test_image_count_mismatch_names_both_counts(text: str, num_images: int, expected: str) -> None:
    with pytest.raises(PromptError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_prompt(text, images=[torch.zeros(3, 4, 4)] * num_images)


def test_missing_and_unreadable_files_name_the_path(image_dir: Path) -> None:
    with pytest.raises(PromptError, match=r"not found: .*cat\.png"):
        parse_prompt("a <image:cat.png>", base_dir=image_dir)
    with pytest.raises(PromptError, match=r"broken\.png.*not a readable image"):
        parse_prompt("a <image:broken.png>", base_dir=image_dir)
    # Without the up-front check, reading the image raises the same kind of error.
    prompt = parse_prompt("a <image:broken.png>", base_dir=image_dir, check_files=False)
    with pytest.raises(PromptError, match=r"broken\.png"):
        prompt.images[0].load()


def test_empty_overlong_and_malformed_prompts_are_rejected() -> None:
    for empty in ("", "   \n"):
        with pytest.raises(PromptError, match="empty"):
            parse_prompt(empty)
    assert parse_prompt("", allow_empty=True).is_empty
    with pytest.raises(PromptError, match=f"limit is {MAX_PROMPT_CHARS}"):
        parse_prompt("a" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(PromptError, match="unterminated"):
        parse_prompt("a dog <image:dog.png")
    with pytest.raises(PromptError, match="empty image path"):
        parse_prompt("a dog <image: >")
    with pytest.raises(PromptError, match="unknown prompt task 'video'"):
        parse_prompt("a dog", task="video")
    with pytest.raises(PromptError, match=r"shape \(4, 4\)"):
        Image(torch.zeros(4, 4))


def test_text_that_is_not_valid_utf8_is_rejected_where_the_prompt_is_made() -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates (argv's b"\\xff" is "\\udcff"): a PromptError
    that names the byte and where it is, never a traceback deep in a tokenizer."""
    named = r"not valid UTF-8: byte 0xff at character 4 \(near 'bad \\udcff!'\)"
    with pytest.raises(PromptError, match=named):
        parse_prompt("bad \udcff!")
    with pytest.raises(PromptError, match=r"not valid UTF-8: lone surrogate U\+D800 at character 0"):
        Text("\ud800")
    with pytest.raises(PromptError, match="not valid UTF-8"):
        MultimodalPrompt(["fine ", "\udcc3\udca9"])
    escaped = json.loads('{"segments": [{"type": "text", "text": "caf\\udce9"}]}')  # a JSON escape
    with pytest.raises(PromptError, match="byte 0xe9 at character 3"):
        MultimodalPrompt.from_dict(escaped)
    with pytest.raises(PromptError, match="prompt text is a string, got bytes"):
        Text(b"\xff bad")
    assert parse_prompt("café 🦊 <image:x.png>", check_files=False).segments[0] == Text("café 🦊 ")


def test_drop_text_and_images_keep_order_and_task(image_dir: Path) -> None:
    prompt = parse_prompt("A <image:dog.png> in <image:yard.jpg> now", base_dir=image_dir)
    assert prompt.drop_images().segments == [Text("A  in  now")]
    assert prompt.drop_text().segments == prompt.images
    assert prompt.drop_text().drop_images().is_empty
    assert prompt.drop_text().task == prompt.task == "subject"


def test_images_loaded_once_keep_the_prompt(image_dir: Path) -> None:
    pixels = torch.zeros(3, 4, 4)
    prompt = parse_prompt(
        "A <image:dog.png> and <image> in <image:yard.jpg>", base_dir=image_dir, images=[pixels]
    )
    loaded = prompt.with_images_loaded()
    assert loaded.placeholder_text == prompt.placeholder_text and loaded.task == prompt.task
    assert all(image.path is None for image in loaded.images)  # no file is read again
    for before, after in zip(prompt.images, loaded.images):
        assert torch.equal(after.load(), before.load())
    assert loaded.images[1].source is pixels  # a tensor image is kept as it is
    assert [image.path for image in prompt.images] == [
        str(image_dir / "dog.png"),
        None,
        str(image_dir / "yard.jpg"),
    ]
    unread = parse_prompt("a <image:broken.png>", base_dir=image_dir, check_files=False)
    with pytest.raises(PromptError, match=r"broken\.png"):
        unread.with_images_loaded()


def test_image_load_reads_real_photo(real_photos: dict[str, Path]) -> None:
    prompt = parse_prompt("a <image:astronaut.png>", base_dir=real_photos["astronaut.png"].parent)
    pixels = prompt.images[0].load()
    assert pixels.shape == (3, 512, 512) and pixels.dtype == torch.float32
    assert -1.0 <= pixels.min() < -0.9 and 0.9 < pixels.max() <= 1.0


def test_dict_round_trip_is_json_safe(image_dir: Path) -> None:
    prompt = parse_prompt("A <image:dog.png> is playing in <image:yard.jpg>", base_dir=image_dir)
    data = json.loads(json.dumps(prompt.to_dict()))
    assert MultimodalPrompt.from_dict(data) == prompt
    portable = prompt.to_dict(relative_to=image_dir)
    assert portable["segments"][1] == {"type": "image", "path": "dog.png"}
    assert MultimodalPrompt.from_dict(portable, base_dir=image_dir) == prompt


def test_tensor_images_serialise_only_when_asked() -> None:
    frame = torch.linspace(-1, 1, 3 * 2 * 2).reshape(3, 2, 2)
    prompt = MultimodalPrompt([Image(frame), Text(" a dog runs")], "predict")
    with pytest.raises(PromptError, match="embed_tensors=True"):
        prompt.to_dict()
    data = json.loads(json.dumps(prompt.to_dict(embed_tensors=True)))
    assert MultimodalPrompt.from_dict(data) == prompt


@pytest.mark.parametrize(
    "bad", [None, {"segments": "x"}, {"segments": [{"type": "video"}]}, {"segments": [], "task": 3}]
)
def test_from_dict_rejects_malformed_input(bad: object) -> None:
    with pytest.raises(PromptError):
        MultimodalPrompt.from_dict(bad)


def test_subject_template_wraps_once(image_dir: Path) -> None:
    prompt = parse_prompt("A <image:dog.png> is playing in <image:yard.jpg>.", base_dir=image_dir)
    wrapped = apply_template("subject", prompt)
    assert wrapped.placeholder_text == (
        "Generate a video with the text and image(s): A <image> is playing in <image>."
    )
    assert apply_template("subject", wrapped).segments == wrapped.segments  # idempotent


def test_predict_template_puts_first_frame_first() -> None:
    frame = torch.zeros(3, 4, 4)
    from_arg = apply_template("predict", "a dog runs left", first_frame=frame)
    assert (
        from_arg.placeholder_text == "Generate a video with the text and first frame: <image> a dog runs left"
    )
    from_prompt = apply_template("predict", MultimodalPrompt(["a dog runs left ", Image(frame)]))
    assert from_prompt.segments == from_arg.segments and from_prompt.task == "predict"
    with pytest.raises(PromptError, match="exactly one first frame, got 0"):
        apply_template("predict", "a dog runs")


def test_retrieval_templates_interleave_examples(image_dir: Path) -> None:
    examples = RetrievedExamples(
        [("a brown dog", image_dir / "dog.png"), ("a green yard", image_dir / "yard.jpg")], "a dog in a yard"
    )
    pretrain = apply_template("pretrain", examples)
    assert pretrain.placeholder_text == "a brown dog <image> a green yard <image> + a dog in a yard"
    assert [s.source for s in pretrain.images] == [str(image_dir / "dog.png"), str(image_dir / "yard.jpg")]
    t2v = apply_template("retrieval_t2v", examples)
    assert t2v.placeholder_text == f"{INSTRUCTIONS['retrieval_t2v']} {pretrain.placeholder_text}"
    assert apply_template("t2v", pretrain).images == []


_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="vimi-prompt-fuzz-"))
PILImage.new("RGB", (4, 4)).save(_FUZZ_DIR / "ok.png")
_PIECES = ["<image>", "<image:", "<image:ok.png>", "ok.png", ">", "<", ":", " ", "a", "\x00", "/", ".."]
_PIECES += ["é", "\udcff"]  # non-ASCII, and a byte that is not UTF-8 as Python passes it on (PromptError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)),
    num_images=st.integers(0, 3),
)
def test_parser_raises_only_prompt_errors(text: str, num_images: int) -> None:
    try:
        prompt = parse_prompt(text, images=[torch.zeros(3, 2, 2)] * num_images, base_dir=_FUZZ_DIR)
    except PromptError:
        return
    assert not prompt.is_empty
    assert len(prompt.images) >= num_images
    assert MultimodalPrompt.from_dict(prompt.to_dict(embed_tensors=True)) == prompt
