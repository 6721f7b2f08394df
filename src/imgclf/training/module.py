"""The LightningModule: model, loss, optimiser, schedule and the one evaluation step for validation and test."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from imgclf.models import ImageClassifier
from imgclf.training.mixing import mix_batch


def lr_factor(step: int, total: int, schedule: str, warmup: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``.

    onecycle: linear 0.2 -> 1 over the warm-up share, then linear 1 -> 0.07 (airbench's triangle);
    cosine: linear 0 -> 1 over the warm-up, then half a cosine to 0; constant: warm-up, then 1.
    """
    t = step / max(total, 1)
    if warmup > 0 and t < warmup:
        start = 0.2 if schedule == "onecycle" else 0.0
        return start + (1 - start) * t / warmup
    if schedule == "onecycle":
        return 1 - (1 - 0.07) * (t - warmup) / max(1 - warmup, 1e-8)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - warmup) / max(1 - warmup, 1e-8))))
    return 1.0


class ClassifierModule(L.LightningModule):
    """Trains an ImageClassifier with cross-entropy; logs loss, accuracy and images/s.

    Args:
        model: the classifier (normalisation inside).
        hp: the resolved flat config (plain values only, so checkpoints load with ``weights_only=True``).
        class_weights: per-class loss weights, or None.
        steps_per_epoch: optimisation steps in one epoch, for the schedule.
    """

    def __init__(self, model: ImageClassifier | nn.Module, hp: dict, class_weights: list[float] | None,
                 steps_per_epoch: int, num_classes: int):
        super().__init__()
        self.model = model
        self._num_classes = num_classes
        self.hp = hp
        self.steps_per_epoch = steps_per_epoch
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self._t0 = None
        self._seen = 0
        self._frozen = False
        self._mix_gen = torch.Generator().manual_seed(int(hp.get("seed", 0)) + 12_345)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=smoothing)

    # transfer learning: a frozen backbone keeps its batch-norm statistics (eval mode) --------------------------
    def backbone_frozen(self, epoch: int) -> bool:
        mode = self.hp.get("transfer")
        return mode == "linear-probe" or (mode == "fine-tune" and epoch < (self.hp.get("freeze_epochs") or 0))

    def set_frozen(self, frozen: bool) -> None:
        net = getattr(self.model, "net", None)
        if net is None or not hasattr(net, "get_classifier"):
            return
        head = {id(p) for p in net.get_classifier().parameters()}
        for p in net.parameters():
            if id(p) not in head:
                p.requires_grad_(not frozen)
        self._frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        net = getattr(self.model, "net", None)
        if mode and self._frozen and net is not None:
            for m in net.modules():
                if isinstance(m, nn.modules.batchnorm._NormBase):
                    m.eval()
        return self

    # training ----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        net = getattr(self.model, "net", None)
        if net is not None and hasattr(net, "whiten") and net.whiten.bias is not None:
            # airbench: the whitening bias trains for the first ~30 % of epochs, then stays fixed
            net.whiten.bias.requires_grad_(self.current_epoch < math.ceil(0.3 * self.hp["epochs"]))
        if self.hp.get("transfer") in ("linear-probe", "fine-tune"):
            self.set_frozen(self.backbone_frozen(self.current_epoch))
        self._t0, self._seen = time.perf_counter(), 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        hp = self.hp
        if hp.get("mixup", 0) > 0 or hp.get("cutmix", 0) > 0:
            x, targets = mix_batch(x, y, self.num_classes, hp["mixup"], hp["cutmix"], hp["label_smoothing"],
                                   self._mix_gen)
            logits = self.model(x)
            loss = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1)
            if self.class_weights is not None:
                loss = loss * (targets @ self.class_weights)
            loss = loss.mean()
        else:
            logits = self.model(x)
            loss = self.loss(logits, y, hp["label_smoothing"])
        self._seen += len(y)
        rate = self._seen / max(time.perf_counter() - self._t0, 1e-9)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({"train_loss": loss, "train_acc": acc}, prog_bar=True, on_step=True, on_epoch=True,
                      batch_size=len(y), sync_dist=self.trainer.world_size > 1)
        self.log("img_s", rate, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        elapsed = time.perf_counter() - self._t0
        self.log("epoch_seconds", elapsed, on_epoch=True, sync_dist=self.trainer.world_size > 1, reduce_fx="max")
        self.log("train_images_per_s", self._seen * self.trainer.world_size / max(elapsed, 1e-9), on_epoch=True,
                 sync_dist=self.trainer.world_size > 1)

    # evaluation (validation and test share one step) -------------------------------------------------------
    def _eval_step(self, batch, stage: str):
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log_dict({f"{stage}_loss": loss, f"{stage}_acc": acc}, prog_bar=stage == "val", on_epoch=True,
                      batch_size=len(y), sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    # optimiser -----------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self._num_classes

    def configure_optimizers(self):
        hp = self.hp
        net = getattr(self.model, "net", self.model)
        groups = transfer_param_groups(net, hp) if hp.get("transfer") == "fine-tune" else param_groups(net, hp)
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["momentum"] > 0)
        else:
            opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=(hp["momentum"], 0.999))
        total = self.steps_per_epoch * hp["epochs"]
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, total, hp["schedule"], hp["warmup"]))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def param_groups(net: nn.Module, hp: dict) -> list[dict]:
    """Decay weights only; under SGD, nets may ask for faster BN shifts (``norm_bias_lr_scale``)."""
    scale = getattr(net, "norm_bias_lr_scale", 1.0) if hp["optimizer"] == "sgd" else 1.0
    decay, no_decay, norm_bias = [], [], []
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad and not (module is getattr(net, "whiten", None) and name == "bias"):
                continue
            if isinstance(module, nn.modules.batchnorm._NormBase):
                (norm_bias if name == "bias" else no_decay).append(p)
            elif p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    wd = hp["weight_decay"]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if scale != 1.0:
        groups.append({"params": norm_bias, "lr": hp["lr"] * scale, "weight_decay": wd / scale})
        groups[0]["lr"] = groups[1]["lr"] = hp["lr"]
    else:
        groups[1]["params"] += norm_bias
    return [g for g in groups if g["params"]]


def transfer_param_groups(net: nn.Module, hp: dict) -> list[dict]:
    """Fine-tuning: the head at lr; the backbone at lr x backbone_lr_scale, x layer_decay per layer below the top."""
    from timm.optim import param_groups_layer_decay

    head = {id(p) for p in net.get_classifier().parameters()}
    decay = hp.get("layer_decay") or 1.0
    groups = param_groups_layer_decay(net, weight_decay=hp["weight_decay"], layer_decay=decay) if decay < 1 else \
        [{"params": [p for p in net.parameters() if p.ndim > 1], "weight_decay": hp["weight_decay"]},
         {"params": [p for p in net.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    out = []
    for g in groups:
        scale = g.pop("lr_scale", 1.0)
        params = list(g.pop("params"))
        heads = [p for p in params if id(p) in head]
        body = [p for p in params if id(p) not in head]
        if heads:
            out.append({**g, "params": heads, "lr": hp["lr"]})
        if body:
            out.append({**g, "params": body, "lr": hp["lr"] * hp["backbone_lr_scale"] * scale})
    return out
