#!/usr/bin/env python3
"""Generate the supervised-ViT test fixtures: a tiny random-weight timm ``VisionTransformer`` with a classifier
head, saved as an official DeiT ``.pth`` and as a timm Hugging Face Hub folder (``model.safetensors`` +
``config.json`` with the "inception" mean = std = 0.5), plus timm's own outputs for a set of input sizes.

    python tools/make_supervised_fixtures.py --out tests/fixtures/supervised

The outputs are timm's (float64, unfused attention, ``dynamic_img_size=True`` so that other sizes resample the
positional table with ``resample_abs_pos_embed``), cross-checked against ``reference_vit.forward`` with the
antialiased resampling. See tools/README.md ("Supervised ViT fixtures"). Deterministic: fixed seeds, one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import zlib
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vit import VitSpec, forward, random_state_dict  # noqa: E402

import timm  # noqa: E402
from timm.data import resolve_data_config  # noqa: E402
from timm.models._hub import save_config_for_hf  # noqa: E402

FACET_LAYER = 1
SEED = 301
CLASSES = 10
SPEC = VitSpec("dino", patch=16, dim=32, depth=2, heads=2, pos_grid=3, pos_mode="antialias", mlp_hidden=128)
# Same weights under two timm pretrained configurations: DeiT (ImageNet mean/std) and AugReg (mean = std = 0.5).
TIMM_NAMES = {"deit": "deit_tiny_patch16_224", "augreg": "vit_small_patch16_224.augreg_in21k_ft_in1k"}
FILES = {"deit": {"deit_pth": "supervised/deit_tiny.pth"},
         "augreg": {"timm_hub_safetensors": "supervised/augreg/model.safetensors"}}
# (model, H, W): native 3x3 grid, up-sampled non-square tables, and a down-sampled one (antialiasing matters).
CASES = [("deit", 48, 48), ("deit", 64, 80), ("deit", 32, 48), ("augreg", 48, 48), ("augreg", 64, 48)]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def build(name: str) -> torch.nn.Module:
    model = timm.create_model(
        TIMM_NAMES[name], pretrained=False, img_size=48, patch_size=SPEC.patch, embed_dim=SPEC.dim,
        depth=SPEC.depth, num_heads=SPEC.heads, mlp_ratio=SPEC.mlp_hidden / SPEC.dim, num_classes=CLASSES,
        dynamic_img_size=True,
    )
    return model.eval()


def weights() -> "OrderedDict[str, torch.Tensor]":
    """The reference's loud random backbone plus a random classifier head (which the loader must ignore)."""
    sd = random_state_dict(SPEC, SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    sd["head.weight"] = 0.2 * torch.randn((CLASSES, SPEC.dim), generator=gen)
    sd["head.bias"] = 0.1 * torch.randn((CLASSES,), generator=gen)
    return sd


@torch.no_grad()
def timm_outputs(model: torch.nn.Module, image: torch.Tensor) -> dict:
    """Everything the parity test compares, taken from timm's own modules with forward hooks."""
    seen: dict = {}
    hooks = [model.patch_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("patches", o)),
             model.patch_drop.register_forward_hook(lambda m, i, o: seen.__setitem__("embedded", i[0]))]
    for i, blk in enumerate(model.blocks):
        blk.attn.fused_attn = False  # the unfused path computes the softmax attention as a tensor
        hooks.append(blk.attn.qkv.register_forward_hook(lambda m, inp, o, i=i: seen.__setitem__(f"qkv{i}", o)))
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda m, inp, o, i=i: seen.__setitem__(f"attn{i}", o)))
        hooks.append(blk.register_forward_hook(lambda m, inp, o, i=i: seen.__setitem__(f"block{i}", o)))
    feats = model.forward_features(image)
    logits = model.forward_head(feats)
    for h in hooks:
        h.remove()
    _, gh, gw, d = seen["patches"].shape  # dynamic_img_size keeps the patch embedding NHWC
    t = 1 + gh * gw
    tokens = torch.cat((model.cls_token, seen["patches"].reshape(1, gh * gw, d)), dim=1)
    L = FACET_LAYER
    qkv = seen[f"qkv{L}"].reshape(1, t, 3, SPEC.heads, SPEC.head_dim).permute(2, 0, 3, 1, 4)
    return {
        "grid": (gh, gw),
        "cls": feats[0, 0],
        "patch_tokens": feats[0, 1:],
        "attn_last": seen[f"attn{SPEC.depth - 1}"][0],
        "tokens_l1": seen[f"block{L}"][0],
        "q_l1": qkv[0, 0],
        "k_l1": qkv[1, 0],
        "v_l1": qkv[2, 0],
        "attn_l1": seen[f"attn{L}"][0],
        # what _pos_embed added: its output minus the CLS token and the patch embeddings
        "pos_embed_resampled": (seen["embedded"] - tokens)[0],
        "logits": logits[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/supervised"),
                    help="output directory (default %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out: Path = args.out
    (out / "augreg").mkdir(parents=True, exist_ok=True)
    prefix = out.name + "/"  # paths in the manifest are relative to tests/fixtures

    sd = weights()
    models = {name: build(name) for name in TIMM_NAMES}
    for name, model in models.items():
        model.load_state_dict(sd, strict=True)
    norms = {name: resolve_data_config({}, model=m) for name, m in models.items()}
    assert (tuple(norms["deit"]["mean"]), tuple(norms["deit"]["std"])) == IMAGENET, norms["deit"]
    assert tuple(norms["augreg"]["mean"]) == (0.5,) * 3 and tuple(norms["augreg"]["std"]) == (0.5,) * 3

    # ---- model files: DeiT's release layout and timm's Hub layout ---------------------------------------------
    deit_path = out / "deit_tiny.pth"
    torch.save({"model": models["deit"].state_dict()}, deit_path)
    hub = out / "augreg"
    save_file(models["augreg"].state_dict(), str(hub / "model.safetensors"), metadata={"format": "pt"})
    save_config_for_hf(models["augreg"], str(hub / "config.json"))
    cfg = json.loads((hub / "config.json").read_text())
    assert cfg["pretrained_cfg"]["mean"] == [0.5] * 3 and cfg["pretrained_cfg"]["std"] == [0.5] * 3, cfg
    for path, got in ((deit_path, torch.load(deit_path, weights_only=True)["model"]),
                      (hub / "model.safetensors", load_file(hub / "model.safetensors"))):
        assert sorted(got) == sorted(sd), path
        assert all(torch.equal(got[k], sd[k]) for k in sd), path

    # ---- reference outputs ------------------------------------------------------------------------------------
    for m in models.values():
        m.double()
    backbone = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("head."))
    cases = []
    for name, h, w in CASES:
        fname = f"{name}__{h}x{w}.safetensors"
        gen = torch.Generator().manual_seed(zlib.crc32(fname.encode()) & 0x7FFFFFFF)
        pixels = torch.randint(0, 256, (1, 3, h, w), generator=gen, dtype=torch.uint8)
        unit = pixels.double() / 255.0

        def normalised(mean, std):
            return (unit - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
                std, dtype=torch.float64).view(1, 3, 1, 1)

        # What timm feeds this model, and what dinoscope feeds every model (ImageNet normalisation).
        timm_input = normalised(norms[name]["mean"], norms[name]["std"])
        dinoscope_input = normalised(*IMAGENET)
        ref = timm_outputs(models[name], timm_input)
        gh, gw = ref["grid"]
        assert (gh, gw) == (h // SPEC.patch, w // SPEC.patch)
        # Independent check: the functional DINO reference with antialiased resampling is the same model.
        func = forward(backbone, SPEC, timm_input, facet_layer=FACET_LAYER)
        ref_err = max((func[k] - ref[k]).abs().max().item() for k in
                      ("cls", "patch_tokens", "attn_last", "tokens_l1", "q_l1", "attn_l1", "pos_embed_resampled"))
        assert ref_err < 1e-6, (fname, ref_err)
        logits = models[name].forward_head(models[name].forward_features(timm_input))[0]
        assert torch.equal(logits, ref["logits"])
        tensors = OrderedDict(
            input=dinoscope_input, pixels=pixels,
            **{k: ref[k] for k in ("cls", "patch_tokens", "attn_last", "tokens_l1", "q_l1", "k_l1", "v_l1",
                                   "attn_l1", "pos_embed_resampled")},
        )
        save_file({k: (v if v.dtype == torch.uint8 else v.to(torch.float32)).contiguous()
                   for k, v in tensors.items()}, str(out / fname), metadata={"format": "pt"})
        # How far the two mistakes this fixture is for would land: DINO's offset resampling, and feeding the
        # model ImageNet-normalised pixels without folding its own normalisation in.
        offset = forward(backbone, dataclasses.replace(SPEC, pos_mode="offset"), timm_input, facet_layer=FACET_LAYER)
        wrong = {"offset resampling": (offset["patch_tokens"] - ref["patch_tokens"]).abs().max().item()}
        if name != "deit":
            unfolded = timm_outputs(models[name], dinoscope_input)
            wrong["no folding"] = (unfolded["patch_tokens"] - ref["patch_tokens"]).abs().max().item()
        print(f"case {fname:<24} grid {gh}x{gw} |timm - functional reference| = {ref_err:.1e}; patch tokens moved by "
              + ", ".join(f"{k} {v:.2g}" for k, v in wrong.items()))
        cases.append({"model": name, "file": prefix + fname, "height": h, "width": w, "stride": SPEC.patch,
                      "grid": [gh, gw], "facet_layer": FACET_LAYER})

    manifest = {
        "models": {
            name: {
                "files": FILES[name], "family": "supervised", "timm": TIMM_NAMES[name],
                "input_norm": "imagenet" if name == "deit" else "inception", "classes": CLASSES,
                "patch": SPEC.patch, "dim": SPEC.dim, "depth": SPEC.depth, "heads": SPEC.heads,
                "registers": 0, "ffn": "mlp", "layerscale": False, "pos_grid": SPEC.pos_grid,
                "pos_mode": SPEC.pos_mode,
            }
            for name in TIMM_NAMES
        },
        "cases": cases,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    total = 0
    for p in sorted(out.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            print(f"  {str(p.relative_to(out)):<36} {p.stat().st_size:>8} B  sha256 {digest}")
    print(f"total size of {out}: {total} bytes")


if __name__ == "__main__":
    main()
