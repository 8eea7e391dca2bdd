"""The web UI (Gradio Blocks): a prompt with <image> slots, uploads bound to them in order, a video out.

The request logic (`build_request`, `generate_video`) is plain Python so it is testable without a
browser; `build_app` only lays out the components and maps vimi errors to a message in the page.
"""

import html
import logging
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from vimi.errors import PromptError, VimiError
from vimi.pipeline import VimiPipeline, to_prompt
from vimi.prompt import IMAGE_PLACEHOLDER, MultimodalPrompt
from vimi.serve.examples import Example

log = logging.getLogger(__name__)

# Task selector labels -> prompt tasks.
TASK_LABELS = {
    "subject": "Subject-driven (text + images)",
    "predict": "First-frame prediction (text + first frame)",
    "retrieval_t2v": "Text with retrieval (examples from your image library)",
}
LABEL_TASKS = {label: task for task, label in TASK_LABELS.items()}
MAX_FILE_SIZE = "10mb"
"""Largest upload Gradio accepts (its `max_file_size`)."""
MAX_UPLOADS = 8
INLINE_IMAGE_TAG = re.compile(r"<image:[^>]*>")


def upload_paths(files: Any) -> list[str]:
    """Gradio's File value (None, a path, or a list of paths / file objects) as a list of paths, in order."""
    if files is None:
        return []
    items = files if isinstance(files, list | tuple) else [files]
    return [str(getattr(item, "path", None) or getattr(item, "name", None) or item) for item in items]


def build_request(
    task: str, text: str, images: list[str], has_index: bool
) -> tuple[MultimodalPrompt, str | None]:
    """The prompt and first frame (or None) for a UI request; PromptError names what does not match."""
    text = (text or "").strip()
    if INLINE_IMAGE_TAG.search(text):
        # Inline paths would read files on the server: the UI takes images only as uploads.
        raise PromptError(
            "use bare <image> slots in the web UI and upload the images; <image:path> is not allowed"
        )
    if len(images) > MAX_UPLOADS:
        raise PromptError(f"{len(images)} images uploaded; the limit is {MAX_UPLOADS}")
    slots = text.count(IMAGE_PLACEHOLDER)
    if task == "subject":
        if slots != len(images):
            raise PromptError(
                f"the prompt has {slots} <image> slot(s) but {len(images)} image(s) were uploaded; "
                "upload one image per slot, in order"
            )
        if not images:
            raise PromptError(
                "subject-driven generation needs at least one <image> slot with an uploaded image"
            )
        return to_prompt(text, images=images), None
    if task == "predict":
        if slots or len(images) != 1:
            raise PromptError(
                f"first-frame prediction takes text without <image> slots and exactly one uploaded image "
                f"(the first frame); got {slots} slot(s) and {len(images)} image(s)"
            )
        if not text:
            raise PromptError("the prompt is empty: describe what happens after the first frame")
        return to_prompt(text), images[0]
    if task == "retrieval_t2v":
        if slots or images:
            raise PromptError("text with retrieval takes text only: remove the <image> slots and the uploads")
        if not has_index:
            raise PromptError("no retrieval index is loaded; start `vimi serve` with --index DIR")
        if not text:
            raise PromptError("the prompt is empty: describe the video")
        return to_prompt(text), None
    raise PromptError(f"unknown task {task!r}")


def generate_video(
    pipe: VimiPipeline,
    task: str,
    text: str,
    images: list[str],
    guidance_text: float,
    guidance_image: float,
    seed: int,
    steps: int,
    out_dir: Path,
    index: str | None = None,
) -> Path:
    """Run one UI request and write its mp4 into `out_dir`; returns the file's path."""
    from vimi.data.video_io import write_mp4

    prompt, first_frame = build_request(task, text, images, has_index=index is not None)
    if seed is None or steps is None:  # a cleared number box
        raise PromptError("give a seed and a number of steps")
    video = pipe(
        prompt,
        first_frame=first_frame,
        guidance_text=guidance_text,
        guidance_image=guidance_image,
        seed=int(seed),
        num_inference_steps=int(steps),
        index=index if task == "retrieval_t2v" else None,
        progress=True,  # Gradio's track_tqdm shows the sampler's bar in the page
    ).frames[0]  # [C, T, H, W]
    return write_mp4(video, out_dir / f"vimi-{uuid.uuid4().hex[:12]}.mp4", fps=pipe.cfg.sample.fps)


def build_app(
    pipe: VimiPipeline,
    index: str | None = None,
    examples: list[Example] | None = None,
    out_dir: Path | None = None,
):
    """The Gradio Blocks of the UI; launch it with `launch_app`."""
    import gradio as gr

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="vimi-serve-"))
    sample = pipe.cfg.sample

    # Gradio finds the progress tracker by this default argument (track_tqdm shows the sampler's bar).
    def on_generate(
        task_label,
        text,
        files,
        guidance_text,
        guidance_image,
        seed,
        steps,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008
    ):
        try:
            path = generate_video(
                pipe,
                LABEL_TASKS[task_label],
                text,
                upload_paths(files),
                guidance_text,
                guidance_image,
                seed,
                steps,
                out_dir,
                index,
            )
        except VimiError as err:
            # Gradio renders the message as HTML: escape it so `<image>` shows instead of vanishing as a tag.
            raise gr.Error(html.escape(str(err))) from None
        return str(path), f"Done: seed {int(seed)}, {int(steps)} steps, written to {path.name}"

    with gr.Blocks(title="vimi", analytics_enabled=False) as app:
        gr.Markdown(
            "## vimi: video from multimodal instructions\n"
            "Write a prompt with `<image>` slots and upload one image per slot, in order "
            "(e.g. `A <image> is playing in <image>`)."
        )
        with gr.Row():
            with gr.Column():
                task = gr.Radio(
                    list(TASK_LABELS.values()), value=TASK_LABELS["subject"], label="Task", elem_id="task"
                )
                prompt = gr.Textbox(
                    label="Prompt", placeholder="A <image> is playing in <image>", lines=2, elem_id="prompt"
                )
                files = gr.File(
                    label="Images (bound to the <image> slots in order; the first frame for prediction)",
                    file_count="multiple",
                    file_types=["image"],
                    elem_id="images",
                )
                guidance_text = gr.Slider(
                    0.0, 10.0, value=sample.guidance_text, step=0.5, label="Text guidance"
                )
                guidance_image = gr.Slider(
                    0.0, 10.0, value=sample.guidance_image, step=0.5, label="Image guidance"
                )
                with gr.Row():
                    seed = gr.Number(value=sample.seed, precision=0, label="Seed", elem_id="seed")
                    steps = gr.Slider(
                        1, 100, value=sample.num_inference_steps, step=1, label="Steps", elem_id="steps"
                    )
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Video", elem_id="video", autoplay=True, loop=True)
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
        if examples:
            gr.Examples(
                [[TASK_LABELS[e.task], e.text, e.images or None] for e in examples],
                inputs=[task, prompt, files],
                label="Examples from GroundedWorld",
            )
        button.click(
            on_generate,
            [task, prompt, files, guidance_text, guidance_image, seed, steps],
            [video, status],
            concurrency_limit=1,  # one model: requests queue instead of competing for it
        )
    app.vimi_out_dir = out_dir
    return app


def launch_app(
    app, host: str = "127.0.0.1", port: int = 7860, allowed_paths: list[str] | None = None, block: bool = True
):
    """Serve `app` on host:port with upload limits; localhost only unless `host` says otherwise."""
    return app.queue().launch(
        server_name=host,
        server_port=port,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[str(app.vimi_out_dir), *(allowed_paths or [])],
        prevent_thread_lock=not block,
        show_error=True,
        footer_links=[],
        quiet=True,
    )
