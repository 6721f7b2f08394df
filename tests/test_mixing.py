"""imgclf.training.mixing and the EMA callback: label mixing of Mixup/CutMix, and weight averaging in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TRAINED_KW, make_folder_dataset
from imgclf.training import mixing
from imgclf.training.api import train
from imgclf.training.mixing import mix_batch, soft_targets

K = 8  # classes; labels 0..7 in a batch of 8, so each row's target names the two images it mixes


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("mix-data") / "photos", per_class=8)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (K, 3, 12, 10), generator=gen, dtype=torch.uint8), torch.arange(K)


def _partners(targets: torch.Tensor) -> list[int]:
    """For each row, the other image mixed in (recovered from the targets); the row itself when none was."""
    out = []
    for i, row in enumerate(targets):
        others = [j for j in torch.nonzero(row > 1e-9).flatten().tolist() if j != i]
        assert len(others) <= 1, row
        out.append(others[0] if others else i)
    return out


def test_soft_targets_sum_to_one_with_smoothing():
    y = torch.tensor([0, 2, 1, 2])
    t = soft_targets(y, 3, 0.3)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert torch.allclose(t[0], torch.tensor([1 - 0.3 + 0.1, 0.1, 0.1]))
    assert torch.equal(soft_targets(y, 3, 0.0), torch.nn.functional.one_hot(y, 3).float())


def test_alphas_zero_leave_the_batch_unchanged():
    x, y = _batch(0)
    mixed, targets = mix_batch(x, y, K, 0.0, 0.0, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, x)
    assert torch.allclose(targets, soft_targets(y, K, 0.1))


@pytest.mark.parametrize("seed", range(4))
def test_mixup_mixes_images_and_targets_with_the_same_lambda(seed):
    torch.manual_seed(seed)  # lambda's Beta draw
    x, y = _batch(seed)
    mixed, targets = mix_batch(x, y, K, 1.0, 0.0, 0.0, torch.Generator().manual_seed(seed))
    assert mixed.dtype == torch.float32 and mixed.shape == x.shape
    assert torch.allclose(targets.sum(1), torch.ones(K))
    partners = _partners(targets)
    assert sorted(partners) == list(range(K))  # a permutation of the batch
    lams = [float(targets[i, i]) for i in range(K) if partners[i] != i]
    assert max(lams) - min(lams) < 1e-6, lams  # one lambda for the whole batch
    lam = lams[0]
    xf = x.float()
    for i, j in enumerate(partners):
        expected = xf[i] if j == i else lam * xf[i] + (1 - lam) * xf[j]
        torch.testing.assert_close(mixed[i], expected, atol=1e-3, rtol=0)  # pixels 0..255, lam in float32


def test_mixup_with_smoothing_mixes_smoothed_targets():
    torch.manual_seed(1)
    x, y = _batch(1)
    smooth = soft_targets(y, K, 0.2)
    _, targets = mix_batch(x, y, K, 1.0, 0.0, 0.2, torch.Generator().manual_seed(1))
    assert torch.allclose(targets.sum(1), torch.ones(K))
    assert float(targets.min()) >= 0.2 / K - 1e-6  # every class keeps its smoothing share
    # each row is a convex combination of two smoothed one-hot rows
    for i, row in enumerate(targets):
        j = int(torch.argsort(row, descending=True)[1]) if int(row.argmax()) == i else int(row.argmax())
        lam = float((row[i] - smooth[j, i]) / (smooth[i, i] - smooth[j, i]))
        assert torch.allclose(row, lam * smooth[i] + (1 - lam) * smooth[j], atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_a_box_of_the_partner_and_weights_targets_by_area(seed):
    torch.manual_seed(seed)
    x, y = _batch(seed)
    mixed, targets = mix_batch(x, y, K, 0.0, 1.0, 0.0, torch.Generator().manual_seed(seed))
    h, w = x.shape[-2:]
    partners = _partners(targets)
    xf = x.float()
    for i, j in enumerate(partners):
        changed = (mixed[i] != xf[i]).any(0)  # (H, W): pixels that no longer come from image i
        if j == i:
            assert not changed.any() and torch.isclose(targets[i, i], torch.tensor(1.0))
            continue
        rows, cols = torch.nonzero(changed, as_tuple=True)
        if len(rows):
            y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            assert int(changed.sum()) == (y1 - y0) * (x1 - x0)  # one rectangle
            assert torch.equal(mixed[i][:, y0:y1, x0:x1], xf[j][:, y0:y1, x0:x1])
        kept = 1 - int(changed.sum()) / (h * w)
        assert float(targets[i, i]) == pytest.approx(kept, abs=1e-6)
        assert float(targets[i, j]) == pytest.approx(1 - kept, abs=1e-6)


def test_cutmix_box_stays_inside_the_image():
    gen = torch.Generator().manual_seed(0)
    for lam in (0.0, 0.3, 0.9, 1.0):
        for _ in range(20):
            y0, y1, x0, x1 = mixing.cutmix_box(10, 14, lam, gen)
            assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 14


def test_both_methods_pick_one_per_batch():
    torch.manual_seed(0)
    x, y = _batch(0)
    gen = torch.Generator().manual_seed(0)
    kinds = set()
    for _ in range(20):
        mixed, targets = mix_batch(x, y, K, 1.0, 1.0, 0.0, gen)
        i = next(i for i, j in enumerate(_partners(targets)) if j != i)
        changed = (mixed[i] != x[i].float()).any(0)
        kinds.add("cutmix" if not changed.all() else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_training_with_mixup_and_cutmix(photos, tmp_path, monkeypatch):
    import imgclf.training.module as module

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[3:5])
        return mixing.mix_batch(*args, **kwargs)

    monkeypatch.setattr(module, "mix_batch", spy)
    result = train(dataset=f"folder:{photos}", runs_dir=str(tmp_path), name="mix", mixup=0.2, cutmix=1.0,
                   **TRAINED_KW)
    assert calls and all(c == (0.2, 1.0) for c in calls)
    assert 0 <= result.metrics["accuracy"] <= 1 and (result.run_dir / "model.pt").is_file()


# EMA ---------------------------------------------------------------------------------------------------------------

def _ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _ema_state(ckpt: dict) -> dict:
    states = [v for k, v in ckpt.get("callbacks", {}).items() if "EMA" in k]
    assert len(states) == 1, list(ckpt.get("callbacks", {}))
    return states[0]["ema"]


def test_ema_weights_are_deployed(photos, tmp_path):
    result = train(dataset=f"folder:{photos}", runs_dir=str(tmp_path), name="ema", ema=True, ema_decay=0.9,
                   **{**TRAINED_KW, "epochs": 2})
    run = result.run_dir
    deployed = _ckpt(run / "model.pt")["state_dict"]
    last = _ckpt(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1  # the latest epoch, whether or not it improved on the best
    raw = {k.removeprefix("model."): v for k, v in last["state_dict"].items() if k.startswith("model.")}
    ema = {k.removeprefix("module."): v for k, v in _ema_state(last).items() if k.startswith("module.")}
    weights = [k for k, v in deployed.items() if v.is_floating_point() and k in raw]
    assert weights
    assert any(not torch.equal(deployed[k], raw[k]) for k in weights)  # not the raw weights of the last step
    for k in weights:  # but the average kept by the callback
        torch.testing.assert_close(deployed[k], ema[k])
    info = (run / "run.json").read_text()
    assert '"finished"' in info


def test_ema_state_survives_resume(photos, tmp_path):
    kw = {**TRAINED_KW, "val_fraction": 0.0}
    train(dataset=f"folder:{photos}", runs_dir=str(tmp_path), name="emar", ema=True, **kw)
    run = tmp_path / "emar"
    first = _ema_state(_ckpt(run / "checkpoints" / "last.ckpt"))
    steps = int(first["n_averaged"])
    assert steps >= 1
    train(resume="emar", runs_dir=str(tmp_path), epochs=2, progress=False, threads=1)
    second = _ema_state(_ckpt(run / "checkpoints" / "last.ckpt"))
    assert int(second["n_averaged"]) == 2 * steps  # the average went on from the saved one, not from scratch
    deployed = _ckpt(run / "model.pt")["state_dict"]
    ema = {k.removeprefix("module."): v for k, v in second.items() if k.startswith("module.")}
    for k, v in deployed.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ema[k])


def test_last_checkpoint_is_the_latest_epoch_when_validation_does_not_improve(photos, tmp_path):
    # lr ~ 0: validation accuracy never improves after the first epoch, so best.ckpt stays at epoch 0
    result = train(dataset=f"folder:{photos}", runs_dir=str(tmp_path), name="stale", lr=1e-12,
                   **{**TRAINED_KW, "epochs": 3})
    ckpts = result.run_dir / "checkpoints"
    assert _ckpt(ckpts / "best.ckpt")["epoch"] == 0
    assert _ckpt(ckpts / "last.ckpt")["epoch"] == 2  # what --resume continues from


def test_ema_callback_state_round_trip():
    from torch import nn

    from imgclf.training.callbacks import EMA

    class Holder:
        model = nn.Linear(3, 2)

    cb = EMA(0.5)
    assert cb.state_dict() == {}
    cb.on_fit_start(None, Holder)
    with torch.no_grad():
        Holder.model.weight.add_(1.0)
    cb.on_train_batch_end(None, Holder, None, None, 0)
    state = cb.state_dict()
    again = EMA(0.5)
    again.load_state_dict(state)
    again.on_fit_start(None, Holder)
    for (k, a), b in zip(cb.ema.state_dict().items(), again.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert int(np.asarray(again.ema.n_averaged)) == 1
