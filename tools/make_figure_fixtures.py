"""Reference for the DINO paper-figure preset (tests/figure_presets.rs): the steps of
facebookresearch/dino's ``visualize_attention.py`` with ``--threshold 0.6`` on a small synthetic case.

Writes ``tests/fixtures/dino_figure.safetensors`` (all float32):

* ``image`` ``[H, W, 3]``: the input pixels (0..255), a smooth pattern, ``H = 5 * 4``, ``W = 7 * 4``
  (a 5 x 7 grid of 4-pixel patches, so the script's top-left crop keeps every pixel).
* ``attention`` ``[heads, rows * cols]``: CLS-to-patch weights of 4 heads (a softmax over random logits,
  scaled by 0.9 as if 10 % went to the CLS key, which the script drops without renormalising).
* ``masks`` ``[heads, rows, cols]``: the script's thresholded masks (sort ascending, normalise, cumulative
  sum, keep ``> 1 - 0.6``, scatter back through the inverse permutation), 1 = kept.
* ``display`` ``[H, W, 3]``: the script's ``img.png``: ToTensor + ImageNet Normalize of the image, then
  ``save_image(make_grid(img, normalize=True, scale_each=True))``, read back.
* ``overlay`` ``[H, W, 3]``: ``display_instances``' ``apply_mask`` (alpha 0.5, on a uint32 copy of the
  display image) for every head in turn with the masks upsampled nearest by the patch size, colours
  ``colorsys.hsv_to_rgb(i / heads, 1, 1)`` in head order (the script shuffles them at random). The contour
  polygons are drawn by matplotlib on top and are not part of this array.

The seed is chosen so that no cumulative share lies within 1e-4 of the cut (float32 summation order
cannot flip a patch).

Run: ``/path/to/python tools/make_figure_fixtures.py`` (needs torch, torchvision, numpy, pillow, safetensors).
"""

from __future__ import annotations

import colorsys
import io
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as pth_transforms

sys.dont_write_bytecode = True

ROWS, COLS, PATCH, HEADS = 5, 7, 4, 4
THRESHOLD = 0.6
SEED = 6


def picture() -> np.ndarray:
    h, w = ROWS * PATCH, COLS * PATCH
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 9 + 20) % 256
    g = (y * 11 + 3 * x) % 256
    b = (200 - 4 * x - 5 * y) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def thresholded(attentions: torch.Tensor) -> torch.Tensor:
    """``visualize_attention.py``'s mask of each head, ``[heads, rows, cols]``."""
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    margin = (cumval - (1 - THRESHOLD)).abs().min().item()
    assert margin > 1e-4, f"a cumulative share lies {margin} from the cut: pick another seed"
    th_attn = cumval > (1 - THRESHOLD)
    idx2 = torch.argsort(idx)
    for head in range(HEADS):
        th_attn[head] = th_attn[head][idx2[head]]
    return th_attn.reshape(HEADS, ROWS, COLS).float()


def display_image(pixels: np.ndarray) -> np.ndarray:
    """The script's ``img.png`` (normalised input, min-max rescaled), as ``skimage.io.imread`` reads it."""
    transform = pth_transforms.Compose([
        pth_transforms.ToTensor(),
        pth_transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    img = transform(Image.fromarray(pixels)).unsqueeze(0)
    buffer = io.BytesIO()
    torchvision.utils.save_image(torchvision.utils.make_grid(img, normalize=True, scale_each=True), buffer, format="png")
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"))


def apply_mask(image, mask, color, alpha=0.5):
    # display_instances' blend, verbatim in behaviour: a float product assigned into the uint32 image.
    for c in range(3):
        image[:, :, c] = image[:, :, c] * (1 - alpha * mask) + alpha * mask * color[c] * 255
    return image


def main() -> None:
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parent.parent
    gen = torch.Generator().manual_seed(SEED)
    logits = torch.randn((HEADS, ROWS * COLS), generator=gen) * 1.5
    attentions = torch.softmax(logits, dim=1) * 0.9

    masks = thresholded(attentions.clone())
    pixels = picture()
    display = display_image(pixels)

    upsampled = nn.functional.interpolate(masks.unsqueeze(0), scale_factor=PATCH, mode="nearest")[0].numpy()
    colors = [colorsys.hsv_to_rgb(i / HEADS, 1, 1) for i in range(HEADS)]
    overlay = display.astype(np.uint32).copy()
    for head in range(HEADS):
        overlay = apply_mask(overlay, upsampled[head], colors[head], 0.5)
    overlay = overlay.astype(np.uint8)

    out = OrderedDict(
        image=torch.from_numpy(pixels.astype(np.float32)),
        attention=attentions,
        masks=masks,
        display=torch.from_numpy(display.astype(np.float32)),
        overlay=torch.from_numpy(overlay.astype(np.float32)),
    )
    path = root / "tests" / "fixtures" / "dino_figure.safetensors"
    save_file({k: v.to(torch.float32).contiguous() for k, v in out.items()}, str(path), metadata={"source": "tools/make_figure_fixtures.py"})
    kept = masks.sum(dim=(1, 2)).tolist()
    print(f"wrote {path} ({path.stat().st_size} bytes); patches kept per head: {kept}")


if __name__ == "__main__":
    main()
