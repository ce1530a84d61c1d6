"""DIFT and SD-DINO feature extraction in diffusers on PyTorch, one image, timed: the reference
side of tools/bench_sd_vs_diffusers.sh.

Follows the two references as written, on the networks of a diffusers folder
(tools/make_sd_fullsize_random.py) with its `context.safetensors` as the text embedding:

* DIFT (Tsingularity/dift, src/models/dift_sd.py `SDFeaturizer.forward` / `OneStepSDPipeline`):
  PIL resize to size x size, the image repeated to a batch of E, VAE-encoded as a batch
  (`latent_dist.sample()`), `add_noise` at t = 261, the UNet on the batch with an early exit after
  `up_blocks[1]`, the mean over the batch. The VAE decoder is dropped as DIFT does.
* SD-DINO (Junyi42/sd-dino `utils_correspondence.resize`, ODISE `FeatureExtractorBackbone.
  slide_forward` and `LdmExtractor.forward`): Lanczos letterbox to 960 on black, four 512 px
  windows at offsets 0 / 448, each: VAE posterior mean, `q_sample` at t = 100 with the noise of
  seed 42, the UNet up to layer 1 of up block 2 (taps = outputs of up_blocks[0].resnets[1],
  up_blocks[1].attentions[1], up_blocks[2].attentions[1]), overlaps averaged.

Early exits raise a private exception from a forward hook. Prints one `key=value` line per run:
load (every weight read from the memory-mapped files) and feature wall times, peak RSS
(getrusage), and on CUDA the peak allocated GPU memory.

    python tools/bench_sd_torch.py --model /tmp/sd21 --preset dift --image img.jpg --threads 2
"""

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from PIL import Image
from safetensors.torch import load_file

PRESETS = {
    "dift": dict(size=768, timestep=261, ensemble=8),
    "sd-dino": dict(size=960, timestep=100, ensemble=1),
}
WINDOW = 512


class _Done(Exception):
    """Raised by the hook on the last tap: the rest of the UNet is not needed."""


def tap_output(output):
    if isinstance(output, tuple):
        return output[0]
    return getattr(output, "sample", output)


def unet_to_taps(unet, latents, t, context, modules):
    """The outputs of `modules` (in forward order), stopping the UNet after the last one."""
    found = []

    def hook(module, inputs, output):
        found.append(tap_output(output))
        if len(found) == len(modules):
            raise _Done

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        unet(latents, t, encoder_hidden_states=context)
    except _Done:
        pass
    finally:
        for h in handles:
            h.remove()
    if len(found) != len(modules):
        raise RuntimeError(f"the UNet ran to the end with {len(found)} of {len(modules)} taps")
    return found


def scheduler():
    # SD 1.5 / 2.1's training schedule (both scheduler/ configs): only add_noise is used.
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )


def signed_unit(img, device):
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return ((x - 0.5) * 2).to(device)


def dift(unet, vae, img, context, size, timestep, ensemble, device):
    x = signed_unit(img.resize((size, size)), device).repeat(ensemble, 1, 1, 1)
    prompt_embeds = context.repeat(ensemble, 1, 1)
    latents = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor
    t = torch.tensor(timestep, dtype=torch.long, device=device)
    noise = torch.randn_like(latents)
    noisy = scheduler().add_noise(latents, noise, t)
    (ft,) = unet_to_taps(unet, noisy, t, prompt_embeds, [unet.up_blocks[1]])
    return {"up_block1": ft.mean(0, keepdim=True)}


def letterbox(img, size):
    """sd-dino `resize(img, size, resize=True, edge=False)`."""
    w, h = img.size
    canvas = np.zeros([size, size, 3], dtype=np.uint8)
    if h <= w:
        img = img.resize((size, int(np.around(size * h / w))), Image.Resampling.LANCZOS)
        width, height = img.size
        canvas[(width - height) // 2 : (width + height) // 2] = np.asarray(img)
    else:
        img = img.resize((int(np.around(size * w / h)), size), Image.Resampling.LANCZOS)
        width, height = img.size
        canvas[:, (height - width) // 2 : (height + width) // 2] = np.asarray(img)
    return canvas


def window_origins(size, crop):
    """mmseg / ODISE `slide_forward` crop starts along one axis (stride = crop)."""
    grids = -(-(size - crop) // crop) + 1
    return [max(min(i * crop + crop, size) - crop, 0) for i in range(grids)]


def sd_dino(unet, vae, img, context, size, timestep, ensemble, device):
    x = signed_unit(letterbox(img, size), device)
    crop = min(WINDOW, size)
    noise = torch.randn(1, 4, crop // 8, crop // 8, generator=torch.Generator().manual_seed(42)).to(device)
    t = torch.tensor(timestep, dtype=torch.long, device=device)
    modules = [unet.up_blocks[0].resnets[1], unet.up_blocks[1].attentions[1], unet.up_blocks[2].attentions[1]]
    sums, counts = {}, {}
    origins = window_origins(size, crop)
    for y in origins:
        for xo in origins:
            window = x[:, :, y : y + crop, xo : xo + crop]
            latent = vae.encode(window).latent_dist.mean * vae.config.scaling_factor
            noisy = scheduler().add_noise(latent, noise, t)
            for name, tap in zip(["s5", "s4", "s3"], unet_to_taps(unet, noisy, t, context, modules)):
                stride = crop // tap.shape[-1]
                if name not in sums:
                    cells = size // stride
                    sums[name] = torch.zeros(1, tap.shape[1], cells, cells, device=device)
                    counts[name] = torch.zeros(1, 1, cells, cells, device=device)
                r, c, n = y // stride, xo // stride, tap.shape[-1]
                sums[name][:, :, r : r + n, c : c + n] += tap
                counts[name][:, :, r : r + n, c : c + n] += 1
    return {name: sums[name] / counts[name] for name in sums}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int)
    parser.add_argument("--ensemble", type=int)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--context", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    device = torch.device(args.device)
    preset = dict(PRESETS[args.preset])
    if args.size:
        preset["size"] = args.size
    if args.ensemble:
        preset["ensemble"] = args.ensemble
    img = Image.open(args.image).convert("RGB")
    context = load_file(str(args.context or args.model / "context.safetensors"))["context"].to(device)
    print(
        f"# diffusers on torch {torch.__version__} ({args.device}, {torch.get_num_threads()} threads), "
        f"{args.preset} preset, size {preset['size']}, ensemble {preset['ensemble']}"
    )

    start = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(args.model / "unet").to(device).eval()
    vae = AutoencoderKL.from_pretrained(args.model / "vae").to(device).eval()
    if args.preset == "dift":
        vae.decoder = None
    # diffusers memory-maps the weights file: read every weight now, so that the load time holds
    # the reading and the feature time does not.
    for p in [*unet.parameters(), *vae.parameters()]:
        p.sum()
    if device.type == "cuda":
        torch.cuda.synchronize()
    load_s = time.perf_counter() - start

    run = {"dift": dift, "sd-dino": sd_dino}[args.preset]
    for i in range(max(args.runs, 1)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        taps = run(unet, vae, img, context, device=device, **preset)
        taps = {name: tap.cpu().numpy() for name, tap in taps.items()}
        features_s = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = ""
        if device.type == "cuda":
            gpu = f" gpu_peak_mib={torch.cuda.max_memory_allocated() / 2**20:.0f}"
        described = " ".join(
            f"{name}={a.shape[2]}x{a.shape[3]}x{a.shape[1]} mean_abs={np.abs(a).mean():.4f}"
            for name, a in taps.items()
        )
        times = f"load_s={load_s:.2f} features_s={features_s:.2f}"
        print(f"run={i} {times} peak_rss_mib={rss:.0f}{gpu} {described}")


if __name__ == "__main__":
    main()
