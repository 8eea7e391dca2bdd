"""Write a checkpoint's model grown k times wider, computing what it computed, as a pipeline folder to train on.

    python tools/grow_checkpoint.py checkpoints/groundedworld-s outputs/groundedworld-s-w256 --factor 2
    vimi train --config configs/groundedworld-cpu-instruct.yaml --set train.init_from=outputs/groundedworld-s-w256 \
        --set model.backbone.hidden=256 --set model.backbone.heads=8 ...

The backbone's hidden size and heads are multiplied by --factor (depth and head size kept; `vimi.models.grow`
says how); the encoder is copied. It checks on a batch of noise that the grown model's denoiser output equals
the source's, and writes float32 weights (the training run casts its own checkpoints).
"""

import argparse

import torch

from vimi.errors import VimiError
from vimi.models.grow import grow_model
from vimi.pipeline import VimiPipeline


def denoiser_output(pipe: VimiPipeline, seed: int = 0) -> torch.Tensor:
    """The backbone's output for a fixed batch of noise, noise levels and condition tokens."""
    backbone, cfg = pipe.model.backbone, pipe.cfg
    gen = torch.Generator().manual_seed(seed)
    grid = [2 * p for p in backbone.patch]  # 2 x 2 x 2 patches: any backbone's (latent) input accepts it
    x = torch.randn(2, backbone.in_channels, *grid, generator=gen)
    context = torch.randn(x.shape, generator=gen)
    context_mask = torch.zeros(2, 1, *x.shape[2:])
    context_mask[:, :, 0] = 1
    tokens = torch.randn(2, 7, pipe.model.encoder.out_dim, generator=gen)
    side = cfg.model.backbone.image_thumbnail
    thumbnails = torch.randn(2, 3 * side**2 + 1, generator=gen) if side else None
    kwargs = {"context": context, "context_mask": context_mask} if cfg.model.backbone.context_frames else {}
    with torch.no_grad():
        return backbone(
            x,
            torch.randn(2, generator=gen),
            tokens,
            torch.ones(2, 7, dtype=torch.bool),
            thumbnails=thumbnails,
            **kwargs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="pipeline, checkpoint or run folder")
    parser.add_argument("target", help="pipeline folder to write")
    parser.add_argument("--factor", type=int, default=2, help="width multiplier (hidden and heads)")
    args = parser.parse_args()
    try:
        narrow = VimiPipeline.from_pretrained(args.source, device="cpu")
        model, cfg = grow_model(narrow.model, narrow.cfg, args.factor)
    except VimiError as err:
        raise SystemExit(f"grow_checkpoint: error: {err}") from None
    wide = VimiPipeline(model, cfg, device="cpu")
    gap = (denoiser_output(wide) - denoiser_output(narrow)).abs().max().item()
    if gap > 1e-4:
        raise SystemExit(
            f"grow: the grown model's output differs from the source's by {gap:.2e}; not written"
        )
    path = wide.save_pretrained(args.target)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    backbone = cfg.model.backbone
    print(
        f"wrote {path}: hidden {backbone.hidden}, heads {backbone.heads}, {params:.2f}M params; "
        f"output within {gap:.1e} of the source's"
    )


if __name__ == "__main__":
    main()
