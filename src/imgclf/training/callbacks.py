"""Callbacks: the per-epoch metrics.csv, and setting the loader's epoch so shuffles are reproducible on resume."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L


def _value(metrics: dict, *keys: str) -> float | str:
    for key in keys:
        if key in metrics:
            return round(float(metrics[key]), 6)
    return ""


class EpochLog(L.Callback):
    """Appends one row per epoch to ``metrics.csv``: losses, accuracies, lr, seconds and training images/s."""

    COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds", "images_per_s"]

    def __init__(self, path: Path, n_train: int, total_epochs: int = 0, verbose: bool = False):
        self.path, self.n_train, self.total_epochs, self.verbose = Path(path), n_train, total_epochs, verbose
        self._start = self._train_end = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(trainer.current_epoch)
        self._start, self._train_end = time.perf_counter(), None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self._start is not None and self._train_end is None and not trainer.sanity_checking:
            self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0:
            return
        seconds = (self._train_end or time.perf_counter()) - self._start
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "train_loss": _value(m, "train_loss_epoch", "train_loss"),
               "train_acc": _value(m, "train_acc_epoch", "train_acc"), "val_loss": _value(m, "val_loss"),
               "val_acc": _value(m, "val_acc"), "lr": round(trainer.optimizers[0].param_groups[0]["lr"], 8),
               "train_seconds": round(seconds, 3), "images_per_s": round(self.n_train / max(seconds, 1e-9), 1)}
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.verbose:  # one line per epoch where no live progress bar is shown (logs, CI, pipes)
            print(f"epoch {row['epoch'] + 1}/{self.total_epochs}  loss {row['train_loss']:.4f}  "
                  f"acc {row['train_acc']:.4f}  val_loss {row['val_loss'] or float('nan'):.4f}  "
                  f"val_acc {row['val_acc'] or float('nan'):.4f}  {seconds:.1f}s  {row['images_per_s']:.0f} img/s",
                  flush=True)


class EMA(L.Callback):
    """Exponential moving average of the weights: validated each epoch, and the weights kept at the end."""

    def __init__(self, decay: float):
        self.decay = decay
        self.ema = None
        self._backup = None
        self._pending_state = None

    def on_fit_start(self, trainer, pl_module) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.ema = AveragedModel(pl_module.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        if self._pending_state is not None:
            self.ema.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ema.update_parameters(pl_module.model)

    def _swap_in(self, pl_module) -> None:
        self._backup = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
        pl_module.model.load_state_dict(self.ema.module.state_dict())

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.ema is not None and not trainer.sanity_checking:
            self._swap_in(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._backup is not None:
            pl_module.model.load_state_dict(self._backup)
            self._backup = None

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.ema is not None:
            pl_module.model.load_state_dict(self.ema.module.state_dict())

    def state_dict(self) -> dict:
        return {} if self.ema is None else {"ema": self.ema.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_state = state_dict.get("ema")
