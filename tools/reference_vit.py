"""Functional PyTorch reference of the DINO (v1) and DINOv2 Vision Transformers.

This is the ground truth the Rust tests compare against. It re-states, op for op, the inference path of

* facebookresearch/dino   @ 7c446df5  ``vision_transformer.py`` (``VisionTransformer``), and
* facebookresearch/dinov2 @ b8931f7b  ``dinov2/models/vision_transformer.py`` (``DinoVisionTransformer``),

plus the overlapping-patch ("stride") trick of ShirAmir/dino-vit-features ``extractor.py``. The model works
directly on an *official* state dict (``blocks.{i}.attn.qkv.weight`` ...), so there is no second naming scheme
to get wrong. Semantics reproduced exactly:

* LayerNorm with eps 1e-6 (biased variance), exact erf GELU, pre-norm blocks, final LayerNorm.
* Fused ``qkv`` Linear ``[3D, D]``: the output is viewed as ``[T, 3, heads, hd]`` (rows ``0..D`` = Q,
  ``D..2D`` = K, ``2D..3D`` = V, each split into contiguous per-head slices of ``hd`` rows), scale ``hd**-0.5``.
* DINOv2 LayerScale (``ls1.gamma`` / ``ls2.gamma``) and SwiGLU FFN (``w12`` -> halves ``x1, x2`` ->
  ``silu(x1) * x2`` -> ``w3``).
* Token order ``[CLS, registers..., patches row-major]``; the positional table is added to CLS + patches
  *before* the registers are inserted (registers carry no positional embedding).
* Positional-table resampling through the real ``torch.nn.functional.interpolate`` with the official
  arguments (see :func:`resample_pos_embed`).

Everything is computed in float64 by default (weights and inputs are float32, hence exactly representable), so
the stored float32 fixtures are as close to the exact math as float32 allows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LN_EPS = 1e-6


@dataclass(frozen=True)
class VitSpec:
    """Architecture of one tiny test model (the fields mirror ``manifest.json``)."""

    family: str  # "dino" (v1) | "dinov2"
    patch: int
    dim: int
    depth: int
    heads: int
    pos_grid: int  # M: the positional table covers an M x M patch grid (+ 1 CLS row)
    pos_mode: str = "offset"  # "offset" (v1, DINOv2 without registers) | "antialias" (DINOv2 with registers)
    registers: int = 0
    ffn: str = "mlp"  # "mlp" | "swiglu"
    mlp_hidden: int = 0  # hidden width of the plain MLP (unused for swiglu)
    layerscale: bool = False

    def __post_init__(self):
        assert self.family in ("dino", "dinov2")
        assert self.pos_mode in ("offset", "antialias")
        assert self.ffn in ("mlp", "swiglu")
        assert self.dim % self.heads == 0
        if self.family == "dino":
            assert self.registers == 0 and self.ffn == "mlp" and not self.layerscale

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def ffn_hidden(self) -> int:
        if self.ffn == "swiglu":
            # dinov2/layers/swiglu_ffn.py SwiGLUFFNFused: int(4D * 2/3) rounded up to a multiple of 8.
            return (int(4 * self.dim * 2 / 3) + 7) // 8 * 8
        return self.mlp_hidden


# ------------------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------------------


def param_shapes(spec: VitSpec) -> "OrderedDict[str, tuple]":
    """Official parameter names and shapes, in the order of the official ``model.state_dict()``."""
    D, p, M, Hf = spec.dim, spec.patch, spec.pos_grid, spec.ffn_hidden
    s: "OrderedDict[str, tuple]" = OrderedDict()
    s["cls_token"] = (1, 1, D)
    s["pos_embed"] = (1, 1 + M * M, D)
    if spec.family == "dinov2":
        if spec.registers:
            s["register_tokens"] = (1, spec.registers, D)
        s["mask_token"] = (1, D)
    s["patch_embed.proj.weight"] = (D, 3, p, p)
    s["patch_embed.proj.bias"] = (D,)
    for i in range(spec.depth):
        b = f"blocks.{i}."
        s[b + "norm1.weight"] = (D,)
        s[b + "norm1.bias"] = (D,)
        s[b + "attn.qkv.weight"] = (3 * D, D)
        s[b + "attn.qkv.bias"] = (3 * D,)
        s[b + "attn.proj.weight"] = (D, D)
        s[b + "attn.proj.bias"] = (D,)
        if spec.layerscale:
            s[b + "ls1.gamma"] = (D,)
        s[b + "norm2.weight"] = (D,)
        s[b + "norm2.bias"] = (D,)
        if spec.ffn == "swiglu":
            s[b + "mlp.w12.weight"] = (2 * Hf, D)
            s[b + "mlp.w12.bias"] = (2 * Hf,)
            s[b + "mlp.w3.weight"] = (D, Hf)
            s[b + "mlp.w3.bias"] = (D,)
        else:
            s[b + "mlp.fc1.weight"] = (Hf, D)
            s[b + "mlp.fc1.bias"] = (Hf,)
            s[b + "mlp.fc2.weight"] = (D, Hf)
            s[b + "mlp.fc2.bias"] = (D,)
        if spec.layerscale:
            s[b + "ls2.gamma"] = (D,)
    s["norm.weight"] = (D,)
    s["norm.bias"] = (D,)
    return s


def random_tensor(name: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    """Deliberately "loud" random init so that every wrong detail moves the outputs well past 1e-4.

    Linear/conv weights N(0, 0.2), biases N(0, 0.1), LayerNorm weight 1 + 0.2 N, LayerNorm bias 0.1 N,
    cls/pos/register/mask tokens N(0, 0.5), LayerScale gamma U(0.5, 1.5).
    """
    leaf = name.rsplit(".", 1)[-1]
    if name in ("cls_token", "pos_embed", "register_tokens", "mask_token"):
        t = 0.5 * torch.randn(shape, generator=gen)
    elif leaf == "gamma":
        t = 0.5 + torch.rand(shape, generator=gen)
    elif ".norm" in "." + name:  # norm1 / norm2 / final norm
        t = torch.randn(shape, generator=gen)
        t = 1.0 + 0.2 * t if leaf == "weight" else 0.1 * t
    elif leaf == "weight":
        t = 0.2 * torch.randn(shape, generator=gen)
    elif leaf == "bias":
        t = 0.1 * torch.randn(shape, generator=gen)
    else:
        raise KeyError(name)
    return t.to(torch.float32).contiguous()


def random_state_dict(spec: VitSpec, seed: int) -> "OrderedDict[str, torch.Tensor]":
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((k, random_tensor(k, shp, gen)) for k, shp in param_shapes(spec).items())


# ------------------------------------------------------------------------------------------------------------
# Forward
# ------------------------------------------------------------------------------------------------------------


def patch_grid(spec: VitSpec, height: int, width: int, stride: int | None = None) -> tuple[int, int]:
    """Token grid of the (possibly strided) patch-embedding conv: ``1 + (size - p) // s`` (= size // p if s == p)."""
    p = spec.patch
    s = stride or p
    return 1 + (height - p) // s, 1 + (width - p) // s


def resample_pos_embed(
    pos_embed: torch.Tensor, spec: VitSpec, gh: int, gw: int, height: int, width: int
) -> torch.Tensor:
    """Positional table for a ``gh x gw`` grid: ``[1, 1 + gh*gw, D]`` (CLS row first).

    Mirrors ``interpolate_pos_encoding`` of the official repos (and dino-vit-features' strided variant):
    * skipped iff ``gh*gw == M*M`` and the *image* is square (``H == W``);
    * "offset": ``scale_factor=((gh + 0.1)/M, (gw + 0.1)/M)``, bicubic, align_corners=False, no antialias,
      recompute_scale_factor unset -- PyTorch then samples with step ``1/scale_factor``, not ``M/gh``;
    * "antialias": ``size=(gh, gw)``, bicubic, antialias=True, align_corners=False (DINOv2 register models).
    """
    M = spec.pos_grid
    n0 = pos_embed.shape[1] - 1
    assert n0 == M * M, (n0, M)
    if gh * gw == n0 and height == width:
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos = pos_embed[:, :1]
    grid = pos_embed[:, 1:].reshape(1, M, M, dim).permute(0, 3, 1, 2)
    if spec.pos_mode == "offset":
        out = F.interpolate(
            grid, scale_factor=(float(gh + 0.1) / M, float(gw + 0.1) / M), mode="bicubic", align_corners=False
        )
    else:
        out = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
    assert tuple(out.shape[-2:]) == (gh, gw), (tuple(out.shape), gh, gw)
    out = out.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)
    return torch.cat((cls_pos, out), dim=1)


def _ln(x, w, b, eps=LN_EPS):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps=eps)


def block_forward(W: dict, spec: VitSpec, i: int, x: torch.Tensor, ln_eps: float = LN_EPS, gelu: str = "none"):
    """One pre-norm block. Returns the new tokens and the per-head q/k/v [B,h,T,hd] and attention [B,h,T,T].

    ``ln_eps`` / ``gelu`` exist only so that make_fixtures.py can show how far *wrong* variants land.
    """
    b = f"blocks.{i}."
    B, T, D = x.shape
    h, hd = spec.heads, spec.head_dim

    y = _ln(x, W[b + "norm1.weight"], W[b + "norm1.bias"], ln_eps)
    qkv = F.linear(y, W[b + "attn.qkv.weight"], W[b + "attn.qkv.bias"])
    qkv = qkv.reshape(B, T, 3, h, hd).permute(2, 0, 3, 1, 4)  # [3, B, h, T, hd]
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * hd**-0.5).softmax(dim=-1)
    y = (attn @ v).transpose(1, 2).reshape(B, T, D)
    y = F.linear(y, W[b + "attn.proj.weight"], W[b + "attn.proj.bias"])
    if spec.layerscale:
        y = y * W[b + "ls1.gamma"]
    x = x + y

    y = _ln(x, W[b + "norm2.weight"], W[b + "norm2.bias"], ln_eps)
    if spec.ffn == "swiglu":
        x12 = F.linear(y, W[b + "mlp.w12.weight"], W[b + "mlp.w12.bias"])
        x1, x2 = x12.chunk(2, dim=-1)
        y = F.linear(F.silu(x1) * x2, W[b + "mlp.w3.weight"], W[b + "mlp.w3.bias"])
    else:
        y = F.gelu(F.linear(y, W[b + "mlp.fc1.weight"], W[b + "mlp.fc1.bias"]), approximate=gelu)  # erf GELU
        y = F.linear(y, W[b + "mlp.fc2.weight"], W[b + "mlp.fc2.bias"])
    if spec.layerscale:
        y = y * W[b + "ls2.gamma"]
    return x + y, q, k, v, attn


@torch.no_grad()
def forward(
    state_dict: dict,
    spec: VitSpec,
    image: torch.Tensor,
    stride: int | None = None,
    facet_layer: int = 1,
    dtype: torch.dtype = torch.float64,
    *,
    pos_fn=resample_pos_embed,
    ln_eps: float = LN_EPS,
    gelu: str = "none",
) -> dict:
    """Run the model on a ``[1, 3, H, W]`` image and return every quantity the fixtures store (batch dim dropped).

    Keys: ``cls`` [D], ``patch_tokens`` [N, D] (final-normed), ``tokens_norm`` [T, D] (all final-normed
    tokens), ``attn_last`` [h, T, T], ``tokens_l{L}`` [T, D] (block L output, not normed), ``q_l{L}``,
    ``k_l{L}``, ``v_l{L}`` [h, T, hd], ``attn_l{L}`` [h, T, T], ``pos_embed_resampled`` [1 + N, D], ``grid``.
    ``pos_fn``, ``ln_eps`` and ``gelu`` are diagnostic knobs (defaults = the official model).
    """
    assert image.ndim == 4 and image.shape[:2] == (1, 3)
    W = {k: v.to(dtype) for k, v in state_dict.items()}
    x = image.to(dtype)
    H, Wd = x.shape[-2:]
    p, R = spec.patch, spec.registers
    s = stride or p
    assert p % s == 0, "the stride must divide the patch size (dino-vit-features)"
    if spec.family == "dinov2" and s == p:
        assert H % p == 0 and Wd % p == 0, "DINOv2's PatchEmbed asserts divisible sizes"

    # Patch embedding: the conv weights are the checkpoint's; only the stride changes for overlapping patches.
    tok = F.conv2d(x, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=s)
    gh, gw = tok.shape[-2:]
    assert (gh, gw) == patch_grid(spec, H, Wd, s)
    tok = tok.flatten(2).transpose(1, 2)  # [1, N, D], row-major

    x = torch.cat((W["cls_token"], tok), dim=1)
    pos = pos_fn(W["pos_embed"], spec, gh, gw, H, Wd)
    x = x + pos
    if R:
        x = torch.cat((x[:, :1], W["register_tokens"], x[:, 1:]), dim=1)

    out = {"grid": (gh, gw), "pos_embed_resampled": pos[0]}
    for i in range(spec.depth):
        x, q, k, v, attn = block_forward(W, spec, i, x, ln_eps, gelu)
        if i == facet_layer:
            out[f"tokens_l{i}"] = x[0]
            out[f"q_l{i}"], out[f"k_l{i}"], out[f"v_l{i}"] = q[0], k[0], v[0]
            out[f"attn_l{i}"] = attn[0]
        if i == spec.depth - 1:
            out["attn_last"] = attn[0]
    xn = _ln(x, W["norm.weight"], W["norm.bias"], ln_eps)
    out["tokens_norm"] = xn[0]
    out["cls"] = xn[0, 0]
    out["patch_tokens"] = xn[0, 1 + R :]
    return out


# ------------------------------------------------------------------------------------------------------------
# Key-name conversions to the Hugging Face layouts (as stored on the Hub by the official conversion scripts)
# ------------------------------------------------------------------------------------------------------------


def to_hf(state_dict: dict, spec: VitSpec) -> "OrderedDict[str, torch.Tensor]":
    """Official names -> Hugging Face Hub names.

    DINO v1 -> ``ViTModel`` (``convert_dino_to_pytorch.py``, base_model=True, no pooler);
    DINOv2 -> ``Dinov2Model`` / ``Dinov2WithRegistersModel`` (``convert_dinov2*_to_hf.py``).
    These are the names of the files on the Hub (e.g. ``facebook/dino-vits16``, ``facebook/dinov2-small``);
    recent transformers versions rename them again internally when loading.
    """
    D = spec.dim
    sd = state_dict
    hf: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    hf["embeddings.cls_token"] = sd["cls_token"]
    if spec.family == "dinov2":
        hf["embeddings.mask_token"] = sd["mask_token"]
    hf["embeddings.position_embeddings"] = sd["pos_embed"]
    if spec.registers:
        hf["embeddings.register_tokens"] = sd["register_tokens"]
    hf["embeddings.patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"]
    hf["embeddings.patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    for i in range(spec.depth):
        b, o = f"blocks.{i}.", f"encoder.layer.{i}."
        n1, n2 = ("norm1", "norm2") if spec.family == "dinov2" else ("layernorm_before", "layernorm_after")
        hf[o + n1 + ".weight"] = sd[b + "norm1.weight"]
        hf[o + n1 + ".bias"] = sd[b + "norm1.bias"]
        for j, name in enumerate(("query", "key", "value")):  # qkv rows: Q | K | V
            hf[o + f"attention.attention.{name}.weight"] = sd[b + "attn.qkv.weight"][j * D : (j + 1) * D]
            hf[o + f"attention.attention.{name}.bias"] = sd[b + "attn.qkv.bias"][j * D : (j + 1) * D]
        hf[o + "attention.output.dense.weight"] = sd[b + "attn.proj.weight"]
        hf[o + "attention.output.dense.bias"] = sd[b + "attn.proj.bias"]
        if spec.layerscale:
            hf[o + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
        hf[o + n2 + ".weight"] = sd[b + "norm2.weight"]
        hf[o + n2 + ".bias"] = sd[b + "norm2.bias"]
        if spec.family == "dino":
            hf[o + "intermediate.dense.weight"] = sd[b + "mlp.fc1.weight"]
            hf[o + "intermediate.dense.bias"] = sd[b + "mlp.fc1.bias"]
            hf[o + "output.dense.weight"] = sd[b + "mlp.fc2.weight"]
            hf[o + "output.dense.bias"] = sd[b + "mlp.fc2.bias"]
        elif spec.ffn == "swiglu":
            hf[o + "mlp.weights_in.weight"] = sd[b + "mlp.w12.weight"]
            hf[o + "mlp.weights_in.bias"] = sd[b + "mlp.w12.bias"]
            hf[o + "mlp.weights_out.weight"] = sd[b + "mlp.w3.weight"]
            hf[o + "mlp.weights_out.bias"] = sd[b + "mlp.w3.bias"]
        else:
            hf[o + "mlp.fc1.weight"] = sd[b + "mlp.fc1.weight"]
            hf[o + "mlp.fc1.bias"] = sd[b + "mlp.fc1.bias"]
            hf[o + "mlp.fc2.weight"] = sd[b + "mlp.fc2.weight"]
            hf[o + "mlp.fc2.bias"] = sd[b + "mlp.fc2.bias"]
        if spec.layerscale:
            hf[o + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
    hf["layernorm.weight"] = sd["norm.weight"]
    hf["layernorm.bias"] = sd["norm.bias"]
    # Own, contiguous storage per tensor (q/k/v are row slices of qkv; safetensors refuses shared storage).
    return OrderedDict((k, v.clone().contiguous()) for k, v in hf.items())


def hf_image_size(spec: VitSpec) -> int:
    """``image_size`` for the HF config: the training size, i.e. the one with no positional resampling."""
    return spec.pos_grid * spec.patch


__all__ = [
    "LN_EPS",
    "VitSpec",
    "param_shapes",
    "random_state_dict",
    "patch_grid",
    "resample_pos_embed",
    "block_forward",
    "forward",
    "to_hf",
    "hf_image_size",
]
