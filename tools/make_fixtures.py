#!/usr/bin/env python3
"""Generate the dinoscope test fixtures: tiny random-weight DINO / DINOv2 checkpoints in the official file
formats, plus PyTorch reference outputs for a set of input sizes.

    python tools/make_fixtures.py --out tests/fixtures

See tools/README.md for what is produced. The script is deterministic (fixed seeds, one thread, fixed zip
timestamps): re-running it reproduces every file byte for byte with the same torch / safetensors versions.
It also validates the Hugging Face layouts with `transformers` itself (skip with --no-hf-check).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickletools
import shutil
import struct
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vit import VitSpec, forward, hf_image_size, patch_grid, random_state_dict, to_hf  # noqa: E402

TOL = 1e-4  # what the Rust tests use; the HF validation below must be well inside it
FACET_LAYER = 1

# ------------------------------------------------------------------------------------------------------------
# Models and cases (the contract with the Rust tests; see tools/README.md)
# ------------------------------------------------------------------------------------------------------------

MODELS: "OrderedDict[str, VitSpec]" = OrderedDict(
    v1_p8=VitSpec("dino", patch=8, dim=32, depth=3, heads=2, pos_grid=4, mlp_hidden=128),
    v1_p16_full=VitSpec("dino", patch=16, dim=32, depth=2, heads=2, pos_grid=3, mlp_hidden=128),
    v2_p14=VitSpec("dinov2", patch=14, dim=32, depth=3, heads=2, pos_grid=4, mlp_hidden=128, layerscale=True),
    v2_reg4=VitSpec(
        "dinov2", patch=14, dim=32, depth=4, heads=2, pos_grid=4, pos_mode="antialias", registers=4,
        mlp_hidden=128, layerscale=True,
    ),
    v2_swiglu=VitSpec("dinov2", patch=14, dim=48, depth=2, heads=3, pos_grid=4, ffn="swiglu", layerscale=True),
)
# One fixed seed per model so that adding a model never changes the others.
MODEL_SEEDS = {"v1_p8": 101, "v1_p16_full": 102, "v2_p14": 103, "v2_reg4": 104, "v2_swiglu": 105}

# (model, H, W, stride or None)
CASES = [
    ("v1_p8", 32, 32, None),  # native: the stored table is used as is
    ("v1_p8", 40, 56, None),
    ("v1_p8", 40, 48, 4),  # overlapping patches (dino-vit-features): 9 x 11 grid
    ("v1_p16_full", 48, 48, None),  # native
    ("v1_p16_full", 64, 80, None),
    ("v2_p14", 56, 56, None),  # native
    ("v2_p14", 42, 70, None),
    ("v2_reg4", 56, 56, None),  # native
    ("v2_reg4", 70, 42, None),
    ("v2_reg4", 28, 42, None),  # downsamples the 4x4 table to 2x3: antialiasing matters
    ("v2_reg4", 84, 84, None),
    ("v2_swiglu", 42, 56, None),
]

# DINO v1 training head (DINOHead with nlayers=3, tiny sizes) and DINOv2 SSL head sizes.
HEAD_IN_HIDDEN_BOTTLENECK_OUT = (32, 48, 16, 64)

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def case_filename(model: str, h: int, w: int, stride: int | None) -> str:
    return f"{model}__{h}x{w}" + (f"_s{stride}" if stride else "") + ".safetensors"


def crc_seed(text: str) -> int:
    """Stable per-name seed (Python's hash() is salted per process)."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


# ------------------------------------------------------------------------------------------------------------
# Writers for the official formats
# ------------------------------------------------------------------------------------------------------------


def module_state_dict(flat: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    """Return ``flat`` as a real ``nn.Module.state_dict()``.

    The tensors are put into a throw-away module tree with the same dotted names, so the result is exactly what
    ``model.state_dict()`` gives in the official repos: an OrderedDict that also carries the ``_metadata``
    attribute (pickled via BUILD), which a checkpoint reader has to cope with.
    """
    root = nn.Module()
    for name, t in flat.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if part not in m._modules:
                m.add_module(part, nn.Module())
            m = m._modules[part]
        m.register_parameter(leaf, nn.Parameter(t.detach().clone().contiguous(), requires_grad=False))
    sd = root.state_dict()
    assert list(sd.keys()) == list(flat.keys()), "module tree changed the key order"
    return sd


def prefixed(prefix: str, sd: dict) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((prefix + k, v) for k, v in sd.items())


def dino_head_tensors(gen: torch.Generator) -> "OrderedDict[str, torch.Tensor]":
    """A tiny ``DINOHead`` (v1 and v2 share the layout): mlp.0/2/4 Linears + weight-normed last_layer.

    Built from the real modules so the names come from PyTorch itself: ``last_layer`` is
    ``nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))`` -> ``weight_g [out, 1]`` and
    ``weight_v [out, bottleneck]``; ``weight_g`` is filled with 1 as in the official code.
    """
    d_in, hidden, bottleneck, out_dim = HEAD_IN_HIDDEN_BOTTLENECK_OUT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # old-style weight_norm is what the checkpoints use
        head = nn.Module()
        head.mlp = nn.Sequential(
            nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, bottleneck)
        )
        head.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
    out = OrderedDict()
    for k, v in head.state_dict().items():
        if k.endswith("weight_g"):
            t = torch.ones(v.shape)
        elif k.endswith("bias"):
            t = 0.1 * torch.randn(v.shape, generator=gen)
        else:
            t = 0.2 * torch.randn(v.shape, generator=gen)
        out[k] = t.to(torch.float32).contiguous()
    return out


def write_dino_full_checkpoint(path: Path, teacher_backbone: dict, seed: int) -> None:
    """DINO v1 ``*_full_checkpoint.pth`` / ``checkpoint.pth`` as written by ``main_dino.py``:
    ``{'student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss'}``.
    """
    import argparse as _argparse

    gen = torch.Generator().manual_seed(seed)
    teacher_head = dino_head_tensors(gen)
    # The student differs from the teacher everywhere (N(0, 0.5) noise), so loading the wrong one is obvious.
    student_backbone = OrderedDict((k, v + 0.5 * torch.randn(v.shape, generator=gen)) for k, v in teacher_backbone.items())
    student_head = OrderedDict((k, v if k.endswith("weight_g") else v + 0.5 * torch.randn(v.shape, generator=gen))
                               for k, v in teacher_head.items())

    # Student = DDP(MultiCropWrapper(backbone, head)) -> "module.backbone.*", "module.head.*".
    student_flat = OrderedDict(list(prefixed("module.backbone.", student_backbone).items())
                               + list(prefixed("module.head.", student_head).items()))
    params = OrderedDict((k, nn.Parameter(v.clone())) for k, v in student_flat.items())
    # utils.get_params_groups: biases and 1-D tensors are not regularised; with norm_last_layer=True the
    # frozen weight_g is not trainable and therefore not in the optimizer.
    trainable = [(k, p) for k, p in params.items() if not k.endswith("last_layer.weight_g")]
    regularized = [p for k, p in trainable if not (k.endswith(".bias") or p.ndim == 1)]
    not_regularized = [p for k, p in trainable if k.endswith(".bias") or p.ndim == 1]
    opt = torch.optim.AdamW([{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}], lr=5e-4)
    for _, p in trainable:  # one step with fixed pseudo-gradients -> exp_avg / exp_avg_sq / step in the state
        p.grad = 0.1 * torch.randn(p.shape, generator=gen)
    opt.param_groups[0]["weight_decay"] = 0.04  # main_dino sets the scheduled wd on group 0 each iteration
    opt.step()
    student_flat = OrderedDict((k, p.detach().clone()) for k, p in params.items())

    # Teacher = MultiCropWrapper(backbone, head) without DDP (ViTs have no BatchNorm) -> "backbone.*", "head.*".
    teacher_flat = OrderedDict(list(prefixed("backbone.", teacher_backbone).items())
                               + list(prefixed("head.", teacher_head).items()))
    out_dim = HEAD_IN_HIDDEN_BOTTLENECK_OUT[3]
    args = _argparse.Namespace(
        arch="vit_small", patch_size=16, out_dim=out_dim, norm_last_layer=True, momentum_teacher=0.996,
        use_bn_in_head=False, warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=0,
        use_fp16=False, weight_decay=0.04, weight_decay_end=0.4, clip_grad=3.0, batch_size_per_gpu=64,
        epochs=100, freeze_last_layer=1, lr=0.0005, warmup_epochs=10, min_lr=1e-06, optimizer="adamw",
        drop_path_rate=0.1, global_crops_scale=(0.4, 1.0), local_crops_number=8, local_crops_scale=(0.05, 0.4),
        data_path="/path/to/imagenet/train/", output_dir=".", saveckp_freq=20, seed=0, num_workers=10,
        dist_url="env://", local_rank=0, rank=0, world_size=1, gpu=0,
    )
    ckpt = {
        "student": module_state_dict(student_flat),
        "teacher": module_state_dict(teacher_flat),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "args": args,
        "dino_loss": {"center": torch.randn((1, out_dim), generator=gen)},
    }
    torch.save(ckpt, path)


def write_dinov2_teacher_checkpoint(path: Path, backbone: dict, spec: VitSpec, seed: int, block_chunks: int = 2):
    """DINOv2 ``eval/<iter>/teacher_checkpoint.pth``: ``{"teacher": state_dict}`` with ``backbone.*`` keys whose
    blocks are chunked for FSDP (``blocks.{chunk}.{global_idx}.*``) plus SSL-head tensors (``dino_head.*``)."""
    chunk = spec.depth // block_chunks
    flat = OrderedDict()
    for k, v in backbone.items():
        if k.startswith("blocks."):
            _, idx, rest = k.split(".", 2)
            k = f"blocks.{int(idx) // chunk}.{idx}.{rest}"
        flat["backbone." + k] = v
    gen = torch.Generator().manual_seed(seed)
    for k, v in dino_head_tensors(gen).items():
        flat["dino_head." + k] = v
    torch.save({"teacher": module_state_dict(flat)}, path)


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    save_file({k: v.to(torch.float32).contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


# ------------------------------------------------------------------------------------------------------------
# Deliberately broken files for the error-path tests
# ------------------------------------------------------------------------------------------------------------


def malicious_pickle(command: str) -> bytes:
    """Hand-assembled protocol-2 pickle equivalent to ``os.system(command)``: GLOBAL + TUPLE1 + REDUCE."""
    cmd = command.encode()
    return (
        pickle_op("PROTO") + bytes([2])
        + pickle_op("GLOBAL") + b"os\nsystem\n"
        + pickle_op("BINUNICODE") + struct.pack("<I", len(cmd)) + cmd
        + pickle_op("TUPLE1")
        + pickle_op("REDUCE")
        + pickle_op("STOP")
    )


def pickle_op(name: str) -> bytes:
    op = next(o for o in pickletools.opcodes if o.name == name)
    return op.code.encode("latin-1")


def write_zip(path: Path, entries: "list[tuple[str, bytes]]") -> None:
    """Uncompressed zip with fixed timestamps (byte-for-byte reproducible), like torch.save's container."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)


def write_bad_files(out: Path) -> None:
    raw = (out / "v1_p8.pth").read_bytes()
    (out / "truncated.pth").write_bytes(raw[: int(len(raw) * 0.6)])
    (out / "not_a_checkpoint.pth").write_text(
        "This is not a PyTorch checkpoint.\nIt is a small text file used to test dinoscope's error messages.\n"
    )
    write_safetensors(
        out / "unknown_arch.safetensors",
        {"foo.weight": torch.arange(9, dtype=torch.float32).reshape(3, 3), "bar": torch.tensor([1.0, -1.0])},
        metadata={"format": "pt"},
    )
    payload = malicious_pickle("touch /tmp/dinoscope_pwned")
    # Same member layout as torch.save's zip; never unpickle this (it would run the command).
    write_zip(out / "malicious.pth", [
        ("malicious/data.pkl", payload),
        ("malicious/.format_version", b"1"),
        ("malicious/.storage_alignment", b"64"),
        ("malicious/byteorder", b"little"),
        ("malicious/version", b"3\n"),
    ])
    # Show the opcodes (disassembly does not execute anything).
    buf = io.StringIO()
    pickletools.dis(payload, out=buf)
    print("malicious.pth data.pkl:\n  " + buf.getvalue().strip().replace("\n", "\n  "))


# ------------------------------------------------------------------------------------------------------------
# Validation against transformers (proves the HF layouts are the real ones)
# ------------------------------------------------------------------------------------------------------------


def hf_model_class_and_config(spec: VitSpec):
    import transformers as tf

    common = dict(
        hidden_size=spec.dim, num_hidden_layers=spec.depth, num_attention_heads=spec.heads, num_channels=3,
        image_size=hf_image_size(spec), patch_size=spec.patch, layer_norm_eps=1e-6, hidden_act="gelu",
        qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    if spec.family == "dino":
        return tf.ViTModel, tf.ViTConfig(intermediate_size=spec.mlp_hidden, **common), {"add_pooling_layer": False}
    # HF derives the FFN width from an integer mlp_ratio (SwiGLU: from 4 * D, as in dinov2).
    mlp_ratio = 4 if spec.ffn == "swiglu" else spec.mlp_hidden // spec.dim
    assert spec.ffn == "swiglu" or mlp_ratio * spec.dim == spec.mlp_hidden
    if spec.registers:
        cfg = tf.Dinov2WithRegistersConfig(mlp_ratio=mlp_ratio, num_register_tokens=spec.registers,
                                           layerscale_value=1.0, **common)
        return tf.Dinov2WithRegistersModel, cfg, {}
    swiglu = spec.ffn == "swiglu"
    cfg = tf.Dinov2Config(mlp_ratio=mlp_ratio, use_swiglu_ffn=swiglu,
                          layerscale_value=1.0, **common)
    return tf.Dinov2Model, cfg, {}


@torch.no_grad()
def hf_validate(name: str, spec: VitSpec, weights: dict, hf_file: Path | None, sizes: "list[tuple[int, int]]") -> float:
    """Load the HF-named tensors with ``from_pretrained`` (transformers' own loader, which applies its renaming of
    the Hub's legacy key names), require that no key is missing / unexpected / mismatched, and compare
    ``last_hidden_state`` with the reference's final-normed tokens. Returns the max abs error."""
    cls, cfg, kwargs = hf_model_class_and_config(spec)
    with tempfile.TemporaryDirectory() as d:
        cfg.save_pretrained(d)
        if hf_file is not None:
            shutil.copyfile(hf_file, os.path.join(d, "model.safetensors"))
        else:  # no fixture file for this model: check the in-memory conversion
            write_safetensors(Path(d) / "model.safetensors", to_hf(weights, spec), {"format": "pt"})
        model, info = cls.from_pretrained(d, output_loading_info=True, local_files_only=True, **kwargs)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{name}: transformers loading problems: {problems}"
    model = model.float().eval()
    worst = 0.0
    for h, w in sizes:
        img = torch.randn((1, 3, h, w), generator=torch.Generator().manual_seed(crc_seed(f"hf/{name}/{h}x{w}")))
        got = model(pixel_values=img).last_hidden_state[0].double()
        ref = forward(weights, spec, img)["tokens_norm"]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        err = (got - ref).abs().max().item()
        print(f"  HF {cls.__name__:<25} {name:<12} {h}x{w}: max |HF - ref| = {err:.2e}")
        assert err < TOL / 10, f"{name}: HF mismatch {err}"
        worst = max(worst, err)
    return worst


# ------------------------------------------------------------------------------------------------------------
# Sensitivity report: how far do plausible implementation mistakes move the outputs?
# ------------------------------------------------------------------------------------------------------------


def _pos_variant(kind: str):
    def fn(pos_embed, spec, gh, gw, height, width):
        M = spec.pos_grid
        if kind == "no_skip" or not (gh * gw == M * M and height == width):
            D = pos_embed.shape[-1]
            grid = pos_embed[:, 1:].reshape(1, M, M, D).permute(0, 3, 1, 2)
            if kind == "size_plain":  # HF Dinov2Model / ViTModel style: size=, no offset, no antialias
                out = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
            elif kind == "size_aa" or (kind == "no_skip" and spec.pos_mode == "antialias"):
                out = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
            else:  # "offset" (also the no_skip variant of an offset model)
                out = F.interpolate(grid, scale_factor=((gh + 0.1) / M, (gw + 0.1) / M), mode="bicubic",
                                    align_corners=False)
            return torch.cat((pos_embed[:, :1], out.permute(0, 2, 3, 1).reshape(1, gh * gw, D)), dim=1)
        return pos_embed

    return fn


def sensitivity_report(weights: dict, cases: list) -> None:
    """Max |wrong - right| over the stored outputs for a few wrong variants (all must be >> 1e-4 to be caught)."""
    keys = ("cls", "patch_tokens", "attn_last", "tokens_l1")
    rows = {}
    for c in cases:
        spec, sd, img, ref = MODELS[c["model"]], weights[c["model"]], c["_input"], c["_ref"]
        resampled = not (c["grid"][0] * c["grid"][1] == spec.pos_grid ** 2 and c["height"] == c["width"])
        variants = {"ln_eps=1e-5": dict(ln_eps=1e-5)}
        if spec.ffn == "mlp":
            variants["tanh GELU"] = dict(gelu="tanh")
        if resampled:
            wrong = ["size_plain", "size_aa"] if spec.pos_mode == "offset" else ["size_plain", "offset"]
            variants.update({f"pos {w}": dict(pos_fn=_pos_variant(w)) for w in wrong})
        else:
            # (for "antialias" models this is a no-op: resampling 4x4 -> 4x4 by size= is the identity)
            variants[f"pos resampled at native ({spec.pos_mode})"] = dict(pos_fn=_pos_variant("no_skip"))
        for label, kw in variants.items():
            alt = forward(sd, spec, img, c["stride"] if c["stride"] != spec.patch else None, FACET_LAYER, **kw)
            d = max((alt[k] - ref[k]).abs().max().item() for k in keys)
            rows.setdefault(label, []).append((d, c["file"]))
    print("Sensitivity (max abs change of cls/patch_tokens/attn_last/tokens_l1 under a wrong variant):")
    for label, vals in rows.items():
        lo = min(vals)
        print(f"  {label:<32} smallest over {len(vals):2d} cases: {lo[0]:.2e} ({lo[1]})")


# ------------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures"), help="output directory (default %(default)s)")
    ap.add_argument("--no-hf-check", action="store_true", help="skip the transformers validation")
    ap.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity report")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # ---- weights + model files ------------------------------------------------------------------------------
    weights = {name: random_state_dict(spec, MODEL_SEEDS[name]) for name, spec in MODELS.items()}
    files: "dict[str, dict[str, str]]" = {}

    files["v1_p8"] = {"pth": "v1_p8.pth", "hf_safetensors": "v1_p8_hf.safetensors"}
    torch.save(module_state_dict(weights["v1_p8"]), out / "v1_p8.pth")
    write_safetensors(out / "v1_p8_hf.safetensors", to_hf(weights["v1_p8"], MODELS["v1_p8"]), {"format": "pt"})

    files["v1_p16_full"] = {"dino_full_checkpoint": "v1_p16_full_checkpoint.pth"}
    write_dino_full_checkpoint(out / "v1_p16_full_checkpoint.pth", weights["v1_p16_full"], seed=202)

    files["v2_p14"] = {"pth": "v2_p14.pth", "hf_safetensors": "v2_p14_hf.safetensors"}
    torch.save(module_state_dict(weights["v2_p14"]), out / "v2_p14.pth")
    write_safetensors(out / "v2_p14_hf.safetensors", to_hf(weights["v2_p14"], MODELS["v2_p14"]), {"format": "pt"})

    files["v2_reg4"] = {"dinov2_teacher_checkpoint": "v2_reg4_teacher_checkpoint.pth",
                        "hf_safetensors": "v2_reg4_hf.safetensors"}
    write_dinov2_teacher_checkpoint(out / "v2_reg4_teacher_checkpoint.pth", weights["v2_reg4"], MODELS["v2_reg4"], 204)
    write_safetensors(out / "v2_reg4_hf.safetensors", to_hf(weights["v2_reg4"], MODELS["v2_reg4"]), {"format": "pt"})

    files["v2_swiglu"] = {"pth": "v2_swiglu.pth"}
    torch.save(module_state_dict(weights["v2_swiglu"]), out / "v2_swiglu.pth")

    verify_model_files(out, weights)

    # ---- reference outputs ----------------------------------------------------------------------------------
    cases = []
    for model, h, w, stride in CASES:
        spec = MODELS[model]
        fname = case_filename(model, h, w, stride)
        img = torch.randn((1, 3, h, w), generator=torch.Generator().manual_seed(crc_seed(fname)))
        ref = forward(weights[model], spec, img, stride=stride, facet_layer=FACET_LAYER)
        gh, gw = ref["grid"]
        assert (gh, gw) == patch_grid(spec, h, w, stride)
        T = 1 + spec.registers + gh * gw
        L = FACET_LAYER
        tensors = OrderedDict(
            input=img,
            cls=ref["cls"],
            patch_tokens=ref["patch_tokens"],
            attn_last=ref["attn_last"],
            tokens_l1=ref[f"tokens_l{L}"],
            q_l1=ref[f"q_l{L}"],
            k_l1=ref[f"k_l{L}"],
            v_l1=ref[f"v_l{L}"],
            attn_l1=ref[f"attn_l{L}"],
            pos_embed_resampled=ref["pos_embed_resampled"],
        )
        D, hh, hd = spec.dim, spec.heads, spec.head_dim
        expect = dict(input=(1, 3, h, w), cls=(D,), patch_tokens=(gh * gw, D), attn_last=(hh, T, T),
                      tokens_l1=(T, D), q_l1=(hh, T, hd), k_l1=(hh, T, hd), v_l1=(hh, T, hd), attn_l1=(hh, T, T),
                      pos_embed_resampled=(1 + gh * gw, D))
        for k, shp in expect.items():
            assert tuple(tensors[k].shape) == shp, (fname, k, tuple(tensors[k].shape), shp)
        # Only one metadata entry: safetensors writes the metadata map in random order (byte-for-byte
        # reproducibility); everything about the case is in manifest.json.
        write_safetensors(out / fname, tensors, {"format": "pt"})
        # float32 forward of the same model: how much float32 rounding alone moves the outputs
        ref32 = forward(weights[model], spec, img, stride=stride, facet_layer=L, dtype=torch.float32)
        f32_err = max((ref32[k].double() - ref[k]).abs().max().item()
                      for k in ("cls", "patch_tokens", "attn_last", f"tokens_l{L}", f"q_l{L}", f"attn_l{L}"))
        print(f"case {fname:<32} grid {gh}x{gw} T={T:<3} |f32 torch - f64 reference| = {f32_err:.1e}")
        cases.append({"model": model, "file": fname, "height": h, "width": w, "stride": stride or spec.patch,
                      "grid": [gh, gw], "facet_layer": L, "_input": img, "_ref": ref})

    # ---- manifest -------------------------------------------------------------------------------------------
    manifest = {
        "models": {
            name: {
                "files": files[name],
                "family": spec.family,
                "patch": spec.patch,
                "dim": spec.dim,
                "depth": spec.depth,
                "heads": spec.heads,
                "registers": spec.registers,
                "ffn": spec.ffn,
                "layerscale": spec.layerscale,
                "pos_grid": spec.pos_grid,
                "pos_mode": spec.pos_mode,
            }
            for name, spec in MODELS.items()
        },
        "cases": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cases],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    write_bad_files(out)

    # ---- checks ---------------------------------------------------------------------------------------------
    if not args.no_sensitivity:
        sensitivity_report(weights, cases)
    if not args.no_hf_check:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import transformers
        except ImportError:
            sys.exit("transformers is not installed: install it or pass --no-hf-check")
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        print("transformers validation (from_pretrained, native size; the register model at every case size):")
        hf_err = {}
        hf_err["v1_p8"] = hf_validate("v1_p8", MODELS["v1_p8"], weights["v1_p8"], out / "v1_p8_hf.safetensors",
                                      [(32, 32)])
        hf_err["v2_p14"] = hf_validate("v2_p14", MODELS["v2_p14"], weights["v2_p14"], out / "v2_p14_hf.safetensors",
                                       [(56, 56)])
        # HF's with-registers model resamples exactly like the official one (size=, antialias=True), so it
        # independently checks the antialiased resampling at every fixture size as well.
        reg_sizes = [(c["height"], c["width"]) for c in cases if c["model"] == "v2_reg4"]
        hf_err["v2_reg4"] = hf_validate("v2_reg4", MODELS["v2_reg4"], weights["v2_reg4"],
                                        out / "v2_reg4_hf.safetensors", reg_sizes)
        # No HF fixture file for these two, but transformers can still check the math (SwiGLU, v1 p16).
        hf_err["v2_swiglu (in-memory)"] = hf_validate("v2_swiglu", MODELS["v2_swiglu"], weights["v2_swiglu"], None,
                                                      [(56, 56)])
        hf_err["v1_p16_full (in-memory)"] = hf_validate("v1_p16_full", MODELS["v1_p16_full"],
                                                        weights["v1_p16_full"], None, [(48, 48)])
        print("transformers max abs errors: " + ", ".join(f"{k} {v:.1e}" for k, v in hf_err.items()))

    # ---- summary --------------------------------------------------------------------------------------------
    total = 0
    print("files:")
    for p in sorted(out.iterdir()):
        if p.is_file():
            total += p.stat().st_size
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            print(f"  {p.name:<40} {p.stat().st_size:>9} B  sha256 {digest}")
    print(f"total size of {out}: {total} bytes ({total / 2**20:.2f} MiB)")
    if total > 3 * 10**6:
        # The model sizes fixed by the contract alone need ~2.8 MB (see tools/README.md, "Size").
        print("WARNING: the fixtures exceed the 3 MB budget")


def verify_model_files(out: Path, weights: dict) -> None:
    """Read every model file back the way a loader would and check it holds exactly the reference weights."""

    def same(a: dict, b: dict, what: str, ordered: bool = True):
        ka, kb = (list(a), list(b)) if ordered else (sorted(a), sorted(b))
        assert ka == kb, f"{what}: key mismatch {set(a) ^ set(b)}"
        for k in a:
            assert a[k].dtype == torch.float32 and a[k].is_contiguous(), (what, k)
            assert torch.equal(a[k], b[k]), (what, k)

    same(torch.load(out / "v1_p8.pth", weights_only=True), weights["v1_p8"], "v1_p8.pth")
    same(torch.load(out / "v2_p14.pth", weights_only=True), weights["v2_p14"], "v2_p14.pth")
    same(torch.load(out / "v2_swiglu.pth", weights_only=True), weights["v2_swiglu"], "v2_swiglu.pth")
    for name in ("v1_p8", "v2_p14", "v2_reg4"):
        # safetensors stores the header keys sorted, so only the key set is compared
        same(load_file(out / f"{name}_hf.safetensors"), to_hf(weights[name], MODELS[name]), f"{name}_hf", False)

    # Full DINO checkpoint: the official loader takes ["teacher"], strips "module." and "backbone.", and loads
    # non-strictly (head keys dropped). The pickled argparse.Namespace has to be allow-listed for weights_only.
    import argparse as _argparse

    with torch.serialization.safe_globals([_argparse.Namespace]):
        ck = torch.load(out / "v1_p16_full_checkpoint.pth", weights_only=True)
    assert list(ck.keys()) == ["student", "teacher", "optimizer", "epoch", "args", "dino_loss"]
    teacher = OrderedDict((k.replace("module.", "").replace("backbone.", ""), v) for k, v in ck["teacher"].items()
                          if not k.startswith("head."))
    same(teacher, weights["v1_p16_full"], "full checkpoint teacher")
    student = OrderedDict((k.replace("module.", "").replace("backbone.", ""), v) for k, v in ck["student"].items()
                          if not k.startswith("module.head."))
    assert min((student[k] - teacher[k]).abs().max().item() for k in teacher) > 0.1, "student too close to teacher"
    assert ck["teacher"]["head.last_layer.weight_g"].shape == (HEAD_IN_HIDDEN_BOTTLENECK_OUT[3], 1)
    assert "exp_avg" in ck["optimizer"]["state"][0]

    # DINOv2 teacher checkpoint: strip "backbone.", drop other prefixes, un-chunk "blocks.<chunk>.<idx>.".
    ck = torch.load(out / "v2_reg4_teacher_checkpoint.pth", weights_only=True)
    assert list(ck.keys()) == ["teacher"]
    bb = OrderedDict()
    for k, v in ck["teacher"].items():
        if not k.startswith("backbone."):
            assert k.startswith("dino_head."), k
            continue
        k = k[len("backbone."):]
        if k.startswith("blocks."):
            _, chunk, idx, rest = k.split(".", 3)
            assert int(chunk) == int(idx) // 2, k
            k = f"blocks.{idx}.{rest}"
        bb[k] = v
    same(bb, weights["v2_reg4"], "v2_reg4 teacher checkpoint")


if __name__ == "__main__":
    main()
