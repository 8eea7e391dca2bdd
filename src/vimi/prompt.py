"""Multimodal prompts: ordered text and image segments, the `<image>` syntax, and the paper's task templates.

Syntax: `A <image:dog.png> is playing in <image:yard.jpg>` names images inline (relative paths are
resolved against `base_dir`); `A <image> is playing in <image>` takes the images, in order, from a list.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vimi.errors import MediaError, PromptError

TASKS = ("pretrain", "subject", "predict", "retrieval_t2v", "t2v")
# A hard safety limit on raw prompt text, not a model setting: the encoders enforce their own
# token budget (EncoderConfig.max_tokens); this stops a pasted book from reaching the tokenizer.
MAX_PROMPT_CHARS = 8192
IMAGE_PLACEHOLDER = "<image>"

INSTRUCTIONS = {
    "subject": "Generate a video with the text and image(s):",
    "predict": "Generate a video with the text and first frame:",
    "retrieval_t2v": "Generate a video with the retrieved text-image pairs:",
}

# `<image>` or `<image:PATH>`; PATH is anything up to the next `>`.
_IMAGE_TAG = re.compile(r"<image(?::([^>]*))?>")
_UNTERMINATED_TAG = re.compile(r"<image:[^>]*$")


@dataclass(frozen=True)
class Text:
    """A run of prompt text: a str that is valid Unicode (encodable as UTF-8)."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise PromptError(f"prompt text is a string, got {type(self.text).__name__}")
        if not self.text.isascii():
            check_utf8(self.text)


def check_utf8(text: str) -> None:
    """Raise PromptError when `text` cannot be encoded as UTF-8: it holds lone surrogates, which is how Python
    passes on bytes that were not valid UTF-8 (in argv, say) or a JSON escape such as "\\udcff"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        # Undecodable bytes arrive as U+DC80..U+DCFF (Python's surrogateescape): name the byte itself.
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        raise PromptError(
            f"prompt text is not valid UTF-8: {what} at character {err.start} "
            f"(near {text[max(0, err.start - 20) : err.end + 20]!a}); pass the prompt as UTF-8 text"
        ) from None


@dataclass(frozen=True, eq=False)
class Image:
    """A prompt image: a tensor [C, H, W] in [-1, 1] or a path to an image file."""

    source: Tensor | str

    def __post_init__(self) -> None:
        if isinstance(self.source, Path):
            object.__setattr__(self, "source", str(self.source))
        if isinstance(self.source, Tensor):
            if self.source.ndim != 3 or self.source.shape[0] not in (1, 3):
                raise PromptError(
                    f"image tensor must be [C, H, W] with C = 1 or 3, got shape {tuple(self.source.shape)}"
                )
        elif not isinstance(self.source, str):
            raise PromptError(f"an image is a [C, H, W] tensor or a path, got {type(self.source).__name__}")

    @property
    def path(self) -> str | None:
        return self.source if isinstance(self.source, str) else None

    def load(self) -> Tensor:
        """The image as float [3, H, W] in [-1, 1] (RGB), read from disk when it is a path."""
        if isinstance(self.source, Tensor):
            image = self.source.float()
            return image.expand(3, -1, -1) if image.shape[0] == 1 else image
        from vimi.data.image_io import read_image  # media IO is imported only when an image is read

        try:
            return read_image(self.source)
        except MediaError as err:
            raise PromptError(f"prompt image {self.source} cannot be read: {err}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        if isinstance(self.source, str) or isinstance(other.source, str):
            return self.source == other.source
        return self.source.shape == other.source.shape and bool(torch.equal(self.source, other.source))

    def __hash__(self) -> int:
        return hash(self.source) if isinstance(self.source, str) else id(self.source)

    def __repr__(self) -> str:
        if isinstance(self.source, str):
            return f"Image({self.source!r})"
        return f"Image(tensor{list(self.source.shape)})"


Segment = Text | Image


@dataclass
class MultimodalPrompt:
    """An interleaved text/image prompt and the task it is for; adjacent texts are merged, empty ones dropped."""

    segments: list[Segment] = field(default_factory=list)
    task: str = "t2v"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise PromptError(f"unknown prompt task {self.task!r}; use one of {', '.join(TASKS)}")
        merged: list[Segment] = []
        for segment in self.segments:
            if isinstance(segment, str):
                segment = Text(segment)
            if isinstance(segment, Text):
                if not segment.text:
                    continue
                if merged and isinstance(merged[-1], Text):
                    merged[-1] = Text(merged[-1].text + segment.text)
                    continue
            elif not isinstance(segment, Image):
                raise PromptError(f"a prompt segment is Text or Image, got {type(segment).__name__}")
            merged.append(segment)
        self.segments = merged

    @property
    def text(self) -> str:
        """The words alone: text segments joined, images left out, whitespace collapsed."""
        return " ".join(" ".join(s.text for s in self.segments if isinstance(s, Text)).split())

    @property
    def placeholder_text(self) -> str:
        """The text with `<image>` where each image stands; parse_prompt(it, images=self.images) rebuilds it."""
        return "".join(s.text if isinstance(s, Text) else IMAGE_PLACEHOLDER for s in self.segments)

    @property
    def images(self) -> list[Image]:
        return [s for s in self.segments if isinstance(s, Image)]

    @property
    def is_empty(self) -> bool:
        return not self.images and not self.text

    def with_images_loaded(self) -> "MultimodalPrompt":
        """The same prompt with each image file read into its tensor, so that using its images again reads no file."""
        return MultimodalPrompt(
            [Image(s.load()) if isinstance(s, Image) and s.path is not None else s for s in self.segments],
            self.task,
        )

    def drop_text(self) -> "MultimodalPrompt":
        """The same prompt without its text (the image-only condition of classifier-free guidance)."""
        return MultimodalPrompt([s for s in self.segments if isinstance(s, Image)], self.task)

    def drop_images(self) -> "MultimodalPrompt":
        """The same prompt without its images (the text-only condition and baseline)."""
        return MultimodalPrompt([s for s in self.segments if isinstance(s, Text)], self.task)

    def to_dict(self, embed_tensors: bool = False, relative_to: str | Path | None = None) -> dict:
        """JSON-safe form; images by path, tensor images as nested lists only with `embed_tensors`."""
        segments: list[dict[str, Any]] = []
        for segment in self.segments:
            if isinstance(segment, Text):
                segments.append({"type": "text", "text": segment.text})
            elif isinstance(segment.source, str):
                path = segment.source
                if relative_to is not None and Path(path).is_relative_to(relative_to):
                    path = str(Path(path).relative_to(relative_to))
                segments.append({"type": "image", "path": path})
            elif embed_tensors:
                segments.append({"type": "image", "tensor": segment.source.float().tolist()})
            else:
                raise PromptError(
                    "this prompt holds an in-memory image tensor; save it to a file and use its path, "
                    "or pass embed_tensors=True to store it as nested lists"
                )
        return {"task": self.task, "segments": segments}

    @classmethod
    def from_dict(cls, data: Any, base_dir: str | Path | None = None) -> "MultimodalPrompt":
        """Inverse of to_dict; relative image paths are resolved against `base_dir` when given."""
        if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
            raise PromptError(f"a prompt dict needs a 'segments' list, got {str(data)[:80]!r}")
        segments: list[Segment] = []
        for i, item in enumerate(data["segments"]):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind == "text" and isinstance(item.get("text"), str):
                segments.append(Text(item["text"]))
            elif kind == "image" and isinstance(item.get("path"), str):
                segments.append(Image(_resolve(item["path"], base_dir)))
            elif kind == "image" and isinstance(item.get("tensor"), list):
                try:
                    segments.append(Image(torch.tensor(item["tensor"], dtype=torch.float32)))
                except (TypeError, ValueError) as err:
                    raise PromptError(
                        f"prompt segment {i}: image tensor is not a nested list of numbers: {err}"
                    ) from None
            else:
                raise PromptError(
                    f"prompt segment {i} must be {{'type': 'text', 'text': ...}} or "
                    f"{{'type': 'image', 'path' | 'tensor': ...}}, got {str(item)[:80]!r}"
                )
        task = data.get("task", "t2v")
        if not isinstance(task, str):
            raise PromptError(f"prompt task must be a string, got {task!r}")
        return cls(segments, task)


def parse_prompt(
    text: str,
    images: Sequence[Tensor | str | Path | Image] | None = None,
    base_dir: str | Path | None = None,
    task: str = "subject",
    check_files: bool = True,
    allow_empty: bool = False,
    max_chars: int = MAX_PROMPT_CHARS,
) -> MultimodalPrompt:
    """Parse `<image:path>` tags and `<image>` placeholders (filled in order from `images`) into a prompt."""
    if not isinstance(text, str):
        raise PromptError(f"a prompt is a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise PromptError(f"prompt is {len(text)} characters long; the limit is {max_chars}. Shorten it.")
    images = list(images or [])
    unterminated = _UNTERMINATED_TAG.search(text)
    if unterminated:
        raise PromptError(
            f"prompt has an unterminated image tag at character {unterminated.start()}: "
            f"{unterminated.group()[:60]!r}; close it with '>'"
        )
    num_slots = sum(1 for m in _IMAGE_TAG.finditer(text) if m.group(1) is None)
    if num_slots != len(images):
        more = "placeholders than images" if num_slots > len(images) else "images than placeholders"
        raise PromptError(
            f"prompt has {num_slots} <image> placeholder(s) but {len(images)} image(s) were given "
            f"(more {more}); give one image per <image>, or name files inline as <image:path>"
        )
    segments: list[Segment] = []
    remaining = iter(images)
    cursor = 0
    for match in _IMAGE_TAG.finditer(text):
        segments.append(Text(text[cursor : match.start()]))
        cursor = match.end()
        if match.group(1) is None:
            item = next(remaining)
            segments.append(item if isinstance(item, Image) else Image(item))
            continue
        path = match.group(1).strip()
        if not path:
            raise PromptError(f"empty image path in {match.group()!r} at character {match.start()}")
        segments.append(Image(_resolve(path, base_dir)))
    segments.append(Text(text[cursor:]))
    # Outer whitespace carries no meaning; inner whitespace is kept as written.
    if segments and isinstance(segments[0], Text):
        segments[0] = Text(segments[0].text.lstrip())
    if segments and isinstance(segments[-1], Text):
        segments[-1] = Text(segments[-1].text.rstrip())
    prompt = MultimodalPrompt(segments, task)
    if prompt.is_empty and not allow_empty:
        raise PromptError("the prompt is empty: give some text and/or images")
    if check_files:
        check_image_files(prompt)
    return prompt


def check_image_files(prompt: MultimodalPrompt) -> None:
    """Raise PromptError naming the first image path that is missing or not a readable image."""
    import PIL.Image

    for image in prompt.images:
        path = image.path
        if path is None:
            continue
        try:
            exists = Path(path).is_file()
        except (OSError, ValueError):
            exists = False
        if not exists:
            raise PromptError(
                f"prompt image not found: {path!r}; check the path (relative paths use base_dir)"
            )
        try:
            with PIL.Image.open(path) as opened:
                opened.verify()
        except Exception as err:  # PIL raises many types for corrupt files
            raise PromptError(
                f"prompt image {path!r} is not a readable image ({type(err).__name__}: {err})"
            ) from None


# --------------------------------------------------------------------------------------------------
# Task templates (paper section 3)
# --------------------------------------------------------------------------------------------------


@dataclass
class RetrievedExamples:
    """Retrieved image-text pairs and the caption they were retrieved for."""

    examples: list[tuple[str, Tensor | str | Path | Image]]
    caption: str


def retrieval_segments(examples: RetrievedExamples) -> list[Segment]:
    """[text_1, <image_1>, ..., text_K, <image_K>, "+", caption] as prompt segments."""
    segments: list[Segment] = []
    for text, image in examples.examples:
        segments += [Text(f"{text.strip()} "), image if isinstance(image, Image) else Image(image), Text(" ")]
    segments.append(Text(f"+ {examples.caption.strip()}"))
    return segments


def apply_template(
    task: str,
    content: "MultimodalPrompt | RetrievedExamples | str | Sequence[Segment]",
    first_frame: Tensor | str | Path | Image | None = None,
) -> MultimodalPrompt:
    """Wrap prompt content in the paper's instruction for `task` (already-wrapped content is left as is).

    pretrain: the retrieval-augmented prompt, no instruction; subject: instruction + the prompt;
    predict: instruction + first frame (`first_frame`, or the content's one image) + the content's text;
    retrieval_t2v: instruction + retrieved pairs + caption; t2v: the text alone.
    """
    if task not in TASKS:
        raise PromptError(f"unknown prompt task {task!r}; use one of {', '.join(TASKS)}")
    if isinstance(content, RetrievedExamples):
        segments = retrieval_segments(content)
    elif isinstance(content, MultimodalPrompt):
        segments = list(content.segments)
    elif isinstance(content, str):
        segments = [Text(content)]
    else:
        segments = list(content)
    if task == "t2v":
        return MultimodalPrompt([s for s in segments if isinstance(s, Text)], task)
    if task == "pretrain":
        return MultimodalPrompt(segments, task)
    instruction = INSTRUCTIONS[task]
    if segments and isinstance(segments[0], Text) and segments[0].text.lstrip().startswith(instruction):
        return MultimodalPrompt(segments, task)
    if task == "predict":
        if first_frame is not None:
            frame = first_frame if isinstance(first_frame, Image) else Image(first_frame)
        else:
            frames = [s for s in segments if isinstance(s, Image)]
            if len(frames) != 1:
                raise PromptError(
                    f"a video-prediction prompt needs exactly one first frame, got {len(frames)} image(s); "
                    "pass first_frame= or put one image in the prompt"
                )
            frame = frames[0]
        # The words only, whitespace collapsed where the frame was taken out.
        words = MultimodalPrompt([s for s in segments if isinstance(s, Text)]).text
        body: list[Segment] = [frame, Text(f" {words}" if words else "")]
    else:
        body = segments
    return MultimodalPrompt([Text(instruction + " "), *body], task)


def _resolve(path: str, base_dir: str | Path | None) -> str:
    if base_dir is None or Path(path).is_absolute():
        return path
    return str(Path(base_dir) / path)
