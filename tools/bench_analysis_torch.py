"""PyTorch / scikit-learn / faiss side of the analysis benchmarks (see tools/bench_analysis.sh).

Reads the descriptors dinoscope's bench wrote (so both sides work on identical data) and times:

* ``point_query``: one clicked source patch against a cached, L2-normalised 3025-patch target map
  (``sim = tgt @ src[i]``, argmax): the inspect_similarity / DIFT click.
* ``best_buddies``: dino-vit-features ``correspondences.py`` steps 2-5 on two 3025 x 6528 log-binned maps:
  ``chunk_cosine_sim`` exactly as the reference writes it (a Python loop over rows of
  ``nn.CosineSimilarity``), and the same with one normalised matmul ("optimised"), then saliency filter and
  scikit-learn ``KMeans(n_clusters=10, random_state=0)`` pair selection.
* ``coseg``: ``find_cosegmentation`` on 6 images (ViT-S/8 stride 4 layer-11 keys, low-res stride-8 saliency,
  faiss elbow k-means with niter 300 / nredo 10, votes) with random-init timm weights, GrabCut left out as in
  dinoscope. Prints ``name=<x> median_ms=<y>`` lines.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import faiss
import numpy as np
import timm
import torch
from PIL import Image
from sklearn.cluster import KMeans


def median_ms(fn, iters: int, warmup: int = 1) -> float:
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def chunk_cosine_sim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dino-vit-features ``chunk_cosine_sim``: x ``[B,1,t,d]``, y ``[B,1,t,d]`` -> ``[B,1,t,t]``."""
    result_list = []
    num_token_x = x.shape[2]
    for token_idx in range(num_token_x):
        token = x[:, :, token_idx, :].unsqueeze(dim=2)
        result_list.append(torch.nn.CosineSimilarity(dim=3)(token, y))
    return torch.stack(result_list, dim=2)


def best_buddies(sim: torch.Tensor, d1, d2, sal1, sal2, thresh=0.05, num_pairs=10):
    """correspondences.py after the similarity: mutual NN, saliency filter, k-means selection."""
    fg1, fg2 = sal1 > thresh, sal2 > thresh
    n1, n2 = sim.shape
    sim_1, nn_1 = torch.max(sim, dim=-1)
    sim_2, nn_2 = torch.max(sim, dim=-2)
    bbs_mask = nn_2[nn_1] == torch.arange(n1)
    fg_mask2_new_coors = nn_2[fg2]
    fg_mask2_mask_new_coors = torch.zeros(n1, dtype=torch.bool)
    fg_mask2_mask_new_coors[torch.unique(fg_mask2_new_coors, sorted=False)] = True
    bbs_mask = torch.bitwise_and(bbs_mask, fg1)
    bbs_mask = torch.bitwise_and(bbs_mask, fg_mask2_mask_new_coors)
    bb_descs1 = d1[bbs_mask]
    bb_descs2 = d2[nn_1[bbs_mask]]
    all_bb = torch.cat((bb_descs1, bb_descs2), dim=-1).numpy()
    n_clusters = min(num_pairs, len(all_bb))
    if n_clusters == 0:
        return []
    normalized = all_bb / np.linalg.norm(all_bb, axis=1, keepdims=True)
    labels = KMeans(n_clusters=n_clusters, random_state=0).fit(normalized).labels_
    bb_sal = (sal1[bbs_mask] + sal2[nn_1[bbs_mask]]).numpy() / 2
    chosen = []
    for k in range(n_clusters):
        idx = np.nonzero(labels == k)[0]
        chosen.append(idx[np.argmax(bb_sal[idx])])
    return chosen


class Extractor:
    """Key facet of a block and the last block's CLS attention, via a hook on ``qkv`` (timm ViT-S/8)."""

    def __init__(self, stride: int):
        self.model = timm.create_model(
            "vit_small_patch8_224", pretrained=False, num_classes=0, dynamic_img_size=True
        ).eval()
        self.model.patch_embed.proj.stride = (stride, stride)
        self.qkv = {}
        for i, block in enumerate(self.model.blocks):
            block.attn.qkv.register_forward_hook(lambda m, inp, out, i=i: self.qkv.__setitem__(i, out))

    @torch.no_grad()
    def run(self, image: torch.Tensor, layer: int):
        self.qkv.clear()
        self.model.forward_features(image)
        b, t, _ = self.qkv[layer].shape
        h = 6
        qkv = self.qkv[layer].reshape(b, t, 3, h, -1).permute(2, 0, 3, 1, 4)
        keys = qkv[1][0, :, 1:, :].permute(1, 2, 0).flatten(-2)  # [N, d*h], extractor order
        last = self.qkv[len(self.model.blocks) - 1].reshape(b, t, 3, h, -1).permute(2, 0, 3, 1, 4)
        q, k = last[0], last[1]
        cls_attn = ((q[0, :, :1] @ k[0].transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1)[:, 0, 1:]
        return keys, cls_attn


def normalize(img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((x - mean) / std)[None]


def crop_to_patches(img: Image.Image, patch: int = 8) -> Image.Image:
    """Top-left crop to a multiple of the patch size, as dinoscope's `prepare` (timm asserts it)."""
    w, h = img.size
    return img.crop((0, 0, w - w % patch, h - h % patch))


def load(path: Path, short: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = short / min(w, h)
    return crop_to_patches(img.resize((round(w * s), round(h * s)), Image.LANCZOS))


def cosegment(images, extractor: Extractor, low: Extractor):
    descs, sals, grids = [], [], []
    for img in images:
        keys, _ = extractor.run(normalize(img), 11)
        w, h = img.size
        grid = (1 + (h - 8) // 4, 1 + (w - 8) // 4)
        half = crop_to_patches(img.resize((w // 2, h // 2), Image.LANCZOS))
        _, attn = low.run(normalize(half), 11)
        sal = attn[[0, 2, 4, 5]].mean(0)
        sal = (sal - sal.min()) / (sal.max() - sal.min())
        lgrid = (half.size[1] // 8, half.size[0] // 8)
        sal = torch.nn.functional.interpolate(sal.reshape(1, 1, *lgrid), size=grid, mode="nearest").flatten()
        descs.append(keys.numpy().astype(np.float32))
        sals.append(sal.numpy())
        grids.append(grid)
    all_d = np.ascontiguousarray(np.concatenate(descs))
    faiss.normalize_L2(all_d)
    train = np.ascontiguousarray(np.concatenate([d[::100] for d in descs]))
    faiss.normalize_L2(train)
    last = None
    for k in range(1, 15):
        km = faiss.Kmeans(d=train.shape[1], k=k, niter=300, nredo=10, seed=0, verbose=False)
        km.train(train)
        dist, labels = km.index.search(all_d, 1)
        mean = dist.mean()
        if last is not None and mean > 0.975 * last:
            break
        last = mean
    labels = labels[:, 0]
    votes = np.zeros(k + 1)
    start = 0
    for d, s in zip(descs, sals):
        lab = labels[start : start + len(d)]
        start += len(d)
        for c in range(k + 1):
            if (lab == c).any() and s[lab == c].mean() > 0.065:
                votes[c] += 1
    salient = np.nonzero(votes >= math.ceil(len(images) * 0.75))[0]
    return salient


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="folder written by dinoscope's analysis bench")
    ap.add_argument("--images", type=Path, nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    torch.manual_seed(0)

    src = torch.from_numpy(np.load(args.data / "keys_a.npy"))
    tgt = torch.from_numpy(np.load(args.data / "keys_b.npy"))
    src_n = torch.nn.functional.normalize(src, dim=1)
    tgt_n = torch.nn.functional.normalize(tgt, dim=1)
    clicks = iter(range(10**9))

    def query():
        i = next(clicks) % src_n.shape[0]
        sim = tgt_n @ src_n[i]
        int(sim.argmax())
        sim.reshape(55, 55)

    print(f"name=point_query median_ms={median_ms(query, 200, 10):.4f}")

    b1 = torch.from_numpy(np.load(args.data / "binned_a.npy"))
    b2 = torch.from_numpy(np.load(args.data / "binned_b.npy"))
    s1 = torch.from_numpy(np.load(args.data / "saliency_a.npy"))
    s2 = torch.from_numpy(np.load(args.data / "saliency_b.npy"))

    def reference():
        sim = chunk_cosine_sim(b1[None, None], b2[None, None])[0, 0]
        best_buddies(sim, b1, b2, s1, s2)

    def optimised():
        sim = torch.nn.functional.normalize(b1, dim=1) @ torch.nn.functional.normalize(b2, dim=1).T
        best_buddies(sim, b1, b2, s1, s2)

    print(f"name=best_buddies_reference median_ms={median_ms(reference, max(1, args.iters // 2), 0):.2f}")
    print(f"name=best_buddies_optimised median_ms={median_ms(optimised, args.iters):.2f}")

    extractor, low = Extractor(4), Extractor(8)
    images = [load(p, 224) for p in args.images[:6]]
    print(f"name=coseg6 median_ms={median_ms(lambda: cosegment(images, extractor, low), args.iters, 1):.1f}")


if __name__ == "__main__":
    main()
