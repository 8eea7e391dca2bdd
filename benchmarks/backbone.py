"""Train-step speed of VideoDiT.

CPU (default): VideoDiT against diffusers' CogVideoXTransformer3DModel with the same width, depth, heads,
patch and tokens (parameters within ~10%; both printed), both with 3D RoPE, in the same process:
forward + backward + AdamW step (the same optimizer settings for both). Steps alternate ours, theirs,
ours, ... after warmup so that machine load hits both alike; prints median and min ms of each and the
ratio ours / theirs of both (target <= 0.8). --compile adds a row with torch.compile on both models.

--device cuda: bf16 model-FLOPs utilisation (MFU) of a ~1B-parameter VideoDiT train step; FLOPs are
counted analytically (matmuls and attention, recomputation not counted), peak given by --peak-tflops.

    .venv/bin/python benchmarks/backbone.py --threads 1 --steps 15
    python benchmarks/backbone.py --device cuda --peak-tflops 989
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vimi.condition import Condition
from vimi.config import BackboneConfig
from vimi.models.video_dit import VideoDiT, count_parameters

CHANNELS = 4  # latent channels of the CPU comparison


def time_train_steps(step: Callable[[], None], warmup: int, steps: int, sync: Callable[[], None]) -> float:
    """Median seconds of `steps` calls of `step` after `warmup` calls."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_alternating(
    steps: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds of each call of each step, calls interleaved A, B, A, B, ... after warmup.

    CPU time is what to trust on a shared machine: other processes taking the cores inflate wall time
    but not the CPU time this process spends (at --threads 1 the two agree on an idle machine).
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: {"wall": [], "cpu": []} for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def make_train_step(
    model: torch.nn.Module, forward: Callable[[], torch.Tensor], target: torch.Tensor, fused: bool = False
):
    # fused=False is torch's default (foreach) AdamW; both models always get the same optimizer.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)

    def step() -> None:
        loss = (forward() - target).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def videodit_forward_flops(
    model: VideoDiT, video_tokens: int, frames: int, cond_tokens: int, cond_dim: int
) -> float:
    """Forward FLOPs of one sample: 2 per multiply-add of every matmul, attention scores and values."""
    hidden, depth = model.size.hidden, model.size.depth
    mlp_hidden = int(hidden * model.cfg.mlp_ratio)
    length, ctx = video_tokens, cond_tokens
    patch_in = model.patch_embed.in_features
    patch_out = model.final_layer.linear.out_features
    per_block = (
        2 * length * hidden * 3 * hidden  # fused QKV
        + 2 * ctx * hidden * 2 * hidden  # condition keys and values
        + 2 * length * hidden * hidden  # attention output
        + 2 * 2 * length * ctx * hidden  # scores and values over the condition tokens
        + 2 * 2 * length * hidden * mlp_hidden  # MLP
        + 2 * hidden * 8 * hidden  # adaLN modulation (shift, scale, gate x 2; condition shift, scale)
    )
    full_blocks = sum(block.full_attention for block in model.blocks)
    attention = 2 * 2 * length * length * hidden  # self-attention scores and values, all frames
    spatial_attention = attention / frames  # within each frame only
    embed = 2 * length * patch_in * hidden + 2 * ctx * (cond_dim * hidden + hidden * hidden)
    final = 2 * length * hidden * patch_out + 2 * hidden * 2 * hidden
    time_embed = 2 * (256 * hidden + hidden * hidden)
    self_attention = full_blocks * attention + (depth - full_blocks) * spatial_attention
    return depth * per_block + self_attention + embed + final + time_embed


def build_pair(args: argparse.Namespace):
    """VideoDiT and CogVideoXTransformer3DModel of the same width, depth, heads and patch."""
    from diffusers import CogVideoXTransformer3DModel

    hidden = args.heads * args.head_dim
    ours = VideoDiT(
        BackboneConfig(
            hidden=hidden,
            depth=args.depth,
            heads=args.heads,
            patch_h=args.patch,
            patch_w=args.patch,
            context_frames=False,
            full_attention_every=args.full_attention_every,
        ),
        in_channels=CHANNELS,
        cond_dim=hidden,
    )
    theirs = CogVideoXTransformer3DModel(
        num_attention_heads=args.heads,
        attention_head_dim=args.head_dim,
        in_channels=CHANNELS,
        out_channels=CHANNELS,
        time_embed_dim=hidden,
        text_embed_dim=hidden,
        num_layers=args.depth,
        sample_width=args.size,
        sample_height=args.size,
        sample_frames=(args.frames - 1) * 4 + 1,
        patch_size=args.patch,
        max_text_seq_length=args.text_tokens,
        use_rotary_positional_embeddings=True,
    )
    for model in (ours, theirs):  # adaLN-zero init would make the gradients trivially sparse
        with torch.no_grad():
            for param in model.parameters():
                if param.abs().sum() == 0 and param.ndim > 1:
                    param.normal_(0, 0.02)
    return ours, theirs


def cpu_comparison(args: argparse.Namespace) -> None:
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    torch.manual_seed(0)
    ours, theirs = build_pair(args)
    hidden, batch, text = args.heads * args.head_dim, args.batch, args.text_tokens
    grid = (args.frames, args.size // args.patch, args.size // args.patch)
    video_tokens = grid[0] * grid[1] * grid[2]

    x = torch.randn(batch, CHANNELS, args.frames, args.size, args.size)  # [B, C, T, H, W]
    tokens = torch.randn(batch, text, hidden)
    mask = torch.ones(batch, text, dtype=torch.bool)
    c_noise = torch.randn(batch)
    timestep = torch.randint(0, 1000, (batch,))
    rope = get_3d_rotary_pos_embed(
        args.head_dim, ((0, 0), grid[1:]), grid[1:], grid[0], use_real=True
    )  # CogVideoX's own 3D RoPE tables, as its pipeline builds them
    x_frames_first = x.transpose(1, 2).contiguous()  # [B, C, T, H, W] -> [B, T, C, H, W] (CogVideoX layout)

    def forward_ours(model):
        return lambda: model(x, c_noise, Condition(tokens, mask))

    def forward_theirs(model):
        return lambda: model(x_frames_first, tokens, timestep, image_rotary_emb=rope, return_dict=False)[0]

    print(
        f"threads={torch.get_num_threads()} batch={batch} video_tokens={video_tokens} (grid {grid}) "
        f"text_tokens={text} hidden={hidden} depth={args.depth} heads={args.heads} patch={args.patch}"
    )
    print(
        f"optimizer: AdamW ({'fused' if args.fused_adamw else 'foreach'}) for both; "
        f"VideoDiT full_attention_every={args.full_attention_every}; warmup={args.warmup} steps={args.steps} (interleaved)"
    )
    params_ours, params_theirs = count_parameters(ours), count_parameters(theirs)
    print(
        f"params: VideoDiT {params_ours / 1e6:.2f}M  CogVideoX {params_theirs / 1e6:.2f}M  "
        f"ratio {params_ours / params_theirs:.3f}"
    )
    rows = [("eager", ours, theirs)]
    if args.compile:
        rows.append(("compiled", torch.compile(ours), torch.compile(theirs)))
    for label, model_ours, model_theirs in rows:
        steps = {
            "ours": make_train_step(ours, forward_ours(model_ours), x, args.fused_adamw),
            "theirs": make_train_step(theirs, forward_theirs(model_theirs), x_frames_first, args.fused_adamw),
        }
        times = time_alternating(steps, args.warmup, args.steps)
        for clock in ("cpu", "wall"):
            ours_s, theirs_s = times["ours"][clock], times["theirs"][clock]
            med_o, med_t = statistics.median(ours_s) * 1e3, statistics.median(theirs_s) * 1e3
            min_o, min_t = min(ours_s) * 1e3, min(theirs_s) * 1e3
            paired = statistics.median(o / t for o, t in zip(ours_s, theirs_s))  # neighbours share load
            print(
                f"[{label} {clock:>4}] VideoDiT ms: median {med_o:7.1f} min {min_o:7.1f} | "
                f"CogVideoX ms: median {med_t:7.1f} min {min_t:7.1f} | ratio ours/theirs: "
                f"median {med_o / med_t:.3f} min {min_o / min_t:.3f} paired {paired:.3f} (target <= 0.8)"
            )


def cuda_mfu(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = BackboneConfig(
        hidden=args.gpu_hidden,
        depth=args.gpu_depth,
        heads=args.gpu_hidden // 64,
        patch_h=2,
        patch_w=2,
        activation_checkpointing=args.checkpointing,
        full_attention_every=args.full_attention_every,
    )
    channels, cond_dim = 16, 1024
    model = VideoDiT(cfg, in_channels=channels, cond_dim=cond_dim).to(device)
    batch, frames, size, text = args.gpu_batch, args.gpu_frames, args.gpu_size, args.text_tokens
    x = torch.randn(batch, channels, frames, size, size, device=device)
    tokens = torch.randn(batch, text, cond_dim, device=device)
    mask = torch.ones(batch, text, dtype=torch.bool, device=device)
    c_noise = torch.randn(batch, device=device)

    def forward() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x, c_noise, Condition(tokens, mask)).float()

    step = make_train_step(model, forward, x, args.fused_adamw)
    seconds = time_train_steps(step, args.warmup, args.steps, torch.cuda.synchronize)
    video_tokens = frames * (size // 2) ** 2
    flops = (
        3 * batch * videodit_forward_flops(model, video_tokens, frames, text, cond_dim)
    )  # forward + 2x backward
    achieved = flops / seconds / 1e12
    print(f"VideoDiT params={count_parameters(model) / 1e9:.3f}B batch={batch} video_tokens={video_tokens}")
    print(
        f"step={seconds * 1e3:.1f} ms  model FLOPs/step={flops / 1e12:.2f} TFLOP  achieved={achieved:.1f} TFLOP/s"
    )
    print(f"bf16 MFU = {achieved / args.peak_tflops:.3f} (peak {args.peak_tflops} TFLOP/s)")
    print(f"peak memory = {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=9, help="timed steps of each model")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument(
        "--full-attention-every", type=int, default=BackboneConfig.full_attention_every, help="VideoDiT"
    )
    parser.add_argument("--fused-adamw", action="store_true", help="fused AdamW (both models)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of both models")
    # CPU comparison (both models get these sizes)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4, help="latent frames")
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--patch", type=int, default=2)
    # GPU MFU (~1B parameters by default)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM: 989)")
    parser.add_argument("--gpu-hidden", type=int, default=1536)
    parser.add_argument("--gpu-depth", type=int, default=20)
    parser.add_argument("--gpu-batch", type=int, default=4)
    parser.add_argument("--gpu-frames", type=int, default=8)
    parser.add_argument("--gpu-size", type=int, default=32)
    parser.add_argument("--checkpointing", action="store_true")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        cuda_mfu(args)
    else:
        cpu_comparison(args)


if __name__ == "__main__":
    main()
