"""End-to-end goldens of the two SD feature recipes on the tiny fixture models.

Needs the tiny models of tools/make_sd_unet_vae_fixtures.py (tests/fixtures/sd/unet_v1, unet_v2,
vae). Writes tests/fixtures/sd/pipeline_golden.safetensors:

DIFT (Tsingularity/dift `SDFeaturizer.forward`), on the SD 2.1-flavoured UNet: a 128 x 128
procedural image (already at the input size, so no resampling), posterior mean x 0.18215, t = 261,
ensemble of 2 with injected noise `dift_noise` [2, 4, 16, 16], output of up_blocks[1] averaged:
`dift_features` [1, C, 8, 8].

SD-DINO (Junyi42/sd-dino through ODISE's `slide_forward` and `LdmExtractor`), on the SD 1.x-
flavoured UNet: a 960 x 960 procedural image, 512 px crops at 0 and 448 on both axes, each crop's
posterior mean x 0.18215 noised by q_sample at t = 100 (LDM linear schedule in float64, as ODISE
computes it) with the fixed noise `sd_dino_noise` [1, 4, 64, 64], taps s5 / s4 / s3 (outputs of
up_blocks[0].resnets[1], up_blocks[1].attentions[1], up_blocks[2].attentions[1]), written at
offset / stride and overlaps averaged: `sd_dino_s5` [1, C, 15, 15], `sd_dino_s4` [1, C, 30, 30],
`sd_dino_s3` [1, C, 60, 60].

Both use the text context `context` [1, 77, 8] (the tiny UNets' cross-attention width).
Images: pixel (x, y, c) = (3x + 5y + 70c + (x * y) mod 17) mod 256, computed the same way in the tests.

Run: /work/venv-torch/bin/python tools/make_sd_pipeline_fixtures.py  (deterministic; CPU only).
"""

import os

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "sd")
SCALE = 0.18215


def procedural(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.int64)
    channels = [(3 * x + 5 * y + 70 * c + (x * y) % 17) % 256 for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def to_signed_unit(rgb):
    x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)
    return ((x - 0.5) * 2).unsqueeze(0)


def latent_mean(vae, x):
    return vae.encode(x).latent_dist.mean * SCALE


def hooked(unet, modules):
    out = {}
    handles = []
    for name, module in modules.items():
        def hook(_m, _i, o, name=name):
            out[name] = o[0] if isinstance(o, tuple) else o
            out[name] = out[name].sample if hasattr(out[name], "sample") else out[name]
        handles.append(module.register_forward_hook(hook))
    return out, handles


@torch.no_grad()
def dift(unet, vae, context, generator):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    x = to_signed_unit(procedural(128))
    latent = latent_mean(vae, x)
    noise = torch.randn((2, *latent.shape[1:]), generator=generator)
    t = torch.tensor(261)
    noisy = scheduler.add_noise(latent.repeat(2, 1, 1, 1), noise, t)
    out, handles = hooked(unet, {"up1": unet.up_blocks[1]})
    unet(noisy, t, encoder_hidden_states=context.repeat(2, 1, 1))
    for h in handles:
        h.remove()
    return noise, out["up1"].mean(dim=0, keepdim=True)


@torch.no_grad()
def sd_dino(unet, vae, context, generator):
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    t = 100
    sqrt_a = torch.tensor(np.sqrt(alphas_cumprod), dtype=torch.float32)[t]
    sqrt_1ma = torch.tensor(np.sqrt(1.0 - alphas_cumprod), dtype=torch.float32)[t]
    noise = torch.randn((1, 4, 64, 64), generator=generator)
    image = to_signed_unit(procedural(960))
    taps = {"s5": 64, "s4": 32, "s3": 16}
    modules = {
        "s5": unet.up_blocks[0].resnets[1],
        "s4": unet.up_blocks[1].attentions[1],
        "s3": unet.up_blocks[2].attentions[1],
    }
    sums, counts = {}, {}
    for y0 in (0, 448):
        for x0 in (0, 448):
            crop = image[:, :, y0 : y0 + 512, x0 : x0 + 512]
            latent = latent_mean(vae, crop)
            noisy = sqrt_a * latent + sqrt_1ma * noise
            out, handles = hooked(unet, modules)
            unet(noisy, torch.tensor(t), encoder_hidden_states=context)
            for h in handles:
                h.remove()
            for name, stride in taps.items():
                f = out[name]
                if name not in sums:
                    sums[name] = torch.zeros((1, f.shape[1], 960 // stride, 960 // stride))
                    counts[name] = torch.zeros_like(sums[name])
                ky, kx = y0 // stride, x0 // stride
                sums[name][:, :, ky : ky + f.shape[2], kx : kx + f.shape[3]] += f
                counts[name][:, :, ky : ky + f.shape[2], kx : kx + f.shape[3]] += 1
    return noise, {name: sums[name] / counts[name] for name in taps}


def main():
    generator = torch.Generator().manual_seed(2023)
    vae = AutoencoderKL.from_pretrained(os.path.join(ROOT, "vae")).eval()
    unet_v1 = UNet2DConditionModel.from_pretrained(os.path.join(ROOT, "unet_v1")).eval()
    unet_v2 = UNet2DConditionModel.from_pretrained(
        os.path.join(ROOT, "unet_v2"), variant="fp16", torch_dtype=torch.float32
    ).eval()
    context = torch.randn((1, 77, unet_v1.config.cross_attention_dim), generator=generator)
    dift_noise, dift_features = dift(unet_v2, vae, context, generator)
    sd_dino_noise, sd_dino_taps = sd_dino(unet_v1, vae, context, generator)
    tensors = {
        "context": context,
        "dift_noise": dift_noise,
        "dift_features": dift_features,
        "sd_dino_noise": sd_dino_noise,
    }
    tensors |= {f"sd_dino_{k}": v for k, v in sd_dino_taps.items()}
    path = os.path.join(ROOT, "pipeline_golden.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    for k, v in tensors.items():
        print(k, tuple(v.shape), float(v.abs().max()))


if __name__ == "__main__":
    main()
