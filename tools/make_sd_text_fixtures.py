"""Fixtures for Stable Diffusion's text side (tests/sd_text.rs): tiny CLIP text encoders, a small
CLIP BPE tokenizer with golden ids, and the noise schedule.

Run with the torch venv (transformers 5.24, diffusers 0.42.1, open_clip_torch installed without
dependencies for its bundled BPE list):

    /work/venv-torch/bin/python tools/make_sd_text_fixtures.py

Writes under tests/fixtures/sd/:

* ``text_quick_gelu/`` (f32 ``model.safetensors`` in SD's own layout: names under ``text_model.``
  and the int64 ``position_ids`` buffer of transformers 4 files) and ``text_gelu/``
  (``model.fp16.safetensors`` as transformers 5 saves it, without the prefix): ``CLIPTextModel``s
  with vocab 1000, hidden 32, MLP 64, 3 layers, 4 heads, 77 positions, every parameter moved by
  N(0, 0.02) noise so biases and norm affines are exercised.
* ``text_golden.safetensors``: for each model, ids ``[2, 77]`` (stored as f32) in SD's patterns
  (BOS, EOS, then EOS padding as SD 1.x or id-0 padding as SD 2.x, mapped into the tiny vocab as
  998 / 999) and ``last_hidden_state`` computed in f32 (from the fp16-rounded weights for the fp16
  file).
* ``tokenizer/``: vocab.json + merges.txt made of the 512 byte-level units, the first 3000 merges
  of CLIP's BPE list and the two special tokens at their real ids 49406 / 49407 (so every id equals
  the real CLIP tokenizer's), with SD 1.5's tokenizer_config.json / special_tokens_map.json.
* ``tokenizer_golden.json``: ``transformers.CLIPTokenizer`` ids (max_length 77, truncation,
  padding, as diffusers calls it) for each prompt, for SD 1.x's pad token and for SD 2.x's (`!`).
* ``schedule_golden.safetensors``: ``alphas_cumprod`` of diffusers' ``DDIMScheduler`` (scaled_linear,
  0.00085 -> 0.012, 1000 steps) and ``add_noise`` results with injected noise.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sd"
MERGES = 3000

PROMPTS = [
    "",
    "a photo of a cat",
    "A Photo Of A CAT",
    "a photo of a pottedplant.",
    "hello!",
    "Hello,  World!!",
    "   leading and trailing   ",
    "tabs\tand\nnewlines\r\nhere",
    "it's a dog's life",
    "don't stop, we're sure they've gone; i'm sure you'll see he'd go",
    "3 cats and 42 dogs in 2023",
    "café crème brûlée",
    "cafe\u0301 composed by NFC",
    "naïve Zürich ÉCOLE",
    "emoji 🐱🐶 party 🎉",
    "日本語のテキスト",
    "Σίσυφος ΟΔΟΣ İstanbul",
    "a photo of a <|endoftext|> cat",
    "x = (a+b)*c; y_z @ #tag $5 100%",
    "   ",
    "a very " * 50 + "long prompt past seventy seven tokens",
]


def bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP's printable stand-ins for the 256 byte values, in CLIP's vocabulary order: the
    printable bytes first (so `!` is id 0), then the others mapped past U+0100."""
    order = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = order[:]
    extra = 0
    for b in range(256):
        if b not in order:
            order.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def make_tokenizer() -> Path:
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None and spec.origin is not None, "pip install --no-deps open_clip_torch"
    bpe = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 1 + MERGES]]
    units = bytes_to_unicode()
    tokens = units + [u + "</w>" for u in units] + ["".join(m) for m in merges]
    vocab = {t: i for i, t in enumerate(tokens)}
    vocab["<|startoftext|>"] = 49406
    vocab["<|endoftext|>"] = 49407

    folder = OUT / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    special = lambda content: {  # noqa: E731
        "content": content,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }
    # As in SD 1.5's tokenizer folder.
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": special("<|startoftext|>"),
                "eos_token": special("<|endoftext|>"),
                "pad_token": "<|endoftext|>",
                "unk_token": special("<|endoftext|>"),
            },
            indent=2,
        )
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "bos_token": {"__type": "AddedToken", **special("<|startoftext|>")},
                "do_lower_case": True,
                "eos_token": {"__type": "AddedToken", **special("<|endoftext|>")},
                "errors": "replace",
                "model_max_length": 77,
                "pad_token": "<|endoftext|>",
                "tokenizer_class": "CLIPTokenizer",
                "unk_token": {"__type": "AddedToken", **special("<|endoftext|>")},
            },
            indent=2,
        )
    )
    return folder


def sd2_variant(folder: Path, into: Path) -> Path:
    """The same vocabulary with SD 2.x's pad token `!`, as the Rust test builds it."""
    shutil.copytree(folder, into)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        config = json.loads((into / name).read_text())
        config["pad_token"] = "!"
        (into / name).write_text(json.dumps(config, indent=2))
    return into


def tokenizer_golden(folder: Path) -> None:
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for flavour, path in (("sd1", folder), ("sd2", sd2_variant(folder, Path(tmp) / "t"))):
            tokenizer = CLIPTokenizer.from_pretrained(path)
            golden[flavour] = [
                {
                    "prompt": prompt,
                    # As diffusers' StableDiffusionPipeline.encode_prompt calls it.
                    "ids": tokenizer(
                        prompt,
                        padding="max_length",
                        max_length=tokenizer.model_max_length,
                        truncation=True,
                    ).input_ids,
                }
                for prompt in PROMPTS
            ]
    assert golden["sd1"][0]["ids"] == [49406, 49407] + [49407] * 75
    assert golden["sd2"][0]["ids"] == [49406, 49407] + [0] * 75
    (OUT / "tokenizer_golden.json").write_text(
        json.dumps(golden, ensure_ascii=False, indent=1), encoding="utf-8"
    )


def tiny_text_model(act: str, seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        layer_norm_eps=1e-5,
        projection_dim=32,
        bos_token_id=998,
        eos_token_id=999,
        pad_token_id=1,
    )
    model = CLIPTextModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def text_ids(seed: int) -> torch.Tensor:
    """SD's id patterns in the tiny vocab: BOS 998, EOS 999; row 0 pads with EOS (SD 1.x), row 1
    with 0 (SD 2.x)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(2, 77, dtype=torch.long)
    for row, (length, pad) in enumerate(((9, 999), (23, 0))):
        ids[row, 0] = 998
        ids[row, 1 : 1 + length] = torch.randint(1, 998, (length,), generator=g)
        ids[row, 1 + length] = 999
        ids[row, 2 + length :] = pad
    return ids


def make_text_models() -> None:
    golden = {}
    for act, seed, fp16 in (("quick_gelu", 1, False), ("gelu", 2, True)):
        model = tiny_text_model(act, seed)
        folder = OUT / f"text_{act}"
        shutil.rmtree(folder, ignore_errors=True)
        if fp16:
            model = model.half()
            model.save_pretrained(folder, safe_serialization=True, variant="fp16")
            model = model.float()  # the reference runs on the fp16-rounded weights, in f32
        else:
            model.save_pretrained(folder, safe_serialization=True)
            # As SD's own files (transformers 4): names under `text_model.` (transformers 5 saves
            # them without it, as in text_gelu/), and the int64 position_ids buffer, to be ignored.
            weights = folder / "model.safetensors"
            state = {f"text_model.{k}": v for k, v in load_file(weights).items()}
            state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
            save_file(state, weights, metadata={"format": "pt"})
        ids = text_ids(seed)
        with torch.no_grad():
            out = model(input_ids=ids).last_hidden_state
        golden[f"{act}.ids"] = ids.float()
        golden[f"{act}.last_hidden_state"] = out.float().contiguous()
        print(act, "max|ref|", out.abs().max().item())
    save_file(golden, OUT / "text_golden.safetensors")


def make_schedule() -> None:
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
    )
    g = torch.Generator().manual_seed(7)
    z = torch.randn(2, 4, 8, 8, generator=g)
    eps = torch.randn(2, 4, 8, 8, generator=g)
    golden = {
        "alphas_cumprod": scheduler.alphas_cumprod.float().contiguous(),
        "z": z,
        "eps": eps,
    }
    for t in (0, 100, 261, 999):
        golden[f"noisy_t{t}"] = scheduler.add_noise(z, eps, torch.tensor([t, t])).contiguous()
    save_file(golden, OUT / "schedule_golden.safetensors")
    for t in (0, 50, 100, 261, 500, 999):
        print(f"alpha_bar[{t}] = {scheduler.alphas_cumprod[t].item():.6f}")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tokenizer_golden(make_tokenizer())
    make_text_models()
    make_schedule()


if __name__ == "__main__":
    main()
