"""Reference token norms and register attention (Darcet et al., "Vision Transformers Need Registers").

Writes ``tests/fixtures/token_norms.safetensors`` from two tiny models made by make_fixtures.py and the functional
reference model in ``reference_vit.py`` (float64, stored as float32):

* ``reg4_input``: a normalised ``[1, 3, 42, 70]`` image (a 3 x 5 patch grid) for ``v2_reg4`` (DINOv2, 4 registers,
  4 blocks; ``tests/fixtures/v2_reg4_teacher_checkpoint.pth``).
* ``reg4_norms``: ``[blocks, T]`` L2 norm of every token of each block's output, before the final LayerNorm,
  tokens in the model's order ``[CLS, registers..., patches row-major]``.
* ``reg4_register_attn``: ``[blocks, heads, 1 + N, registers]`` softmax attention of the CLS query and of every
  patch query (rows; the registers' own queries dropped) to each register key (columns), per head.
* ``p14_input`` / ``p14_norms``: the same for ``v2_p14`` (DINOv2 without registers, 3 blocks) on ``[1, 3, 56, 42]``.

Run: ``/path/to/python tools/make_norm_fixtures.py`` (needs torch and safetensors).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import MODELS  # noqa: E402
from reference_vit import forward  # noqa: E402


def teacher_backbone(path: Path) -> dict:
    """The DINOv2 teacher checkpoint's backbone: ``backbone.`` stripped, blocks un-chunked."""
    out = {}
    for k, v in torch.load(path, weights_only=True)["teacher"].items():
        if not k.startswith("backbone."):
            continue
        k = k[len("backbone."):]
        if k.startswith("blocks."):
            _, _chunk, idx, rest = k.split(".", 3)
            k = f"blocks.{idx}.{rest}"
        out[k] = v
    return out


def per_block(weights: dict, name: str, image: torch.Tensor):
    """Every block's output-token norms ``[blocks, T]`` and register attention ``[blocks, h, 1 + N, R]``."""
    spec = MODELS[name]
    norms, attn = [], []
    for block in range(spec.depth):
        ref = forward(weights, spec, image, facet_layer=block)
        norms.append(ref[f"tokens_l{block}"].norm(dim=-1))
        if spec.registers:
            a = ref[f"attn_l{block}"]  # [h, T, T]
            rows = [0] + list(range(1 + spec.registers, a.shape[1]))
            attn.append(a[:, rows, 1 : 1 + spec.registers])
    return torch.stack(norms), (torch.stack(attn) if attn else None)


def main() -> None:
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parent.parent
    fixtures = root / "tests" / "fixtures"
    gen = torch.Generator().manual_seed(16)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    reg4 = teacher_backbone(fixtures / "v2_reg4_teacher_checkpoint.pth")
    image = torch.randn((1, 3, 42, 70), generator=gen)
    norms, attn = per_block(reg4, "v2_reg4", image)
    out["reg4_input"] = image
    out["reg4_norms"] = norms
    out["reg4_register_attn"] = attn

    p14 = torch.load(fixtures / "v2_p14.pth", weights_only=True)
    image = torch.randn((1, 3, 56, 42), generator=gen)
    norms, _ = per_block(p14, "v2_p14", image)
    out["p14_input"] = image
    out["p14_norms"] = norms

    tensors = OrderedDict((k, v.to(torch.float32).contiguous()) for k, v in out.items())
    save_file(tensors, str(fixtures / "token_norms.safetensors"), metadata={"format": "pt"})
    for k, v in tensors.items():
        print(f"{k}: {tuple(v.shape)}")


if __name__ == "__main__":
    main()
