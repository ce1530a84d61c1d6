#!/usr/bin/env python3
"""Reference outputs of the two pixel-level refinements dino-vit-features uses, for dinoscope's
parity tests (tests/refine_parity.rs):

* OpenCV's cv2.grabCut after co-segmentation (cosegmentation.py): the binary mask is eroded with a
  7x7 square for sure foreground, its complement likewise for sure background, the rest is
  probable foreground; 5 iterations with GC_INIT_WITH_MASK.
* pydensecrf's DenseCRF2D after part co-segmentation (part_cosegmentation.py): Gaussian sxy 3
  compat 50, bilateral sxy 5 srgb 13 compat 15, 10 mean-field iterations.

Inputs are deterministic: small copies of sample photos, blocky patch-level masks (an ellipse on
an 8-pixel grid with a few patches flipped, upsampled nearest like the reference's mask) and
colour-distance unary costs on a 4-pixel grid (upsampled nearest like the reference's
cost volume). Writes tests/fixtures/refine/ and prints the time of both references on a
298 x 224 photo (the reference's load size 224 applied to cat_amir.jpg).

Usage: python tools/make_refine_fixtures.py [--images DIR] [--out tests/fixtures/refine]
Needs numpy, pillow, opencv-python-headless and pydensecrf (pydensecrf2 on PyPI builds with
Cython 3; the original pydensecrf sdist does not). One thread for OpenCV.
"""

import argparse
import json
import pathlib
import shutil
import time

import cv2
import numpy as np
import pydensecrf.densecrf as dcrf
from PIL import Image

# name, source file, width, ellipse (centre x, centre y, radius x, radius y) as shares of the image
FIXTURES = [
    ("chelsea", "chelsea.png", 128, (0.45, 0.55, 0.30, 0.42)),
    ("cat_amir", "cat_amir.jpg", 128, (0.50, 0.55, 0.28, 0.40)),
    ("guitar_cat", "guitar_cat.jpg", 128, (0.50, 0.50, 0.30, 0.40)),
]
TIMING = ("cat_amir.jpg", (298, 224), (0.50, 0.55, 0.28, 0.40))
MASK_CELL = 8
COST_CELL = 4
LABELS = 5
GRABCUT_ITERATIONS = 5
CRF = dict(gaussian_sxy=3, gaussian_compat=50, bilateral_sxy=5, bilateral_srgb=13, bilateral_compat=15, iterations=10)
# With the reference's weights nearly every pixel ends at a marginal of 0 or 1; pydensecrf's
# README weights (compat 3 and 10) leave the marginals soft, a stricter test of the filtering.
CRF_SOFT = dict(CRF, gaussian_compat=3, bilateral_compat=10)


def load(path, size):
    return np.ascontiguousarray(np.array(Image.open(path).convert("RGB").resize(size, Image.LANCZOS)))


def upsample_nearest(grid, height, width):
    """Nearest upsampling with integer source indices floor(dst * in / out), as the Rust test does."""
    rows = (np.arange(height) * grid.shape[0]) // height
    cols = (np.arange(width) * grid.shape[1]) // width
    return grid[rows][:, cols]


def patch_mask(height, width, ellipse, seed):
    gh, gw = height // MASK_CELL, width // MASK_CELL
    cx, cy, rx, ry = ellipse
    y, x = np.mgrid[0:gh, 0:gw]
    inside = ((x + 0.5) / gw - cx) ** 2 / rx**2 + ((y + 0.5) / gh - cy) ** 2 / ry**2 <= 1.0
    rng = np.random.default_rng(seed)
    flips = rng.random((gh, gw)) < 0.04
    return upsample_nearest(inside ^ flips, height, width).astype(np.uint8)


def grabcut_init(mask):
    """The reference's mask initialisation."""
    kernel = np.ones((7, 7), np.uint8)
    foreground = cv2.erode(mask, kernel)
    background = cv2.erode(1 - mask, kernel)
    full = np.full(mask.shape, cv2.GC_PR_FGD, np.uint8)
    full[background == 1] = cv2.GC_BGD
    full[foreground == 1] = cv2.GC_FGD
    return full


def run_grabcut(image, init):
    work = init.copy()
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.grabCut(image, work, None, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return np.where((work == cv2.GC_BGD) | (work == cv2.GC_PR_BGD), 0, 1).astype(np.uint8)


def patch_costs(image, seed):
    """Unary costs on a COST_CELL grid: squared distances of each cell's mean colour to LABELS
    colours picked from the image, plus noise, minus the per-cell maximum (so all <= 0), as the
    reference's descriptor-distance costs."""
    h, w = image.shape[0] // COST_CELL, image.shape[1] // COST_CELL
    cells = image[: h * COST_CELL, : w * COST_CELL].astype(np.float64) / 255.0
    cells = cells.reshape(h, COST_CELL, w, COST_CELL, 3).mean(axis=(1, 3))
    rng = np.random.default_rng(seed)
    picks = rng.choice(h * w, LABELS, replace=False)
    centres = cells.reshape(-1, 3)[picks]
    costs = 4.0 * ((cells[:, :, None, :] - centres[None, None]) ** 2).sum(-1)
    costs += rng.normal(0.0, 0.05, costs.shape)
    costs -= costs.max(axis=-1, keepdims=True)
    return costs.astype(np.float32)


def run_crf(image, unary_hw, params=CRF):
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, LABELS)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_hw.reshape(-1, LABELS).T))
    crf.addPairwiseGaussian(sxy=params["gaussian_sxy"], compat=params["gaussian_compat"])
    crf.addPairwiseBilateral(
        sxy=params["bilateral_sxy"], srgb=params["bilateral_srgb"], rgbim=image, compat=params["bilateral_compat"]
    )
    q = np.array(crf.inference(params["iterations"]), dtype=np.float32)
    return q.T.reshape(height, width, LABELS)


def save_png(path, array):
    Image.fromarray(array).save(path, optimize=True)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=pathlib.Path, default=pathlib.Path("assets/images"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("tests/fixtures/refine"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.images / "LICENSES.md", args.out / "LICENSES.md")

    manifest = {
        "grabcut_iterations": GRABCUT_ITERATIONS,
        "crf": CRF,
        "crf_soft": CRF_SOFT,
        "labels": LABELS,
        "fixtures": [],
    }
    for index, (name, source, width, ellipse) in enumerate(FIXTURES):
        src = Image.open(args.images / source)
        height = round(src.height * width / src.width)
        image = load(args.images / source, (width, height))
        save_png(args.out / f"{name}.png", image)

        mask = patch_mask(height, width, ellipse, seed=index)
        init = grabcut_init(mask)
        result = run_grabcut(image, init)
        save_png(args.out / f"{name}_mask.png", mask * 255)
        save_png(args.out / f"{name}_grabcut_init.png", init)
        save_png(args.out / f"{name}_grabcut.png", result * 255)

        costs = patch_costs(image, seed=100 + index)
        np.save(args.out / f"{name}_unary.npy", costs)
        q = run_crf(image, upsample_nearest(costs, height, width))
        # Marginals as 16-bit fixed point (error <= 7.7e-6), compressed: far smaller than float32.
        np.savez_compressed(args.out / f"{name}_crf.npz", q=np.round(q * 65535).astype(np.uint16))
        if index == 0:
            soft = run_crf(image, upsample_nearest(costs, height, width), CRF_SOFT)
            np.savez_compressed(args.out / f"{name}_crf_soft.npz", q=np.round(soft * 65535).astype(np.uint16))
        manifest["fixtures"].append(
            {
                "name": name,
                "source": source,
                "width": width,
                "height": height,
                "mask_foreground": int(mask.sum()),
                "grabcut_foreground": int(result.sum()),
                "crf_label_counts": np.bincount(q.argmax(-1).ravel(), minlength=LABELS).tolist(),
            }
        )
        print(f"{name}: {width}x{height}, mask {mask.sum()} px, grabcut {result.sum()} px")

    # An all-background mask: OpenCV throws, and the reference keeps the unrefined mask.
    image = load(args.images / FIXTURES[0][1], (64, 48))
    try:
        run_grabcut(image, grabcut_init(np.zeros((48, 64), np.uint8)))
        manifest["empty_mask_throws"] = False
    except cv2.error:
        manifest["empty_mask_throws"] = True

    source, size, ellipse = TIMING
    image = load(args.images / source, size)
    height, width = image.shape[:2]
    init = grabcut_init(patch_mask(height, width, ellipse, seed=0))
    unary = upsample_nearest(patch_costs(image, seed=100), height, width)
    manifest["timing"] = {
        "image": f"{source} at {width}x{height}",
        "grabcut_s": median_time(lambda: run_grabcut(image, init), args.repeats),
        "densecrf_s": median_time(lambda: run_crf(image, unary), args.repeats),
        "opencv": cv2.__version__,
        "threads": 1,
    }
    print(json.dumps(manifest["timing"], indent=1))
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
