"""Tiny Stable Diffusion UNets and VAE with SD's exact structure, and their diffusers outputs.

Writes, under tests/fixtures/sd/:
  unet_v1/  SD 1.x flavour (1x1-conv proj_in/out, one head count for all levels), f32 weights
  unet_v2/  SD 2.1 flavour (Linear proj_in/out, upcast_attention, a head count per level),
            weights saved as the fp16 variant; its goldens come from the fp16-rounded weights in f32
  vae/      AutoencoderKL with current attention names (to_q/to_k/to_v/to_out.0)
  vae_old_names/  the same weights with the old names (query/key/value/proj_attn, 1x1-conv shaped)
and one golden.safetensors per model (inputs and outputs, f32).

Run: /work/venv-torch/bin/python tools/make_sd_unet_vae_fixtures.py  (deterministic; CPU only).
"""

import json
import os
import shutil

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sd")
SD_DOWN = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD_UP = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
TIMESTEPS = [0.0, 100.0, 261.0, 999.0]
CONTEXT_DIM = 8


def perturb(model, generator):
    """N(0, 0.02) on every parameter, so zero-initialised layers and norm affines are exercised."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)


def tiny_unet(v2):
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=SD_DOWN,
        up_block_types=SD_UP,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        norm_num_groups=4,
        norm_eps=1e-5,
        cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=(2, 4, 4, 4) if v2 else 2,
        use_linear_projection=v2,
        upcast_attention=v2,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def unet_taps(unet, latent, t, context):
    """Every tap the Rust UNet exposes, by forward hooks, plus the full output."""
    taps = {}

    def keep(name):
        def hook(_module, _inputs, output):
            if isinstance(output, tuple):
                output = output[0]
            if hasattr(output, "sample"):
                output = output.sample
            taps[name] = output.detach().clone()

        return hook

    handles = [unet.time_embedding.register_forward_hook(keep("time_embedding"))]
    for i, block in enumerate(unet.down_blocks):
        handles.append(block.register_forward_hook(keep(f"down.{i}")))
    handles.append(unet.mid_block.register_forward_hook(keep("mid")))
    for u, block in enumerate(unet.up_blocks):
        handles.append(block.register_forward_hook(keep(f"up.{u}")))
        layer1 = block.attentions[1] if hasattr(block, "attentions") else block.resnets[1]
        handles.append(layer1.register_forward_hook(keep(f"up.{u}.layer1")))
    with torch.no_grad():
        taps["out"] = unet(latent, t, encoder_hidden_states=context).sample
    for h in handles:
        h.remove()
    return taps


def make_unet(name, v2, generator):
    torch.manual_seed(1 if v2 else 0)
    unet = tiny_unet(v2).eval()
    perturb(unet, generator)
    folder = os.path.join(ROOT, name)
    shutil.rmtree(folder, ignore_errors=True)
    if v2:
        unet = unet.half()
        unet.save_pretrained(folder, safe_serialization=True, variant="fp16")
        unet = unet.float()
    else:
        unet.save_pretrained(folder, safe_serialization=True)

    golden = {}
    # One batch, one timestep per item.
    latent = torch.randn(4, 4, 16, 16, generator=generator)
    t = torch.tensor(TIMESTEPS)
    context = torch.randn(4, 77, CONTEXT_DIM, generator=generator)
    golden["square.latent"] = latent
    golden["square.t"] = t
    golden["square.context"] = context
    for k, v in unet_taps(unet, latent, t, context).items():
        golden[f"square.{k}"] = v
    # A non-square latent, batch 1.
    latent = torch.randn(1, 4, 16, 24, generator=generator)
    t = torch.tensor([261.0])
    context = torch.randn(1, 77, CONTEXT_DIM, generator=generator)
    golden["wide.latent"] = latent
    golden["wide.t"] = t
    golden["wide.context"] = context
    for k, v in unet_taps(unet, latent, t, context).items():
        golden[f"wide.{k}"] = v
    # A latent that is not a multiple of 8: the up path resizes to the skips' sizes (12-6-3-2).
    latent = torch.randn(1, 4, 12, 12, generator=generator)
    t = torch.tensor([100.0])
    context = torch.randn(1, 77, CONTEXT_DIM, generator=generator)
    golden["odd.latent"] = latent
    golden["odd.t"] = t
    golden["odd.context"] = context
    for k, v in unet_taps(unet, latent, t, context).items():
        golden[f"odd.{k}"] = v
    save_file({k: v.float().contiguous() for k, v in golden.items()}, os.path.join(folder, "golden.safetensors"))


def make_vae(generator):
    torch.manual_seed(2)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=2,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=32,
        scaling_factor=0.18215,
    ).eval()
    perturb(vae, generator)
    folder = os.path.join(ROOT, "vae")
    shutil.rmtree(folder, ignore_errors=True)
    vae.save_pretrained(folder, safe_serialization=True)

    x = torch.rand(2, 3, 32, 48, generator=generator) * 2 - 1
    eps = torch.randn(2, 4, 4, 6, generator=generator)
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
    golden = {
        "image": x,
        "mean": dist.mean,
        "logvar": dist.logvar,
        "latent_mean": dist.mean * 0.18215,
        "eps": eps,
        "latent_sample": (dist.mean + dist.std * eps) * 0.18215,
    }
    save_file({k: v.float().contiguous() for k, v in golden.items()}, os.path.join(folder, "golden.safetensors"))

    # The encoder's weights under the old attention names, q/k/v/out stored as 1x1 convolutions
    # (the decoder is left out: the main copy already shows it is skipped).
    old = os.path.join(ROOT, "vae_old_names")
    shutil.rmtree(old, ignore_errors=True)
    os.makedirs(old)
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    renamed = {}
    for key, value in state.items():
        if key.startswith(("decoder.", "post_quant_conv.")):
            continue
        for new, legacy in renames.items():
            marker = f".attentions.0.{new}."
            if marker in key:
                key = key.replace(marker, f".attentions.0.{legacy}.")
                if value.dim() == 2:
                    value = value[:, :, None, None]
        renamed[key] = value.contiguous()
    save_file(renamed, os.path.join(old, "diffusion_pytorch_model.safetensors"))
    shutil.copy(os.path.join(folder, "config.json"), os.path.join(old, "config.json"))


def main():
    generator = torch.Generator().manual_seed(1234)
    make_unet("unet_v1", False, generator)
    make_unet("unet_v2", True, generator)
    make_vae(generator)
    for name in ("unet_v1", "unet_v2", "vae", "vae_old_names"):
        with open(os.path.join(ROOT, name, "config.json")) as f:
            config = json.load(f)
        print(name, config["_class_name"], "ok")


if __name__ == "__main__":
    main()
