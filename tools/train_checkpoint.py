"""DINO training checkpoints (``checkpoint.pth``, the layout of ``main_dino.py``) between dinoscope and PyTorch.

Two jobs:

* ``--check RUN_DIR``: reads the ``checkpoint.pth`` that ``dinoscope train`` wrote in ``RUN_DIR`` with
  ``torch.load(weights_only=True)`` and ``weights_only=False``, checks the keys, types and shapes of every entry,
  loads the student (prefix ``module.`` stripped) with ``strict=True`` into a timm ``VisionTransformer`` + the
  reference ``DINOHead`` and its AdamW ``state_dict`` into ``torch.optim.AdamW(get_params_groups(student))``
  (then takes one optimizer step), loads the teacher the way ``utils.load_pretrained_weights`` does (take
  ``teacher``, strip ``module.`` and ``backbone.``) into a timm ViT with ``strict=True`` once the head keys are
  dropped, and compares its values with ``RUN_DIR/teacher.safetensors``.
* ``--write DIR`` (default ``tests/fixtures/train``): trains the reference recipe of ``make_train_fixtures.py``
  (vit-nano: patch 8, 96 channels, 4 blocks, 3 heads; head 64 / 32 / 16; 2 global crops of 64 px and 2 local
  crops of 32 px, batch 4, 2 iterations per epoch) for 3 iterations and saves ``torch_checkpoint.pth`` with
  ``torch.save`` in the official layout plus dinoscope's resume entry, and ``torch_checkpoint_expected.safetensors``
  with some of its values under their official names (what ``tests/train_checkpoint.rs`` compares against).

Run: ``/opt/torchvenv/bin/python tools/train_checkpoint.py --check runs/nano`` or ``... --write tests/fixtures/train``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_train_fixtures import (  # noqa: E402
    DINOHead,
    DINOLoss,
    MultiCropWrapper,
    TinyVit,
    cancel_gradients_last_layer,
    clip_gradients,
    cosine_scheduler,
    get_params_groups,
    same_structure,
)
from reference_vit import VitSpec  # noqa: E402

warnings.filterwarnings("ignore", message=".*weight_norm.*")

NANO = VitSpec(family="dino", patch=8, dim=96, depth=4, heads=3, pos_grid=8, mlp_hidden=384)
HEAD = dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, nlayers=3, norm_last_layer=True)
TOP_KEYS = ["student", "teacher", "optimizer", "epoch", "args", "dino_loss", "dinoscope"]


class Student(nn.Module):
    """``MultiCropWrapper`` parameter names: ``backbone.*`` (a timm ViT) and ``head.*``."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head


def timm_vit(state: dict) -> nn.Module:
    import timm.models.vision_transformer as vt

    dim = state["pos_embed"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    heads = max(1, dim // 64) if dim % 64 == 0 else 3
    return vt.VisionTransformer(img_size=grid * patch, patch_size=patch, embed_dim=dim, depth=depth,
                                num_heads=heads, mlp_ratio=hidden / dim, qkv_bias=True, num_classes=0,
                                global_pool="token")


def check(run: Path) -> None:
    path = run / "checkpoint.pth"
    safe = torch.load(path, map_location="cpu", weights_only=True)
    full = torch.load(path, map_location="cpu", weights_only=False)
    assert list(safe) == TOP_KEYS and list(full) == TOP_KEYS, list(safe)
    for name in ["student", "teacher"]:
        assert type(safe[name]) is collections.OrderedDict, type(safe[name])
    assert type(safe["dino_loss"]) is collections.OrderedDict
    student, teacher = safe["student"], safe["teacher"]
    assert all(k.startswith(("module.backbone.", "module.head.")) for k in student), list(student)[:3]
    assert all(k.startswith(("backbone.", "head.")) for k in teacher), list(teacher)[:3]
    assert [k.removeprefix("module.") for k in student] == list(teacher), "same keys, same order"
    for k, v in teacher.items():
        assert v.dtype == torch.float32 and v.shape == student["module." + k].shape, k
    config = json.loads(safe["dinoscope"]["config"])
    head = {**HEAD, **config.get("head", {})}
    out_dim, bottleneck = head["out_dim"], head["bottleneck_dim"]
    assert teacher["head.last_layer.weight_g"].shape == (out_dim, 1)
    assert teacher["head.last_layer.weight_v"].shape == (out_dim, bottleneck)
    assert safe["dino_loss"]["center"].shape == (1, out_dim)
    assert isinstance(safe["epoch"], int) and isinstance(safe["dinoscope"]["next_step"], int)
    args = argparse.Namespace(**safe["args"])
    assert args.out_dim == out_dim and args.optimizer == "adamw", args

    # The student and its optimizer, as main_dino.py builds them.
    backbone_state = {k.removeprefix("module.backbone."): v for k, v in student.items() if ".backbone." in k}
    vit = timm_vit(backbone_state)
    dino_head = DINOHead(vit.embed_dim, out_dim, head["norm_last_layer"], head["nlayers"], head["hidden_dim"],
                         bottleneck)
    model = Student(vit, dino_head)
    model.load_state_dict({k.removeprefix("module."): v for k, v in student.items()}, strict=True)
    optimizer = torch.optim.AdamW(get_params_groups(model.named_parameters()))
    optimizer.load_state_dict(safe["optimizer"])
    with_state = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state:
                with_state += 1
                assert state["exp_avg"].shape == p.shape and state["exp_avg_sq"].shape == p.shape
                assert state["step"].ndim == 0 and float(state["step"]) >= 1
            p.grad = torch.ones_like(p)
    optimizer.step()
    groups = [len(g["params"]) for g in safe["optimizer"]["param_groups"]]
    assert safe["optimizer"]["param_groups"][1]["weight_decay"] == 0.0

    # The teacher backbone, as utils.load_pretrained_weights / visualize_attention.py take it.
    state = {k.replace("module.", "").replace("backbone.", ""): v for k, v in teacher.items()}
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    evaluated = timm_vit(state)
    evaluated.load_state_dict(state, strict=True)
    reference = load_file(str(run / "teacher.safetensors"))
    assert set(reference) == set(state), set(reference) ^ set(state)
    worst = max(float((reference[k] - state[k]).abs().max()) for k in state)
    assert worst == 0.0, worst
    with torch.no_grad():
        cls = evaluated(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(cls).all()
    print(f"{path}: torch.load(weights_only=True/False) ok; keys {TOP_KEYS}; student {len(student)} and teacher "
          f"{len(teacher)} tensors; AdamW groups {groups}, {with_state} parameters with state, load_state_dict + "
          f"one step ok; teacher backbone loads strictly into timm VisionTransformer({vit.embed_dim}-d, "
          f"{len(vit.blocks)} blocks) and equals teacher.safetensors exactly; epoch {safe['epoch']}, next step "
          f"{safe['dinoscope']['next_step']}")


CONFIG = {
    "arch": "vit-nano", "epochs": 2, "batch": 4, "seed": 3, "lr": 0.0005, "min_lr": 1e-6, "warmup_epochs": 1,
    "weight_decay": 0.04, "weight_decay_end": 0.4, "momentum_teacher": 0.996, "teacher_temp": 0.04,
    "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 0, "clip_grad": 3.0, "freeze_last_layer": 1,
    "drop_path": 0.0, "head": {k: HEAD[k] for k in ["out_dim", "hidden_dim", "bottleneck_dim"]},
    "augment": {"global_size": 64, "local_size": 32, "local_crops": 2},
    "synthetic": {"size": 72, "images": 8},
}
EXPECTED = ["backbone.blocks.0.attn.qkv.weight", "backbone.norm.bias", "head.mlp.0.weight",
            "head.last_layer.weight_v"]


def write(out: Path) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(505)
    names = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(NANO.depth):
        names += [f"blocks.{i}.{n}" for n in ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                              "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                              "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]]
    names += ["norm.weight", "norm.bias"]
    D, H = NANO.dim, NANO.mlp_hidden
    shapes = {"cls_token": (1, 1, D), "pos_embed": (1, 1 + NANO.pos_grid ** 2, D),
              "patch_embed.proj.weight": (D, 3, NANO.patch, NANO.patch)}
    for n in names:
        field = n.split(".", 2)[-1] if n.startswith("blocks.") else n
        shapes.setdefault(n, {"attn.qkv.weight": (3 * D, D), "attn.qkv.bias": (3 * D,), "attn.proj.weight": (D, D),
                              "mlp.fc1.weight": (H, D), "mlp.fc1.bias": (H,), "mlp.fc2.weight": (D, H)}
                          .get(field, (D,)))
    weights = {}
    for n in names:
        scale = 0.02 if n.endswith("weight") or n in ("cls_token", "pos_embed") else 0.0
        weights[n] = torch.randn(shapes[n], generator=g) * scale
        if "norm" in n and n.endswith("weight"):
            weights[n] = torch.ones(shapes[n])
    head_args = (D, HEAD["out_dim"], HEAD["norm_last_layer"], HEAD["nlayers"], HEAD["hidden_dim"],
                 HEAD["bottleneck_dim"])
    student = MultiCropWrapper(TinyVit(NANO, weights), DINOHead(*head_args))
    teacher = same_structure(student, head_args)
    for p in teacher.parameters():
        p.requires_grad = False

    c = CONFIG
    niter, ncrops, batch = 2, 2 + c["augment"]["local_crops"], c["batch"]
    lr_schedule = cosine_scheduler(c["lr"] * batch / 256, c["min_lr"], c["epochs"], niter, c["warmup_epochs"])
    wd_schedule = cosine_scheduler(c["weight_decay"], c["weight_decay_end"], c["epochs"], niter)
    momentum_schedule = cosine_scheduler(c["momentum_teacher"], 1, c["epochs"], niter)
    dino_loss = DINOLoss(HEAD["out_dim"], ncrops, c["warmup_teacher_temp"], c["teacher_temp"],
                         c["warmup_teacher_temp_epochs"], c["epochs"])
    optimizer = torch.optim.AdamW(get_params_groups(student.official()))
    steps = 3  # iterations 0, 1 (epoch 0, last layer frozen) and 2 (epoch 1)
    for it in range(steps):
        epoch = it // niter
        images = [torch.randn(batch, 3, 64, 64, generator=g) for _ in range(2)]
        images += [torch.randn(batch, 3, 32, 32, generator=g) for _ in range(ncrops - 2)]
        for k, group in enumerate(optimizer.param_groups):
            group["lr"] = lr_schedule[it]
            if k == 0:
                group["weight_decay"] = wd_schedule[it]
        loss = dino_loss(student(images), teacher(images[:2]), epoch)
        optimizer.zero_grad()
        loss.backward()
        clip_gradients(student, c["clip_grad"])
        cancel_gradients_last_layer(epoch, student, c["freeze_last_layer"])
        optimizer.step()
        with torch.no_grad():
            m = momentum_schedule[it]
            for q, k in zip(student.parameters(), teacher.parameters()):
                k.data.mul_(m).add_((1 - m) * q.detach().data)

    def state_dict(net, prefix):
        return collections.OrderedDict((prefix + n, p.detach().clone()) for n, p in net.official())

    save_dict = {
        "student": state_dict(student, "module."),
        "teacher": state_dict(teacher, ""),
        "optimizer": optimizer.state_dict(),
        "epoch": steps // niter,
        "args": argparse.Namespace(arch="vit_nano", patch_size=NANO.patch, out_dim=HEAD["out_dim"]),
        "dino_loss": dino_loss.state_dict(),
        "dinoscope": {"format": 2, "next_step": steps, "config": json.dumps(CONFIG)},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "torch_checkpoint.pth"
    torch.save(save_dict, path)
    params = dict(student.official())
    expected = {}
    for n in EXPECTED:
        state = optimizer.state[params[n]]
        expected[f"exp_avg.{n}"] = state["exp_avg"].clone()
        expected[f"step.{n}"] = state["step"].reshape(1).clone()
    expected["teacher.blocks.0.attn.qkv.weight"] = dict(teacher.official())["backbone.blocks.0.attn.qkv.weight"]
    expected["center"] = dino_loss.center.clone()
    save_file({k: v.detach().contiguous() for k, v in expected.items()},
              str(out / "torch_checkpoint_expected.safetensors"))
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {steps} iterations, loss {loss.item():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", type=Path, help="run directory of `dinoscope train` to verify")
    parser.add_argument("--write", type=Path, help="where to write the PyTorch-made checkpoint fixture")
    a = parser.parse_args()
    if a.check is None and a.write is None:
        a.write = Path(__file__).resolve().parent.parent / "tests/fixtures/train"
    if a.check is not None:
        check(a.check)
    if a.write is not None:
        write(a.write)


if __name__ == "__main__":
    main()
