"""Golden co-PCA of an SD tap pair, as sd-dino's `utils_correspondence.co_pca` computes it
(Junyi42/sd-dino), with `torch.pca_lowrank` replaced by the exact SVD it approximates.

Writes tests/fixtures/sd/co_pca.safetensors: inputs `{a,b}_{s5,s4,s3}` as [1, C, h, w] and the
outputs `out_a`, `out_b` as [1, C, h, w] (C = 3 * 4, s3's components first).

Run: /work/venv-torch/bin/python tools/make_sd_copca_fixture.py
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

DIMS = {"s5": 4, "s4": 4, "s3": 4}
SHAPES = {"s5": (12, 3, 3), "s4": (10, 6, 6), "s3": (8, 12, 12)}


def exact_pca(centered, q):
    _, _, vh = torch.linalg.svd(centered.double(), full_matrices=False)
    return vh[:q].T.float()


def co_pca(f1, f2):
    out1, out2 = {}, {}
    for name in ("s5", "s4", "s3"):
        c, h, w = SHAPES[name]
        x = torch.cat([f1[name].reshape(1, c, -1), f2[name].reshape(1, c, -1)], dim=-1)
        x = x.permute(0, 2, 1)[0]
        centered = x - x.mean(dim=0, keepdim=True)
        reduced = centered @ exact_pca(centered, DIMS[name])
        reduced = reduced.T.unsqueeze(0)
        n = reduced.shape[-1] // 2
        out1[name] = reduced[:, :, :n].reshape(1, -1, h, w)
        out2[name] = reduced[:, :, n:].reshape(1, -1, h, w)
    result = []
    for p in (out1, out2):
        s5 = F.interpolate(p["s5"], size=p["s4"].shape[-2:], mode="bilinear", align_corners=False)
        s45 = torch.cat([p["s4"], s5], dim=1)
        s45 = F.interpolate(s45, size=p["s3"].shape[-2:], mode="bilinear", align_corners=False)
        result.append(torch.cat([p["s3"], s45], dim=1))
    return result


def main():
    torch.manual_seed(0)
    taps = [{n: torch.randn(1, *SHAPES[n]) for n in SHAPES} for _ in range(2)]
    # A shared direction with large variance per tap, so the leading components are well separated.
    for n, (c, h, w) in SHAPES.items():
        direction = torch.randn(c, 1, 1)
        for t in taps:
            t[n] = t[n] + 3.0 * direction * torch.randn(1, 1, h, w)
    out_a, out_b = co_pca(*taps)
    tensors = {f"a_{n}": v for n, v in taps[0].items()}
    tensors |= {f"b_{n}": v for n, v in taps[1].items()}
    tensors |= {"out_a": out_a.contiguous(), "out_b": out_b.contiguous()}
    path = Path(__file__).resolve().parent.parent / "tests/fixtures/sd/co_pca.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
