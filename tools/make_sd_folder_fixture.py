"""A text encoder that completes the tiny SD fixtures into whole diffusers folders.

The tiny UNets of tools/make_sd_unet_vae_fixtures.py attend to an 8-wide context, and the tokenizer
of tools/make_sd_text_fixtures.py gives SD's real special ids (<|startoftext|> 49406,
<|endoftext|> 49407). This writes a CLIP text encoder of that width over the full 49,408-token
vocabulary (fp16, 0.8 MB), so that `unet_v1`/`unet_v2` + `vae` + `tokenizer` + this encoder form an
SD 1.x / 2.x folder the command line and the app can open and embed prompts with:

  tests/fixtures/sd/text_tiny_sd/config.json, model.fp16.safetensors
  tests/fixtures/sd/text_tiny_sd_golden.safetensors: `empty.sd1` / `empty.sd2`, the empty prompt's
  last_hidden_state [1, 77, 8] with SD 1.x's pad (49407) and SD 2.x's (0), computed by transformers
  on the fp16-rounded weights in f32.

Run: /work/venv-torch/bin/python tools/make_sd_folder_fixture.py  (deterministic; CPU only).
"""

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sd"
WIDTH = 8  # the tiny UNets' cross_attention_dim
BOS, EOS = 49406, 49407


def empty_ids(pad: int) -> torch.Tensor:
    ids = torch.full((1, 77), pad, dtype=torch.long)
    ids[0, 0], ids[0, 1] = BOS, EOS
    return ids


def main() -> None:
    torch.manual_seed(7)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=WIDTH,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=WIDTH,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=1,
    )
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = OUT / "text_tiny_sd"
    shutil.rmtree(folder, ignore_errors=True)
    model = model.half()
    model.save_pretrained(folder, safe_serialization=True, variant="fp16")
    model = model.float()
    golden = {}
    with torch.no_grad():
        for name, pad in (("sd1", EOS), ("sd2", 0)):
            golden[f"empty.{name}"] = model(input_ids=empty_ids(pad)).last_hidden_state.contiguous()
    save_file(golden, OUT / "text_tiny_sd_golden.safetensors")
    print("written", folder, {k: v.abs().max().item() for k, v in golden.items()})


if __name__ == "__main__":
    main()
