"""Writes tests/fixtures/spair_tiny: a three-pair SPair-71k-format dataset (two categories, tiny
synthetic JPEGs) whose keypoints give known PCK values for an identity predictor (see
src/analysis/spair.rs tests). Run from the repository root: python tools/make_spair_tiny.py"""

import json
import os

import numpy as np
from PIL import Image

ROOT = "tests/fixtures/spair_tiny"

IMAGES = {
    ("cat", "2008_000001.jpg"): (40, 32, 0),
    ("cat", "2008_000002.jpg"): (40, 32, 5),
    ("dog", "2008_000003.jpg"): (48, 32, 9),
    ("dog", "2008_000004.jpg"): (48, 32, 13),
}

# (file stem, split, category, source, target, src_kps, trg_kps, trg_bndbox)
PAIRS = [
    ("000001-2008_000001-2008_000002:cat", "test", "cat", "2008_000001.jpg", "2008_000002.jpg",
     [[5, 5], [10, 10], [20, 5], [-1, -1]], [[6, 5], [10, 12], [20, 5], [3, 3]], [0, 0, 20, 10]),
    ("000002-2008_000002-2008_000001:cat", "test", "cat", "2008_000002.jpg", "2008_000001.jpg",
     [[6, 5], [10, 12], [20, 5]], [[5, 5], [10, 10], [20, 5]], [0, 0, 10, 30]),
    ("000003-2008_000003-2008_000004:dog", "test", "dog", "2008_000003.jpg", "2008_000004.jpg",
     [[10, 10], [30, 20]], [[13, 14], [30, 21]], [5, 5, 45, 25]),
    ("000004-2008_000004-2008_000003:dog", "trn", "dog", "2008_000004.jpg", "2008_000003.jpg",
     [[1, 1]], [[40, 30]], [0, 0, 48, 32]),
]


def picture(width, height, shift):
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x + shift) * 6 % 256, y * 7 % 256, ((x + shift) * y) % 251], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def main():
    for (category, name), (width, height, shift) in IMAGES.items():
        folder = os.path.join(ROOT, "JPEGImages", category)
        os.makedirs(folder, exist_ok=True)
        picture(width, height, shift).save(os.path.join(folder, name), quality=95)
    for stem, split, category, src, trg, src_kps, trg_kps, trg_box in PAIRS:
        folder = os.path.join(ROOT, "PairAnnotation", split)
        os.makedirs(folder, exist_ok=True)
        src_size = IMAGES[(category, src)]
        trg_size = IMAGES[(category, trg)]
        annotation = {
            "filename": stem + ".json",
            "src_imname": src,
            "trg_imname": trg,
            "src_imsize": [src_size[0], src_size[1], 3],
            "trg_imsize": [trg_size[0], trg_size[1], 3],
            "src_bndbox": [0, 0, src_size[0] - 1, src_size[1] - 1],
            "trg_bndbox": trg_box,
            "category": category,
            "src_pose": 0,
            "trg_pose": 0,
            "src_trncn": 0,
            "trg_trncn": 0,
            "src_occln": 0,
            "trg_occln": 0,
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "kps_ids": [str(i) for i in range(len(src_kps))],
            "mirror": 0,
            "vp_var": 0,
            "sc_var": 0,
            "truncn": 0,
            "occlsn": 0,
        }
        with open(os.path.join(folder, stem + ".json"), "w") as f:
            json.dump(annotation, f, indent=1)


if __name__ == "__main__":
    main()
