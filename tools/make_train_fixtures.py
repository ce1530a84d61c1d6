"""Reference outputs for the DINO training library (``src/train``), written to ``tests/fixtures/train``.

Everything here re-states facebookresearch/dino @ 7c446df5 (``main_dino.py``, ``utils.py``,
``vision_transformer.py``) on fixed, seeded inputs:

* ``schedules.safetensors``: ``utils.cosine_scheduler`` and the ``DINOLoss`` teacher-temperature schedule (float64);
* ``head.safetensors``: ``DINOHead`` forward (3-layer and 1-layer MLP, with and without ``norm_last_layer``);
* ``loss.safetensors``: two consecutive ``DINOLoss`` calls (centering, sharpening, skipped same-view pairs,
  center EMA applied after the loss);
* ``ema.safetensors``: one EMA teacher update over backbone + head;
* ``step.safetensors``: three full ``train_one_epoch`` iterations of a tiny ViT + head (multi-crop forward,
  loss, backward, per-parameter clipping, last-layer freezing, two-group AdamW with scheduled lr/wd, EMA).

Weights are drawn "loud" (larger than the official init) so that every mistake moves the outputs well above
the test tolerances. Run: ``/opt/torchvenv/bin/python tools/make_train_fixtures.py [--out tests/fixtures/train]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_vit import VitSpec, _ln, block_forward, resample_pos_embed  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore", message=".*weight_norm.*")

# ------------------------------------------------------------------------------------------------------------
# utils.py / main_dino.py, verbatim semantics
# ------------------------------------------------------------------------------------------------------------


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup_schedule, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def teacher_temp_schedule(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs):
    return np.concatenate(
        (
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp,
        )
    )


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, norm_last_layer=True, nlayers=3, hidden_dim=2048, bottleneck_dim=256):
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


class DINOLoss(nn.Module):
    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs,
                 student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = teacher_temp_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs
        )

    def forward(self, student_output, teacher_output, epoch):
        student_out = student_output / self.student_temp
        student_out = student_out.chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss = 0
        n_loss_terms = 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
        batch_center = batch_center / len(teacher_output)  # world size 1
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


class TinyVit(nn.Module):
    """DINO ``VisionTransformer`` (drop_path 0) with official parameter names; forward = final-normed CLS."""

    def __init__(self, spec: VitSpec, weights: dict):
        super().__init__()
        self.spec = spec
        self.names = list(weights)
        self.params = nn.ParameterList([nn.Parameter(weights[n].clone()) for n in self.names])

    def named_official(self):
        return list(zip(self.names, self.params))

    def forward(self, x):
        W = dict(self.named_official())
        B, _, H, Wd = x.shape
        tok = F.conv2d(x, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=self.spec.patch)
        gh, gw = tok.shape[-2:]
        tok = tok.flatten(2).transpose(1, 2)
        x = torch.cat((W["cls_token"].expand(B, -1, -1), tok), dim=1)
        x = x + resample_pos_embed(W["pos_embed"], self.spec, gh, gw, H, Wd)
        for i in range(self.spec.depth):
            x = block_forward(W, self.spec, i, x)[0]
        return _ln(x, W["norm.weight"], W["norm.bias"])[:, 0]


class MultiCropWrapper(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        idx_crops = torch.cumsum(
            torch.unique_consecutive(torch.tensor([inp.shape[-1] for inp in x]), return_counts=True)[1], 0
        )
        start_idx, output = 0, torch.empty(0)
        for end_idx in idx_crops:
            _out = self.backbone(torch.cat(x[start_idx:end_idx]))
            output = torch.cat((output, _out))
            start_idx = end_idx
        return self.head(output)

    def official(self):
        """``(name, parameter)`` in ``parameters()`` order, official names (``backbone.*``, ``head.*``)."""
        out = [(f"backbone.{n}", p) for n, p in self.backbone.named_official()]
        out += [(f"head.{n}", p) for n, p in self.head.named_parameters()]
        assert [id(p) for _, p in out] == [id(p) for p in self.parameters()]
        return out


def same_structure(net: MultiCropWrapper, head_args) -> MultiCropWrapper:
    """A second network with ``net``'s weights (``main_dino.py``: ``teacher.load_state_dict(student.state_dict())``;
    a weight-normalised module cannot be deep-copied)."""
    backbone = TinyVit(net.backbone.spec, {n: p.detach() for n, p in net.backbone.named_official()})
    other = MultiCropWrapper(backbone, DINOHead(*head_args))
    other.load_state_dict(net.state_dict())
    return other


def get_params_groups(named):
    regularized, not_regularized = [], []
    for name, param in named:
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


def clip_gradients(model, clip):
    for p in model.parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def cancel_gradients_last_layer(epoch, model, freeze_last_layer):
    if epoch >= freeze_last_layer:
        return
    for n, p in model.named_parameters():
        if "last_layer" in n:
            p.grad = None


# ------------------------------------------------------------------------------------------------------------
# Fixture helpers
# ------------------------------------------------------------------------------------------------------------


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape, g, scale=1.0):
    return torch.randn(shape, generator=g, dtype=torch.float32) * scale


def loud_vit_weights(spec: VitSpec, g) -> dict:
    """Official names and shapes, loud random values (LayerNorm weights around 1)."""
    D, p, M, Hf = spec.dim, spec.patch, spec.pos_grid, spec.mlp_hidden
    w = {
        "cls_token": randn((1, 1, D), g, 0.5),
        "pos_embed": randn((1, 1 + M * M, D), g, 0.5),
        "patch_embed.proj.weight": randn((D, 3, p, p), g, 0.2),
        "patch_embed.proj.bias": randn((D,), g, 0.1),
    }
    for i in range(spec.depth):
        b = f"blocks.{i}."
        w[b + "norm1.weight"] = 1 + randn((D,), g, 0.2)
        w[b + "norm1.bias"] = randn((D,), g, 0.1)
        w[b + "attn.qkv.weight"] = randn((3 * D, D), g, 0.2)
        w[b + "attn.qkv.bias"] = randn((3 * D,), g, 0.1)
        w[b + "attn.proj.weight"] = randn((D, D), g, 0.2)
        w[b + "attn.proj.bias"] = randn((D,), g, 0.1)
        w[b + "norm2.weight"] = 1 + randn((D,), g, 0.2)
        w[b + "norm2.bias"] = randn((D,), g, 0.1)
        w[b + "mlp.fc1.weight"] = randn((Hf, D), g, 0.2)
        w[b + "mlp.fc1.bias"] = randn((Hf,), g, 0.1)
        w[b + "mlp.fc2.weight"] = randn((D, Hf), g, 0.2)
        w[b + "mlp.fc2.bias"] = randn((D,), g, 0.1)
    w["norm.weight"] = 1 + randn((D,), g, 0.2)
    w["norm.bias"] = randn((D,), g, 0.1)
    return w


def loud_head(g, in_dim, out_dim, nlayers, hidden, bottleneck, norm_last_layer) -> DINOHead:
    head = DINOHead(in_dim, out_dim, norm_last_layer, nlayers, hidden, bottleneck)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name == "last_layer.weight_g":
                if not norm_last_layer:
                    p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(randn(p.shape, g, 0.1))
            else:
                p.copy_(randn(p.shape, g, 0.3))
    return head


def head_tensors(head: DINOHead, prefix: str = "") -> dict:
    return {prefix + n: p.detach().clone() for n, p in head.named_parameters()}


def write(path: Path, tensors: dict) -> None:
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path))
    print(f"{path.name}: {len(tensors)} tensors, {path.stat().st_size / 1024:.0f} KiB")


def f64(values) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------------------

COSINE_CASES = [
    # base, final, epochs, niter_per_ep, warmup_epochs, start_warmup_value
    (0.0005 * 256 / 256, 1e-6, 5, 7, 2, 0.0),  # lr
    (0.04, 0.4, 4, 5, 0, 0.0),  # weight decay
    (0.996, 1.0, 3, 4, 0, 0.0),  # teacher momentum
    (0.1, 0.01, 3, 2, 3, 0.05),  # warm-up only (empty cosine part)
    (1.0, 0.0, 2, 1, 1, 0.2),  # single warm-up iteration: linspace(start, base, 1) = [start]
]
TEMP_CASES = [
    # warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs
    (0.04, 0.07, 30, 100),
    (0.04, 0.04, 0, 10),
    (0.04, 0.07, 1, 3),
    (0.03, 0.07, 5, 5),
]


def schedules(out: Path) -> None:
    t = {}
    for i, args in enumerate(COSINE_CASES):
        t[f"cosine.{i}.args"] = f64(args)
        t[f"cosine.{i}.values"] = f64(cosine_scheduler(*args))
    for i, args in enumerate(TEMP_CASES):
        t[f"teacher_temp.{i}.args"] = f64(args)
        t[f"teacher_temp.{i}.values"] = f64(teacher_temp_schedule(*args))
    write(out / "schedules.safetensors", t)


HEAD_CASES = {
    # name: (in, out, nlayers, hidden, bottleneck, norm_last_layer)
    "nl3_norm": (32, 64, 3, 48, 16, True),
    "nl3_free": (32, 64, 3, 48, 16, False),
    "nl1_norm": (24, 40, 1, 0, 12, True),
    "nl4_free": (16, 20, 4, 24, 8, False),
}


def heads(out: Path) -> None:
    g = gen(101)
    t = {}
    for name, (i, o, nl, hid, bn, norm) in HEAD_CASES.items():
        head = loud_head(g, i, o, nl, hid, bn, norm)
        x = randn((5, i), g)
        with torch.no_grad():
            y = head(x)
        t[f"{name}.args"] = torch.tensor([i, o, nl, hid, bn, int(norm)], dtype=torch.float32)
        t.update(head_tensors(head, f"{name}.param."))
        t[f"{name}.input"] = x
        t[f"{name}.output"] = y
    write(out / "head.safetensors", t)


def loss(out: Path) -> None:
    g = gen(202)
    ncrops, B, K = 5, 3, 64
    args = (0.04, 0.07, 3, 6)  # teacher-temperature schedule
    epochs = (1, 4)  # temperatures 0.055 and 0.07
    dino_loss = DINOLoss(K, ncrops, *args)
    dino_loss.center = randn((1, K), g, 0.5)
    t = {
        "args": torch.tensor([ncrops, *args, *epochs], dtype=torch.float32),
        "center0": dino_loss.center.clone(),
    }
    for call, epoch in enumerate(epochs, start=1):
        s = randn((ncrops * B, K), g, 2.0)
        te = randn((2 * B, K), g, 0.3) + 0.5 * t["center0"]
        value = dino_loss(s, te, epoch)
        t[f"student{call}"] = s
        t[f"teacher{call}"] = te
        t[f"loss{call}"] = value.reshape(1)
        t[f"center{call}"] = dino_loss.center.clone()
    write(out / "loss.safetensors", t)


EMA_SPEC = VitSpec(family="dino", patch=4, dim=16, depth=1, heads=2, pos_grid=2, mlp_hidden=32)
EMA_HEAD = (16, 24, 3, 24, 8, True)  # in, out, nlayers, hidden, bottleneck, norm_last_layer
EMA_MOMENTUM = 0.75


def ema(out: Path) -> None:
    g = gen(303)
    i, o, nl, hid, bn, norm = EMA_HEAD
    student = MultiCropWrapper(TinyVit(EMA_SPEC, loud_vit_weights(EMA_SPEC, g)), loud_head(g, i, o, nl, hid, bn, norm))
    teacher = MultiCropWrapper(TinyVit(EMA_SPEC, loud_vit_weights(EMA_SPEC, g)), loud_head(g, i, o, nl, hid, bn, norm))
    t = {"momentum": torch.tensor([EMA_MOMENTUM], dtype=torch.float64)}
    t.update({f"student.{n}": p.detach().clone() for n, p in student.official()})
    t.update({f"teacher.{n}": p.detach().clone() for n, p in teacher.official()})
    with torch.no_grad():
        m = EMA_MOMENTUM
        for param_q, param_k in zip(student.parameters(), teacher.parameters()):
            param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
    t.update({f"expected.{n}": p.detach().clone() for n, p in teacher.official()})
    write(out / "ema.safetensors", t)


STEP_SPEC = VitSpec(family="dino", patch=8, dim=32, depth=2, heads=2, pos_grid=4, mlp_hidden=64)
STEP_HEAD = (32, 64, 3, 48, 16, True)
STEP = {
    "batch": 2,
    "global_size": 32,  # 4 x 4 patches: the stored positional table
    "local_size": 16,  # 2 x 2 patches: bicubic-resampled table
    "local_crops": 2,
    "epochs": 2,
    "niter_per_ep": 2,
    "steps": 3,  # iterations 0, 1 (epoch 0, last layer frozen) and 2 (epoch 1)
    "lr": 0.01,
    "min_lr": 1e-3,
    "warmup_epochs": 1,
    "weight_decay": 0.3,
    "weight_decay_end": 0.6,
    "momentum_teacher": 0.8,
    "warmup_teacher_temp": 0.04,
    "teacher_temp": 0.07,
    "warmup_teacher_temp_epochs": 1,
    "freeze_last_layer": 1,
    "clip_grad": 0.0,  # set below: between the smallest and the largest gradient norm of the first step
}


def step(out: Path) -> None:
    g = gen(404)
    c = dict(STEP)
    i, o, nl, hid, bn, norm = STEP_HEAD
    student = MultiCropWrapper(TinyVit(STEP_SPEC, loud_vit_weights(STEP_SPEC, g)), loud_head(g, i, o, nl, hid, bn, norm))
    head_args = (i, o, norm, nl, hid, bn)
    teacher = same_structure(student, head_args)
    for p in teacher.parameters():
        p.requires_grad = False
    t = {f"init.{n}": p.detach().clone() for n, p in student.official()}

    ncrops = 2 + c["local_crops"]
    crops = []
    for s in range(c["steps"]):
        views = [randn((c["batch"], 3, c["global_size"], c["global_size"]), g) for _ in range(2)]
        views += [randn((c["batch"], 3, c["local_size"], c["local_size"]), g) for _ in range(c["local_crops"])]
        crops.append(views)
        for v, x in enumerate(views):
            t[f"step{s}.crop{v}"] = x

    # Clip between the gradient norms of the first step, so some parameters are clipped and others not.
    probe = same_structure(student, head_args)
    probe_loss = DINOLoss(o, ncrops, c["warmup_teacher_temp"], c["teacher_temp"], c["warmup_teacher_temp_epochs"],
                          c["epochs"])
    probe_loss(probe(crops[0]), teacher(crops[0][:2]), 0).backward()
    norms = sorted(float(p.grad.norm()) for p in probe.parameters() if p.grad is not None)
    c["clip_grad"] = float(np.float32(norms[len(norms) // 2]))

    niter = c["niter_per_ep"]
    lr_schedule = cosine_scheduler(c["lr"], c["min_lr"], c["epochs"], niter, warmup_epochs=c["warmup_epochs"])
    wd_schedule = cosine_scheduler(c["weight_decay"], c["weight_decay_end"], c["epochs"], niter)
    momentum_schedule = cosine_scheduler(c["momentum_teacher"], 1, c["epochs"], niter)
    dino_loss = DINOLoss(o, ncrops, c["warmup_teacher_temp"], c["teacher_temp"], c["warmup_teacher_temp_epochs"],
                         c["epochs"])
    optimizer = torch.optim.AdamW(get_params_groups(student.official()))
    losses = []
    for it in range(c["steps"]):
        epoch = it // niter
        images = crops[it]
        for k, param_group in enumerate(optimizer.param_groups):
            param_group["lr"] = lr_schedule[it]
            if k == 0:
                param_group["weight_decay"] = wd_schedule[it]
        teacher_output = teacher(images[:2])
        student_output = student(images)
        value = dino_loss(student_output, teacher_output, epoch)
        assert math.isfinite(value.item())
        optimizer.zero_grad()
        value.backward()
        clip_gradients(student, c["clip_grad"])
        cancel_gradients_last_layer(epoch, student, c["freeze_last_layer"])
        optimizer.step()
        with torch.no_grad():
            m = momentum_schedule[it]
            for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        losses.append(value.item())
        print(f"  step {it}: epoch {epoch}, lr {lr_schedule[it]:.4g}, wd {wd_schedule[it]:.4g}, "
              f"m {momentum_schedule[it]:.4g}, loss {value.item():.6f}")

    keys = ["batch", "global_size", "local_size", "local_crops", "epochs", "niter_per_ep", "steps", "lr", "min_lr",
            "warmup_epochs", "weight_decay", "weight_decay_end", "momentum_teacher", "warmup_teacher_temp",
            "teacher_temp", "warmup_teacher_temp_epochs", "freeze_last_layer", "clip_grad"]
    t["config"] = f64([c[k] for k in keys])
    t["losses"] = torch.tensor(losses, dtype=torch.float32)
    t["center"] = dino_loss.center.clone()
    t.update({f"student.{n}": p.detach().clone() for n, p in student.official()})
    t.update({f"teacher.{n}": p.detach().clone() for n, p in teacher.official()})
    clipped = sum(n > c["clip_grad"] for n in norms)
    print(f"  clip_grad {c['clip_grad']:.4g}: clips {clipped} of {len(norms)} gradients at step 0")
    write(out / "step.safetensors", t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/train")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    schedules(out)
    heads(out)
    loss(out)
    ema(out)
    step(out)
    total = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
