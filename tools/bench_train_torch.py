"""PyTorch side of ``tools/bench_train.sh``: training images/s of the DINO recipe that ``dinoscope bench-train`` runs.

Same model and step as the default ``dinoscope train`` config: timm ``VisionTransformer`` at vit-nano size (patch 8,
96 channels, 4 blocks, 3 heads, 64 px positional grid, bicubic resampling for other sizes, student drop-path 0.1),
``DINOHead`` 2048 / 512 / 128, ``DINOLoss`` over 2 global crops of 64 px and 4 local crops of 32 px, AdamW with
``get_params_groups``, per-parameter clipping at 3, the last layer frozen (epoch 0), cosine lr / wd / momentum, EMA
teacher (the loss, head, groups, clipping and freezing are ``tools/make_train_fixtures.py``'s re-statement of
``main_dino.py``). The crops are random tensors made once: data loading and augmentation are not timed here (the Rust
side reports its data share separately). fp32, ``--threads`` intra-op threads.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_train_fixtures import (  # noqa: E402
    DINOHead,
    DINOLoss,
    MultiCropWrapper,
    cancel_gradients_last_layer,
    clip_gradients,
    cosine_scheduler,
    get_params_groups,
)

warnings.filterwarnings("ignore", message=".*weight_norm.*")


def vit(drop_path: float):
    import timm.models.vision_transformer as vt

    return vt.VisionTransformer(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=4,
                                qkv_bias=True, num_classes=0, global_pool="token", drop_path_rate=drop_path,
                                dynamic_img_size=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    out_dim, local_crops, epochs, niter = 2048, 4, 10, 32
    student = MultiCropWrapper(vit(0.1), DINOHead(96, out_dim, True, 3, 512, 128))
    teacher = MultiCropWrapper(vit(0.0), DINOHead(96, out_dim, True, 3, 512, 128))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    ncrops = 2 + local_crops
    dino_loss = DINOLoss(out_dim, ncrops, 0.04, 0.04, 0, epochs)
    optimizer = torch.optim.AdamW(get_params_groups(student.named_parameters()))
    lr_schedule = cosine_scheduler(0.0005 * a.batch / 256, 1e-6, epochs, niter, warmup_epochs=epochs)
    wd_schedule = cosine_scheduler(0.04, 0.4, epochs, niter)
    momentum_schedule = cosine_scheduler(0.996, 1, epochs, niter)
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(a.batch, 3, 64, 64, generator=g) for _ in range(2)]
    images += [torch.randn(a.batch, 3, 32, 32, generator=g) for _ in range(local_crops)]

    times = []
    for it in range(a.warmup + a.iters):
        start = time.perf_counter()
        epoch = it // niter
        for k, group in enumerate(optimizer.param_groups):
            group["lr"] = lr_schedule[it]
            if k == 0:
                group["weight_decay"] = wd_schedule[it]
        teacher_output = teacher(images[:2])
        student_output = student(images)
        loss = dino_loss(student_output, teacher_output, epoch)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        clip_gradients(student, 3.0)
        cancel_gradients_last_layer(epoch, student, 1)
        optimizer.step()
        with torch.no_grad():
            m = momentum_schedule[it]
            for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        if it >= a.warmup:
            times.append(time.perf_counter() - start)
    images_per_s = a.batch * len(times) / sum(times)
    print(f"torch={torch.__version__} threads={a.threads} batch={a.batch} iters={len(times)} "
          f"images_per_s={images_per_s:.2f} median_step_ms={sorted(times)[len(times) // 2] * 1e3:.1f}")


if __name__ == "__main__":
    main()
