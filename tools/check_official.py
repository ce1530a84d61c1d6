#!/usr/bin/env python3
"""Optional cross-check of tests/fixtures against the *official* model code (not needed to make fixtures).

    python tools/check_official.py --fixtures tests/fixtures \
        --dino /path/to/facebookresearch/dino --dinov2 /path/to/facebookresearch/dinov2 \
        --dino-vit-features /path/to/ShirAmir/dino-vit-features

Loads every fixture checkpoint with the official classes and loaders (DINO v1 ``VisionTransformer`` and
``utils.load_pretrained_weights``; DINOv2 ``DinoVisionTransformer`` built like ``hub/backbones.py``, with
``block_chunks=2`` for the chunked teacher checkpoint and ``strict=True``), applies dino-vit-features'
``ViTExtractor`` for the strided case and the q/k/v/token/attn facets, runs every fixture case in float32 and
compares all stored tensors. Checked at dino@7c446df5, dinov2@b8931f7b, dino-vit-features@1779649.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

TOL = 1e-4


def load_official(args):
    os.environ.setdefault("XFORMERS_DISABLED", "1")  # pure-PyTorch attention / SwiGLU paths
    warnings.filterwarnings("ignore")
    for p in (args.dino, args.dinov2, args.dino_vit_features):
        sys.path.insert(0, str(p))
    import vision_transformer as dino_vits  # facebookresearch/dino
    import utils as dino_utils  # facebookresearch/dino
    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.models.vision_transformer import DinoVisionTransformer
    from extractor import ViTExtractor  # dino-vit-features

    return dino_vits, dino_utils, DinoVisionTransformer, MemEffAttention, NestedTensorBlock, ViTExtractor


def build_model(name, m, fixtures: Path, official):
    dino_vits, dino_utils, DinoVisionTransformer, MemEffAttention, NestedTensorBlock, _ = official
    D, p, M = m["dim"], m["patch"], m["pos_grid"]
    files = m["files"]
    if m["family"] == "dino":
        model = dino_vits.VisionTransformer(
            img_size=[M * p], patch_size=p, embed_dim=D, depth=m["depth"], num_heads=m["heads"], mlp_ratio=4,
            qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
        )
        if "pth" in files:  # hubconf.py: strict load of the backbone-only state dict
            model.load_state_dict(torch.load(fixtures / files["pth"], weights_only=True), strict=True)
        else:  # utils.load_pretrained_weights(checkpoint_key="teacher"); torch.load must unpickle argparse
            real_load = torch.load
            dino_utils.torch.load = functools.partial(real_load, weights_only=False)  # our own file
            try:
                import contextlib
                import io

                with contextlib.redirect_stdout(io.StringIO()) as log:
                    dino_utils.load_pretrained_weights(
                        model, str(fixtures / files["dino_full_checkpoint"]), "teacher", "vit_small", p
                    )
            finally:
                dino_utils.torch.load = real_load
            msg = log.getvalue()
            assert "missing_keys=[]" in msg, msg
    else:
        R = m["registers"]
        chunked = "dinov2_teacher_checkpoint" in files
        model = DinoVisionTransformer(  # as hub/backbones.py _make_dinov2_model + vits.vit_small
            img_size=M * p, patch_size=p, embed_dim=D, depth=m["depth"], num_heads=m["heads"], mlp_ratio=4,
            block_fn=functools.partial(NestedTensorBlock, attn_class=MemEffAttention), init_values=1.0,
            ffn_layer="swiglufused" if m["ffn"] == "swiglu" else "mlp", block_chunks=2 if chunked else 0,
            num_register_tokens=R, interpolate_antialias=m["pos_mode"] == "antialias",
            interpolate_offset=0.0 if m["pos_mode"] == "antialias" else 0.1,
        )
        if chunked:  # keep backbone.* (chunked block names load as they are), drop dino_head.*
            sd = torch.load(fixtures / files["dinov2_teacher_checkpoint"], weights_only=True)["teacher"]
            sd = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        else:
            sd = torch.load(fixtures / files["pth"], weights_only=True)
        model.load_state_dict(sd, strict=True)
    return model.eval()


def blocks_of(model):
    """Transformer blocks in execution order (works for chunked DINOv2 models too)."""
    return [mod for mod in model.modules() if hasattr(mod, "attn") and hasattr(mod, "mlp")]


@torch.no_grad()
def run_case(model, m, case, x, official):
    ViTExtractor = official[-1]
    R, L, s, p = m["registers"], case["facet_layer"], case["stride"], m["patch"]
    got = {}
    if m["family"] == "dino":
        # patch_vit_resolution mutates the model (conv stride, bound method): work on a copy per case
        ext = ViTExtractor(model_type="dino_vits8", stride=s, model=copy.deepcopy(model), device="cpu")
        model = ext.model  # stride + pos-encoding patched when s != p
        for facet, key in (("query", "q_l1"), ("key", "k_l1"), ("value", "v_l1"), ("token", "tokens_l1"),
                           ("attn", "attn_l1")):
            got[key] = ext._extract_features(x, layers=[L], facet=facet)[0][0]
        got["attn_last"] = model.get_last_selfattention(x)[0]
        xn = model.get_intermediate_layers(x, n=1)[0][0]
        got["cls"], got["patch_tokens"] = xn[0], xn[1:]
        tokens = model.patch_embed(x)
        dummy = torch.zeros(1, 1 + tokens.shape[1], m["dim"])
        got["pos_embed_resampled"] = model.interpolate_pos_encoding(dummy, x.shape[2], x.shape[3])[0]
    else:
        assert s == p
        blocks = blocks_of(model)
        rec = {}

        def attn_hook(i):
            def hook(mod, inp, out):  # dino-vit-features style: recompute qkv on the attention's input
                y = inp[0]
                B, T, C = y.shape
                qkv = mod.qkv(y).reshape(B, T, 3, mod.num_heads, C // mod.num_heads).permute(2, 0, 3, 1, 4)
                rec[i] = (qkv[0], qkv[1], qkv[2], ((qkv[0] @ qkv[1].transpose(-2, -1)) * mod.scale).softmax(-1))
            return hook

        hs = [blocks[L].attn.register_forward_hook(attn_hook(L)),
              blocks[-1].attn.register_forward_hook(attn_hook(len(blocks) - 1)),
              blocks[L].register_forward_hook(lambda mod, inp, out: rec.__setitem__("tok", out))]
        f = model.forward_features(x)
        for h in hs:
            h.remove()
        got["cls"], got["patch_tokens"] = f["x_norm_clstoken"][0], f["x_norm_patchtokens"][0]
        got["q_l1"], got["k_l1"], got["v_l1"], got["attn_l1"] = (t[0] for t in rec[L])
        got["attn_last"] = rec[len(blocks) - 1][3][0]
        got["tokens_l1"] = rec["tok"][0]
        gh, gw = x.shape[2] // p, x.shape[3] // p
        dummy = torch.zeros(1, 1 + gh * gw, m["dim"])
        got["pos_embed_resampled"] = model.interpolate_pos_encoding(dummy, x.shape[2], x.shape[3])[0]
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", type=Path, default=Path("tests/fixtures"))
    ap.add_argument("--dino", type=Path, required=True, help="checkout of facebookresearch/dino")
    ap.add_argument("--dinov2", type=Path, required=True, help="checkout of facebookresearch/dinov2")
    ap.add_argument("--dino-vit-features", type=Path, required=True, help="checkout of ShirAmir/dino-vit-features")
    args = ap.parse_args()
    torch.set_num_threads(1)
    official = load_official(args)
    manifest = json.loads((args.fixtures / "manifest.json").read_text())
    models = {name: build_model(name, m, args.fixtures, official) for name, m in manifest["models"].items()}
    worst = 0.0
    for case in manifest["cases"]:
        m = manifest["models"][case["model"]]
        ref = load_file(args.fixtures / case["file"])
        got = run_case(models[case["model"]], m, case, ref["input"], official)
        errs = {}
        for k, v in got.items():
            assert tuple(v.shape) == tuple(ref[k].shape), (case["file"], k, tuple(v.shape), tuple(ref[k].shape))
            errs[k] = (v.float() - ref[k]).abs().max().item()
        e = max(errs.values())
        worst = max(worst, e)
        print(f"{case['file']:<34} max |official f32 - fixture| = {e:.1e}  (worst: {max(errs, key=errs.get)})")
        assert e < TOL, errs
    print(f"all {len(manifest['cases'])} cases match the official code; worst {worst:.1e}")


if __name__ == "__main__":
    main()
