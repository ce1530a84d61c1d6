"""PyTorch side of the folder-embedding benchmark (tools/bench_embed_folder.sh).

Three sub-commands:

    make-data    --out DIR --images N [--seed S] [--classes K] [--square]
    make-weights --out W.pth [--seed S]
    embed        --folder DIR --weights W.pth --out feats.npy [--threads T] [--batch 32] [--size 98]

`make-data` writes a labelled folder `DIR/class_XX/img_NNNNN.{jpg,png}` of N synthetic images
(random ellipses, rectangles, lines and noise over a gradient; sides 90-300 px; every third image
a PNG, the rest JPEG at quality 75-95). Image i depends only on (seed, i), so the first 1,000
images of a 10,000-image folder are the 1,000-image folder. `--square` writes 98x98 PNGs only
(no resize on either side: identical pixels, so the feature check measures the model alone).

`make-weights` writes a random DINOv2 ViT-S/14 (384-d, 12 blocks, 6 heads, patch 14, LayerScale,
37x37 positional table as trained at 518 px) as a plain official state dict (`torch.save`, the
key names of `dinov2_vits14_pretrain.pth`, with `mask_token`), built from timm's
`vit_small_patch14_dinov2`. The init is loud enough that every block matters (Linear N(0, 1/fan_in),
LayerScale U(0.1, 1), LayerNorm 1 + 0.1 N / 0.1 N), unlike timm's LayerScale 1e-5.

`embed` is what a PyTorch user would write for `dinoscope embed-folder DIR --resize 98x98
--pool cls --batch 32`: the same file order (sorted by path), PIL decode (EXIF orientation
applied, RGB), `Image.resize((98, 98), Image.LANCZOS)` (dinoscope resizes with the image crate's
Lanczos3, the same filter), ToTensor + ImageNet Normalize in numpy, batches of 32 under
`torch.inference_mode()`, the CLS token of the final-normed tokens, `np.save`. The model is timm's
VisionTransformer at img_size 98 with the checkpoint loaded; its 7x7 positional table is the 37x37
table resampled once exactly as the official DINOv2 `interpolate_pos_encoding` does at every
forward (bicubic, scale_factor (7 + 0.1) / 37, no antialias) - a [384, 7, 7] resample per batch,
which costs nothing next to the forward. Prints `embed_s=` (listing the folder to the .npy
written, model loading excluded, like dinoscope's own "in X s").
"""

import argparse
import math
import os
import time

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
ARCH = dict(patch_size=14, embed_dim=384, depth=12, num_heads=6, init_values=1e-5)


def make_image(rng, square):
    from PIL import Image, ImageDraw, ImageFilter

    if square:
        w = h = 98
    else:
        w, h = (int(v) for v in rng.integers(90, 301, size=2))
    # A smooth two-colour gradient, shapes on top, then noise.
    c0, c1 = rng.integers(0, 256, size=(2, 3))
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    s = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    mix = (t + s) / 2 if rng.random() < 0.5 else t
    base = (c0 * (1 - mix) + c1 * mix).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(base, (h, w, 3))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0))))
    noise = rng.normal(0.0, float(rng.uniform(2.0, 20.0)), size=(h, w, 3))
    pixels = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def make_data(args):
    for i in range(args.images):
        rng = np.random.default_rng([args.seed, i])
        img = make_image(rng, args.square)
        folder = os.path.join(args.out, f"class_{i % args.classes:02d}")
        os.makedirs(folder, exist_ok=True)
        if args.square or i % 3 == 2:
            img.save(os.path.join(folder, f"img_{i:05d}.png"))
        else:
            img.save(os.path.join(folder, f"img_{i:05d}.jpg"), quality=int(rng.integers(75, 96)))
    print(f"wrote {args.images} images to {args.out}")


def make_weights(args):
    import timm
    import torch

    torch.manual_seed(args.seed)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    assert model.pos_embed.shape == (1, 1 + 37 * 37, 384), model.pos_embed.shape
    state = model.state_dict()
    g = torch.Generator().manual_seed(args.seed)
    out = {}
    for name, t in state.items():
        if name.endswith("ls1.gamma") or name.endswith("ls2.gamma"):
            v = 0.1 + 0.9 * torch.rand(t.shape, generator=g)
        elif "norm" in name and name.endswith(".weight"):
            v = 1 + 0.1 * torch.randn(t.shape, generator=g)
        elif "norm" in name and name.endswith(".bias"):
            v = 0.1 * torch.randn(t.shape, generator=g)
        elif name.endswith(".weight"):
            fan_in = t[0].numel()
            v = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
        elif name.endswith(".bias"):
            v = 0.02 * torch.randn(t.shape, generator=g)
        elif name in ("cls_token", "pos_embed"):
            v = 0.5 * torch.randn(t.shape, generator=g)
        else:
            raise SystemExit(f"unexpected tensor {name}")
        out[name] = v.float().contiguous()
    out["mask_token"] = torch.zeros(1, 384)
    torch.save(out, args.out)
    print(f"wrote {args.out}: {len(out)} tensors, {sum(t.numel() for t in out.values())} values")


def list_images(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in filenames:
            if os.path.splitext(f)[1].lower() in EXTENSIONS:
                found.append(os.path.join(dirpath, f))
    # dinoscope sorts by path components; the generated names sort the same either way.
    return sorted(found, key=lambda p: os.path.relpath(p, root).split(os.sep))


def official_pos_embed(pos_embed, grid):
    """DINOv2's interpolate_pos_encoding for a square grid (interpolate_offset 0.1, no antialias)."""
    import torch
    import torch.nn.functional as F

    cls, patches = pos_embed[:, :1], pos_embed[:, 1:]
    m = int(math.sqrt(patches.shape[1]))
    dim = patches.shape[-1]
    scale = float(grid + 0.1) / m
    resampled = F.interpolate(
        patches.reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=(scale, scale), mode="bicubic"
    )
    assert resampled.shape[-2:] == (grid, grid)
    return torch.cat([cls, resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], dim=1)


def embed(args):
    import timm
    import torch
    from PIL import Image, ImageOps

    torch.set_num_threads(args.threads)
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    state.pop("mask_token", None)
    grid = args.size // ARCH["patch_size"]
    state["pos_embed"] = official_pos_embed(state["pos_embed"], grid)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=args.size, num_classes=0, global_pool="token", **ARCH
    ).eval()
    model.load_state_dict(state, strict=True)

    started = time.perf_counter()
    paths = list_images(args.folder)
    features = np.empty((len(paths), 384), dtype=np.float32)

    def load(path):
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = img.resize((args.size, args.size), Image.LANCZOS)
        x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
        return x.transpose(2, 0, 1)

    with torch.inference_mode():
        for start in range(0, len(paths), args.batch):
            chunk = paths[start : start + args.batch]
            batch = torch.from_numpy(np.stack([load(p) for p in chunk]))
            tokens = model.forward_features(batch)
            features[start : start + len(chunk)] = tokens[:, 0].numpy()
    np.save(args.out, features)
    seconds = time.perf_counter() - started
    print(
        f"images={len(paths)} threads={args.threads} torch={torch.__version__} embed_s={seconds:.3f} "
        f"ms_per_image={1e3 * seconds / max(len(paths), 1):.2f}"
    )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-data")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--square", action="store_true")
    p = sub.add_parser("make-weights")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("embed")
    p.add_argument("--folder", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=98)
    args = parser.parse_args()
    {"make-data": make_data, "make-weights": make_weights, "embed": embed}[args.command](args)


if __name__ == "__main__":
    main()
