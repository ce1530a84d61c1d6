"""PyTorch side of the forward benchmark: median forward time of a DINO / DINOv2 ViT on the CPU.

Uses timm's VisionTransformer, which computes the same graph as the official DINO ViT
(pre-norm blocks, LayerNorm eps 1e-6, fused qkv, erf GELU; LayerScale for DINOv2). Random weights.
`--stride` below the patch size overlaps the patches as dino-vit-features does (the patch
convolution's stride changed, the positional table resampled to the grid at every forward).

    python tools/bench_torch.py --arch vits8 --size 224 --stride 4 --iters 20 --threads 2
"""

import argparse
import statistics
import time

import timm
import torch

ARCHS = {
    "vits16": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vits8": dict(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vitb16": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "vitb8": dict(patch_size=8, embed_dim=768, depth=12, num_heads=12),
    "dinov2-vits14": dict(patch_size=14, embed_dim=384, depth=12, num_heads=6, init_values=1e-5),
    "dinov2-vitb14": dict(patch_size=14, embed_dim=768, depth=12, num_heads=12, init_values=1e-5),
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="vits16", choices=sorted(ARCHS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=args.size,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=args.stride is not None,
        **ARCHS[args.arch],
    ).eval()
    if args.stride is not None:
        model.patch_embed.proj.stride = (args.stride, args.stride)
    x = torch.randn(args.batch, 3, args.size, args.size)
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            start = time.perf_counter()
            model(x)
            if i >= args.warmup:
                times.append((time.perf_counter() - start) * 1e3)
    print(
        f"arch={args.arch} size={args.size} stride={args.stride} batch={args.batch} iters={args.iters} "
        f"threads={args.threads} torch={torch.__version__} median_ms={statistics.median(times):.3f} "
        f"min_ms={min(times):.3f}"
    )


if __name__ == "__main__":
    main()
