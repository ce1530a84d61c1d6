"""Reference outputs for the deterministic parts of the dense-feature analyses.

Writes ``tests/fixtures/analysis.safetensors`` from the tiny ``v1_p8`` model (``tests/fixtures/v1_p8.pth``,
made by make_fixtures.py) and the functional reference model in ``reference_vit.py``:

* ``input_a`` / ``input_b``: two normalised ``[1, 3, H, W]`` images (40x48 and 48x40).
* ``key_a`` / ``key_b``: layer-2 key descriptors at stride 4, dino-vit-features' layout ``[N, d*h]``
  (``x.permute(0, 2, 3, 1).flatten(-2)``: channel = dim_index * heads + head).
* ``bin_a``: ``ViTExtractor._log_bin`` (hierarchy 2) of ``key_a``, re-stated with the reference's own Python loops
  over ``AvgPool2d(3**k, stride 1, padding 3**k // 2, count_include_pad=False)`` maps.
* ``saliency_a`` / ``saliency_a_head1``: ``extract_saliency_maps``: last block's attention, CLS row over the patches,
  mean over the given heads (all heads, and head 1 alone), min-max normalised.
* ``pca_a`` / ``pca_b``: scikit-learn ``PCA(n_components=4)`` fitted on both images' key descriptors together
  (pca.py's ``all_together``), projections of each image, computed in float64.

Run: ``/path/to/python tools/make_analysis_fixtures.py`` (needs torch, numpy, scikit-learn, safetensors).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.decomposition import PCA

sys.path.insert(0, str(Path(__file__).parent))
from make_fixtures import MODELS  # noqa: E402
from reference_vit import forward  # noqa: E402

LAYER = 2  # the last block of the 3-block fixture model
STRIDE = 4


def log_bin(x: torch.Tensor, grid: tuple[int, int], hierarchy: int = 2) -> torch.Tensor:
    """dino-vit-features ``ViTExtractor._log_bin`` for ``x`` of shape ``[B, h, N, d]``; returns ``[N, 17 * d * h]``."""
    B = x.shape[0]
    num_bins = 1 + 8 * hierarchy
    bin_x = x.permute(0, 2, 3, 1).flatten(start_dim=-2, end_dim=-1)  # B x N x (d*h)
    bin_x = bin_x.permute(0, 2, 1)
    bin_x = bin_x.reshape(B, bin_x.shape[1], grid[0], grid[1])
    sub_desc_dim = bin_x.shape[1]
    avg_pools = []
    for k in range(0, hierarchy):
        win_size = 3**k
        avg_pool = torch.nn.AvgPool2d(win_size, stride=1, padding=win_size // 2, count_include_pad=False)
        avg_pools.append(avg_pool(bin_x))
    out = torch.zeros((B, sub_desc_dim * num_bins, grid[0], grid[1]), dtype=x.dtype)
    for y in range(grid[0]):
        for xx in range(grid[1]):
            part_idx = 0
            for k in range(0, hierarchy):
                kernel_size = 3**k
                for i in range(y - kernel_size, y + kernel_size + 1, kernel_size):
                    for j in range(xx - kernel_size, xx + kernel_size + 1, kernel_size):
                        if i == y and j == xx and k != 0:
                            continue
                        ti = max(0, min(i, grid[0] - 1))
                        tj = max(0, min(j, grid[1] - 1))
                        out[:, part_idx * sub_desc_dim : (part_idx + 1) * sub_desc_dim, y, xx] = avg_pools[k][:, :, ti, tj]
                        part_idx += 1
    return out.flatten(start_dim=-2, end_dim=-1).permute(0, 2, 1)[0]


def saliency(attn: torch.Tensor, heads: list[int]) -> torch.Tensor:
    """``extract_saliency_maps`` on one image: attention ``[h, T, T]`` of the last block."""
    cls_attn = attn[heads, 0, 1:].mean(dim=0)
    lo, hi = cls_attn.min(), cls_attn.max()
    return (cls_attn - lo) / (hi - lo)


def descriptors(k: torch.Tensor) -> torch.Tensor:
    """Per-head keys ``[h, T, d]`` -> ``[N, d*h]`` without CLS, the extractor's channel order."""
    return k[:, 1:, :].permute(1, 2, 0).flatten(start_dim=-2)


def main() -> None:
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parent.parent
    fixtures = root / "tests" / "fixtures"
    spec = MODELS["v1_p8"]
    weights = torch.load(fixtures / "v1_p8.pth", weights_only=True)
    gen = torch.Generator().manual_seed(7)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    keys = {}
    for name, (h, w) in {"a": (40, 48), "b": (48, 40)}.items():
        image = torch.randn((1, 3, h, w), generator=gen)
        ref = forward(weights, spec, image, stride=STRIDE, facet_layer=LAYER)
        keys[name] = descriptors(ref[f"k_l{LAYER}"])
        out[f"input_{name}"] = image
        out[f"key_{name}"] = keys[name]
        if name == "a":
            out["bin_a"] = log_bin(ref[f"k_l{LAYER}"][None, :, 1:, :], ref["grid"])
            out["saliency_a"] = saliency(ref["attn_last"], list(range(spec.heads)))
            out["saliency_a_head1"] = saliency(ref["attn_last"], [1])
    both = torch.cat([keys["a"], keys["b"]]).numpy().astype(np.float64)
    pca = PCA(n_components=4).fit(both)
    out["pca_a"] = torch.from_numpy(pca.transform(keys["a"].numpy().astype(np.float64)))
    out["pca_b"] = torch.from_numpy(pca.transform(keys["b"].numpy().astype(np.float64)))
    out["pca_components"] = torch.from_numpy(pca.components_)
    tensors = OrderedDict((k, v.to(torch.float32).contiguous()) for k, v in out.items())
    save_file(tensors, str(fixtures / "analysis.safetensors"), metadata={"format": "pt"})
    for k, v in tensors.items():
        print(f"{k}: {tuple(v.shape)}")


if __name__ == "__main__":
    main()
