"""Full-size Stable Diffusion 1.5 / 2.1 (768-v) networks with random weights, for benchmarks.

Writes a diffusers folder: unet/ and vae/ (config.json + diffusion_pytorch_model.safetensors,
float32), built with diffusers' own constructors and default initialisation from the published
configs (runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1 unet/ and vae/
config.json), plus context.safetensors: one random [1, 77, 768|1024] text embedding ("context")
that both benchmark sides use in place of a text encoder, which this folder does not have.

    python tools/make_sd_fullsize_random.py --out /tmp/sd15-random --version sd15

About 3.4 GB (UNet) + 0.33 GB (VAE) per folder; write it outside the repository.
"""

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file

UNET_COMMON = dict(
    act_fn="silu",
    block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False,
    down_block_types=[
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=0,
    in_channels=4,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-5,
    norm_num_groups=32,
    out_channels=4,
    up_block_types=[
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
)

UNET = {
    "sd15": dict(UNET_COMMON, attention_head_dim=8, cross_attention_dim=768, sample_size=64),
    "sd21": dict(
        UNET_COMMON,
        attention_head_dim=[5, 10, 20, 20],
        cross_attention_dim=1024,
        sample_size=96,
        upcast_attention=True,
        use_linear_projection=True,
    ),
}

VAE = dict(
    act_fn="silu",
    block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4,
    in_channels=3,
    latent_channels=4,
    layers_per_block=2,
    norm_num_groups=32,
    out_channels=3,
    up_block_types=["UpDecoderBlock2D"] * 4,
    scaling_factor=0.18215,
)

VAE_SAMPLE_SIZE = {"sd15": 512, "sd21": 768}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", choices=sorted(UNET), required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    unet = UNet2DConditionModel(**UNET[args.version])
    unet.save_pretrained(args.out / "unet", safe_serialization=True)
    params = sum(p.numel() for p in unet.parameters())
    width = unet.config.cross_attention_dim
    del unet

    vae = AutoencoderKL(**VAE, sample_size=VAE_SAMPLE_SIZE[args.version])
    vae.save_pretrained(args.out / "vae", safe_serialization=True)
    del vae

    context = torch.randn(1, 77, width)
    save_file({"context": context.contiguous()}, str(args.out / "context.safetensors"))
    print(f"{args.out}: {args.version} UNet ({params / 1e6:.1f} M parameters), VAE, context [1, 77, {width}]")


if __name__ == "__main__":
    main()
