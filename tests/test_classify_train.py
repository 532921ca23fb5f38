"""The classifier trainer: best vs last weights, early stopping, resume after a kill,
frozen backbone, augmentation, the training budget (epochs or steps). Tiny real timm models on
tiny real PNGs."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import assert_set_aside_as_unreadable, mammosynth_warnings

from mammosynth import layout, runtime
from mammosynth.classify.model import load_weights
from mammosynth.classify.train import (augment, batches_per_epoch, monitored_loss,
                                       train_classifier)
from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png

LABELS = ["normal", "abnormal"]
ARCH = "resnet10t"


def frame(folder, n, flip_labels=False, seed=0):
    """n 32x32 PNGs: label 1 bright, label 0 dark (or the reverse with flip_labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = i % 2
        bright = y != flip_labels
        image = np.clip(rng.normal(0.7 if bright else 0.3, 0.1, (32, 32)), 0, 1)
        path = folder / f"{i}.png"
        write_png(path, image)
        rows.append({"image_id": f"{folder.name}{i}", "path": str(path), "label": LABELS[y],
                     "y": y, "synthetic": False})
    return pd.DataFrame(rows)


def cfg(**overrides):
    base = dict(image_size=32, in_chans=1, pretrained=None, optimizer="adam",
                optimizer_args={}, lr=3e-3, weight_decay=0.0, batch_size=4, epochs=6,
                patience=None, monitor="val_loss", class_weights="balanced")
    return base | overrides


def outputs(out) -> dict[str, Path]:
    """train_classifier's files in folder `out`, named as the workflow names them."""
    out = Path(out)
    return {"last": out / layout.weights_file("last"), "best": out / layout.weights_file("best"),
            "history": out / layout.HISTORY, "resume": out / layout.CLASSIFIER_RESUME}


@pytest.fixture
def data(tmp_path):
    return {"train": frame(tmp_path / "train", 12), "val": frame(tmp_path / "val", 6, seed=1)}


def history(out):
    return pd.read_csv(out / "history.csv")


def test_best_differs_from_last_when_val_loss_rises(tmp_path):
    # validation labels are the reverse of training's: learning the task makes val loss rise
    subsets = {"train": frame(tmp_path / "t", 12),
               "val": frame(tmp_path / "v", 6, flip_labels=True, seed=1)}
    train_classifier(subsets, **outputs(tmp_path / "out"),
                     arch=ARCH, labels=LABELS, cfg=cfg(), seed=0)
    h = history(tmp_path / "out")
    best_epoch = int(h.loc[h["val_loss"].idxmin(), "epoch"])
    assert best_epoch < len(h) and list(h["best"]) == list(h["val_loss"] == h["val_loss"].cummin())
    _, best_meta = load_weights(tmp_path / "out/best.safetensors")
    _, last_meta = load_weights(tmp_path / "out/last.safetensors")
    assert (best_meta["epoch"], last_meta["epoch"]) == (best_epoch, len(h))
    best, last = (load_file(str(tmp_path / f"out/{c}.safetensors")) for c in ("best", "last"))
    assert any(not torch.equal(best[k], last[k]) for k in best)
    assert not (tmp_path / "out/resume.pt").exists()


def test_early_stopping_stops(tmp_path):
    subsets = {"train": frame(tmp_path / "t", 12),
               "val": frame(tmp_path / "v", 6, flip_labels=True, seed=1)}
    train_classifier(subsets, **outputs(tmp_path / "out"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=30, patience=2), seed=0)
    h = history(tmp_path / "out")
    best_epoch = int(h.loc[h["val_loss"].idxmin(), "epoch"])
    assert len(h) < 30 and len(h) - best_epoch == 2


@pytest.mark.parametrize("budget", ["epochs", "steps"])
def test_resume_after_kill_continues_and_matches(tmp_path, data, budget):
    # budget steps: 2 updates a round, 3 batches a permutation - most rounds end inside one
    updates = {"epochs": None, "steps": 2}[budget]
    config = cfg(budget=budget)
    train_classifier(data, **outputs(tmp_path / "whole"),
                     arch=ARCH, labels=LABELS, cfg=config, seed=0,
                     updates_per_epoch=updates)

    # a real kill -9 in the middle of training, then a re-run of the same call
    out = tmp_path / "killed"
    data["train"].to_csv(tmp_path / "train.csv", index=False)
    data["val"].to_csv(tmp_path / "val.csv", index=False)
    script = (
        "import mammosynth, pandas as pd, torch; torch.set_num_threads(1)\n"
        "from mammosynth.classify.train import train_classifier\n"
        f"s = {{k: pd.read_csv(r'{tmp_path}/' + k + '.csv') for k in ('train', 'val')}}\n"
        f"train_classifier(s, **{ {k: str(v) for k, v in outputs(out).items()}!r}, "
        f"arch='{ARCH}', labels={LABELS!r}, "
        f"cfg={cfg(epochs=60, budget=budget)!r}, seed=0, updates_per_epoch={updates})\n")
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while not (out / "resume.pt").exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    child.kill()
    child.wait()
    assert (out / "resume.pt").exists(), "the child finished or never saved a resume state"
    (out / "last.safetensors").unlink(missing_ok=True)  # as Snakemake removes incomplete outputs
    (out / "best.safetensors").unlink(missing_ok=True)
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=config, seed=0,
                     updates_per_epoch=updates)

    h_whole, h_resumed = history(tmp_path / "whole"), history(out)
    assert list(h_resumed["epoch"]) == list(range(1, 7))  # the epoch count continued
    assert list(h_resumed["step"]) == [k * (updates or 3) for k in range(1, 7)]
    cols = ["train_loss", "val_loss", "best"]
    pd.testing.assert_frame_equal(h_whole[cols], h_resumed[cols])
    for ckpt in ("last", "best"):
        a = load_file(str(tmp_path / f"whole/{ckpt}.safetensors"))
        b = load_file(str(out / f"{ckpt}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), ckpt


def test_freeze_backbone_trains_the_head_only(tmp_path, data):
    import timm

    train_classifier(data, **outputs(tmp_path / "out"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=2, freeze_backbone=True), seed=0)
    torch.manual_seed(0)
    init = timm.create_model(ARCH, num_classes=1, in_chans=1).state_dict()
    trained = load_file(str(tmp_path / "out/last.safetensors"))
    head = {k for k in trained if k.startswith("fc.")}
    assert head and all(not torch.equal(init[k], trained[k]) for k in head)
    assert all(torch.equal(init[k], trained[k]) for k in trained if k not in head), \
        "a backbone weight or BatchNorm statistic changed"


def test_augment_is_seeded_and_keeps_the_chest_wall_left():
    x = torch.zeros(8, 1, 32, 32)
    x[..., :8] = 1.0  # a bright band on the left
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert (a[..., :8].mean() > 4 * a[..., -8:].mean()).item()  # no horizontal flips
    assert a.min() >= 0 and a.max() <= 1


def test_bootstrap_ci_brackets_the_point_estimate():
    from mammosynth.classify.evaluate import compute_metrics

    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 40)
    p1 = np.clip(0.35 * y + rng.uniform(0, 0.65, len(y)), 0, 1)
    prob = np.stack([1 - p1, p1], 1)
    m = compute_metrics(y, prob, LABELS, ci=300)
    for key, point in (("accuracy", m["accuracy"]), ("auc", m["auc"]),
                       ("macro_f1", m["macro"]["f1"])):
        ci = m["ci95"][key]
        assert ci["low"] <= point <= ci["high"] and ci["high"] - ci["low"] > 0.01, key
        assert ci["resamples"] == 300
    assert compute_metrics(y, prob, LABELS, ci=300) == m  # seeded
    assert "ci95" not in compute_metrics(y, prob, LABELS)


def test_paper_002_settings_train_nasnet_mobile(tmp_path, data):
    """Frozen-base NASNet-A Mobile, RGB input, Adamax, six BI-RADS classes, then evaluate."""
    from mammosynth.classify.evaluate import evaluate

    labels = [f"birads{i}" for i in range(6)]
    subsets = {k: v.assign(y=v["y"] * 3, label=[labels[y * 3] for y in v["y"]])
               for k, v in data.items()}
    train_classifier(subsets, **outputs(tmp_path / "out"), arch="nasnetamobile", labels=labels,
                     cfg=cfg(epochs=1, in_chans=3, optimizer="adamax", freeze_backbone=True,
                             class_weights="none", image_size=64), seed=0)
    metrics, predictions = evaluate(tmp_path / "out/best.safetensors", subsets["val"])
    assert metrics["arch"] == "nasnetamobile" and metrics["n"] == len(subsets["val"])
    assert [c for c in predictions.columns if c.startswith("prob_")] == \
        [f"prob_{label}" for label in labels]


def test_no_validation_set_needs_monitor_train_loss(tmp_path):
    """protocol paper with splits.val_fraction 0: no val images, best = lowest training loss.
    Under monitor val_loss an empty validation set (too few images for val_fraction; config.check
    refuses val_fraction 0) is a data error, not weights that are never "best"."""
    train = frame(tmp_path / "t", 12)
    subsets = {"train": train, "val": train.iloc[:0]}
    with pytest.raises(UserError, match=f"^{ARCH}: this split has no validation images, so no "
                                        "val_loss to pick the best weights by"):
        train_classifier(subsets, **outputs(tmp_path / "a"),
                         arch=ARCH, labels=LABELS, cfg=cfg(), seed=0)
    train_classifier(subsets, **outputs(tmp_path / "b"), arch=ARCH, labels=LABELS,
                     cfg=cfg(monitor="train_loss", epochs=3), seed=0)
    h = history(tmp_path / "b")
    assert len(h) == 3 and h["val_loss"].isna().all() and h["val_acc"].isna().all()
    assert list(h["best"]) == list(h["train_loss"] == h["train_loss"].cummin())
    _, meta = load_weights(tmp_path / "b/best.safetensors")
    assert meta["epoch"] == int(h.loc[h["train_loss"].idxmin(), "epoch"])


def test_validation_loss_is_weighted_like_the_training_loss(tmp_path):
    """monitor_weighting balanced: the logged val_loss is the class-weighted mean that training
    minimises (recomputed here from the last weights); none: the plain mean. Imbalanced training
    set (9 of one class, 3 of the other), so the two differ."""
    from sklearn.utils.class_weight import compute_class_weight

    from mammosynth.classify import model as models
    from mammosynth.classify.data import load_tensor
    from mammosynth.classify.train import loss_per_sample, predict

    train = frame(tmp_path / "t", 12)
    train = pd.concat([train, train[train["y"] == 1].assign(image_id=lambda f: f["image_id"] + "b"),
                       train[train["y"] == 1].assign(image_id=lambda f: f["image_id"] + "c")])
    val = frame(tmp_path / "v", 6, seed=1)
    logged = {}
    for weighting in ("balanced", "none"):
        out = tmp_path / weighting
        train_classifier({"train": train, "val": val}, **outputs(out), arch=ARCH, labels=LABELS,
                         cfg=cfg(epochs=2, monitor_weighting=weighting), seed=0)
        state, meta = load_weights(out / "last.safetensors")
        assert meta["monitor_weighting"] == weighting and meta["monitor"] == "val_loss"
        net = models.create(ARCH, 2, 1)
        net.load_state_dict(state)
        logits = predict(net, models.Normalize(net, 1), load_tensor(val["path"], 32), 4)
        y = torch.tensor(val["y"].to_numpy())
        per_image = loss_per_sample(logits, y)
        if weighting == "balanced":
            w = compute_class_weight("balanced", classes=np.array([0, 1]), y=train["y"].to_numpy())
            per_image = per_image * torch.tensor(w, dtype=torch.float32)[y]
        logged[weighting] = history(out)["val_loss"].iloc[-1]
        assert logged[weighting] == pytest.approx(per_image.mean().item(), rel=1e-5)
    assert logged["balanced"] != pytest.approx(logged["none"])


# -- resume state keyed to the config and inputs --------------------------------------------------

class _Killed(Exception):
    pass


def _write_resume_state(monkeypatch, subsets, out, config, epochs_done=1, **kwargs):
    """Train with `config` until `epochs_done` epochs are saved in out/resume.pt, then stop as a
    killed job would (the weights Snakemake would remove are removed)."""
    original, saved = runtime.save_atomic, []

    def save_then_stop(state, path):
        original(state, path)
        saved.append(state["epoch"])
        if len(saved) == epochs_done:
            raise _Killed

    monkeypatch.setattr(runtime, "save_atomic", save_then_stop)
    with pytest.raises(_Killed):
        train_classifier(subsets, **outputs(out),
                         arch=ARCH, labels=LABELS, cfg=config, seed=0, **kwargs)
    monkeypatch.undo()
    assert (out / "resume.pt").is_file() and saved == list(range(1, epochs_done + 1))
    (out / "last.safetensors").unlink()
    (out / "best.safetensors").unlink(missing_ok=True)


def _assert_same_run(a, b):
    cols = ["epoch", "step", "train_loss", "val_loss", "best"]
    pd.testing.assert_frame_equal(history(a)[cols], history(b)[cols])
    for ckpt in ("last", "best"):
        x, y = (load_file(str(d / f"{ckpt}.safetensors")) for d in (a, b))
        assert all(torch.equal(x[k], y[k]) for k in x), ckpt


@pytest.mark.parametrize("change", ["lr", "training_set", "budget", "updates_per_epoch"])
def test_resume_state_of_another_config_or_training_set_is_set_aside(tmp_path, data, change,
                                                                     monkeypatch, caplog):
    out = tmp_path / "out"
    first = {"updates_per_epoch": 2} if change == "updates_per_epoch" else {}
    _write_resume_state(monkeypatch, data, out, cfg(epochs=3), **first)
    subsets, config, kwargs = data, cfg(epochs=3), {}
    if change == "lr":
        config = cfg(epochs=3, lr=1e-3)
    elif change == "training_set":  # 12 other images, same labels
        subsets = dict(data, train=frame(tmp_path / "train2", 12, seed=5))
    elif change == "budget":  # 3 updates a round, as under epochs: the same run, another budget
        config, kwargs = cfg(epochs=3, budget="steps"), {"updates_per_epoch": 3}
    else:
        kwargs = {"updates_per_epoch": 4}
    train_classifier(subsets, **outputs(out),
                     arch=ARCH, labels=LABELS, cfg=config, seed=0, **kwargs)

    assert "was written for a different config or inputs: training starts afresh" in caplog.text
    assert (out / "resume.pt.stale").is_file() and not (out / "resume.pt").exists()
    assert torch.load(out / "resume.pt.stale", weights_only=True)["epoch"] == 1
    assert list(history(out)["epoch"]) == [1, 2, 3]
    train_classifier(subsets, **outputs(tmp_path / "fresh"),
                     arch=ARCH, labels=LABELS, cfg=config, seed=0, **kwargs)
    _assert_same_run(out, tmp_path / "fresh")


def test_a_changed_image_file_is_a_changed_training_set(tmp_path, data, monkeypatch, caplog):
    """Same paths and labels, but one PNG rewritten (a different size): not resumed."""
    out = tmp_path / "out"
    _write_resume_state(monkeypatch, data, out, cfg(epochs=2))
    path = data["train"]["path"].iloc[0]
    write_png(path, np.zeros((48, 48)))
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=cfg(epochs=2), seed=0)
    assert "training starts afresh" in caplog.text and (out / "resume.pt.stale").is_file()


def test_more_epochs_or_another_bootstrap_still_resume(tmp_path, data, monkeypatch, caplog):
    """epochs (at a constant lr) and bootstrap do not change epoch k: the state is resumed and
    the result is that of an uninterrupted run with the new settings."""
    out = tmp_path / "out"
    _write_resume_state(monkeypatch, data, out, cfg(epochs=2, bootstrap=10))
    caplog.set_level(logging.INFO)
    config = cfg(epochs=3, bootstrap=20)
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=config, seed=0)
    assert "resumed from" in caplog.text and "afresh" not in caplog.text
    assert not (out / "resume.pt.stale").exists()
    train_classifier(data, **outputs(tmp_path / "fresh"),
                     arch=ARCH, labels=LABELS, cfg=config, seed=0)
    _assert_same_run(out, tmp_path / "fresh")


def test_a_state_past_the_new_epoch_count_is_set_aside(tmp_path, data, monkeypatch, caplog):
    out = tmp_path / "out"
    _write_resume_state(monkeypatch, data, out, cfg(epochs=3), epochs_done=2)
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=cfg(epochs=1), seed=0)
    assert "training starts afresh" in caplog.text and (out / "resume.pt.stale").is_file()
    assert list(history(out)["epoch"]) == [1]
    train_classifier(data, **outputs(tmp_path / "fresh"),
                     arch=ARCH, labels=LABELS, cfg=cfg(epochs=1),
                     seed=0)
    _assert_same_run(out, tmp_path / "fresh")


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_an_unreadable_resume_state_is_set_aside(tmp_path, data, monkeypatch, caplog, how):
    """A resume state damaged on disk (cut to half its bytes, or as many random bytes) cannot be
    read: it is moved to resume.pt.unreadable with one warning line naming it, and training
    starts afresh - the run of a fresh job - instead of failing on every retry."""
    out = tmp_path / "out"
    _write_resume_state(monkeypatch, data, out, cfg(epochs=2))
    resume = out / "resume.pt"
    raw = resume.read_bytes()
    damaged = raw[:len(raw) // 2] if how == "truncated" else \
        np.random.default_rng(0).bytes(len(raw))
    resume.write_bytes(damaged)

    caplog.clear()
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=cfg(epochs=2), seed=0)
    assert_set_aside_as_unreadable(caplog, resume, damaged)
    assert list(history(out)["epoch"]) == [1, 2]
    train_classifier(data, **outputs(tmp_path / "fresh"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=2), seed=0)
    _assert_same_run(out, tmp_path / "fresh")


def test_trainer_state_round_trip_and_what_it_sets_aside(tmp_path, caplog):
    """runtime.TrainerState on its own: objects and the torch, numpy and Python RNG states come
    back as saved; an empty file or one that is not a dict is unreadable; a state lacking a part
    is stale."""
    import random

    def objects():
        net = torch.nn.Linear(3, 2)
        return {"net": net, "optimizer": torch.optim.Adam(net.parameters()),
                "generator": torch.Generator().manual_seed(1)}

    path = tmp_path / "state.pt"
    saved = objects()
    saved["net"](torch.randn(4, 3)).sum().backward()
    saved["optimizer"].step()
    torch.randn(3, generator=saved["generator"])
    torch.manual_seed(5), np.random.seed(6), random.seed(7)
    np.random.randn()  # numpy caches the second Gaussian of a pair: that too is state
    runtime.TrainerState(path, "key", **saved).save(step=3, history=[{"loss": 1.0}])
    expected = (torch.rand(4), np.random.randn(4), [random.random() for _ in range(4)],
                torch.rand(4, generator=saved["generator"]))

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    fresh = objects()
    assert runtime.TrainerState(path, "key", **fresh).restore() == \
        {"step": 3, "history": [{"loss": 1.0}]}
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.randn(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]
    assert torch.equal(torch.rand(4, generator=fresh["generator"]), expected[3])
    assert all(torch.equal(a, b) for a, b in zip(fresh["net"].state_dict().values(),
                                                saved["net"].state_dict().values()))
    assert fresh["optimizer"].state_dict()["state"][0]["step"] == 1

    for content, suffix in ((b"", "unreadable"), (None, "unreadable"), ({"x": 1}, "stale")):
        if content is None:
            torch.save([1, 2], path)
        elif isinstance(content, dict):
            torch.save({**content, "fingerprint": "key"}, path)
        else:
            path.write_bytes(content)
        caplog.clear()
        assert runtime.TrainerState(path, "key", **objects()).restore() is None
        assert not path.exists() and (tmp_path / f"state.pt.{suffix}").is_file()
        assert len(mammosynth_warnings(caplog)) == 1, mammosynth_warnings(caplog)
    assert "lacks net, optimizer, generator, rng" in mammosynth_warnings(caplog)[0]


def test_runtime_job_does_not_import_torch():
    """The steps without torch (ingest, split) run `runtime.job`: importing it stays light."""
    code = ("import sys\nfrom mammosynth.runtime import TrainerState, fingerprint, job\n"
            "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_fingerprint_covers_settings_and_files_not_key_order(tmp_path):
    from mammosynth.runtime import fingerprint

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"12345")
    b.write_bytes(b"12345")
    base = fingerprint({"lr": 1e-3, "seed": 0}, {"train": [a, b]})
    assert len(base) == 64 and base == fingerprint({"seed": 0, "lr": 0.001}, {"train": [a, b]})
    assert base != fingerprint({"lr": 1e-4, "seed": 0}, {"train": [a, b]})
    assert base != fingerprint({"lr": 1e-3, "seed": 0}, {"train": [b, a]})
    assert base != fingerprint({"lr": 1e-3, "seed": 0}, {"val": [a, b]})
    b.write_bytes(b"123456")
    assert base != fingerprint({"lr": 1e-3, "seed": 0}, {"train": [a, b]})


# -- the training budget: epochs, or the same optimizer updates for every arm --------------------

def _count_updates(monkeypatch):
    """Adam's own step counter (not the trainer's) after every epoch, read from the states the
    trainer saves."""
    original, steps = runtime.save_atomic, []

    def save_and_count(state, path):
        steps.append({int(s["step"]) for s in state["optimizer"]["state"].values()})
        original(state, path)

    monkeypatch.setattr(runtime, "save_atomic", save_and_count)
    return steps


def _record_batches(monkeypatch):
    """The images of every training batch, as passed to `augment` (the original still runs)."""
    import mammosynth.classify.train as classify_train

    original, batches = classify_train.augment, []

    def record(x, generator):
        batches.append(x.clone())
        return original(x, generator)

    monkeypatch.setattr(classify_train, "augment", record)
    return batches


def test_batches_per_epoch_counts_the_epoch_loop():
    for batch in range(2, 9):
        for n in range(2, 60):
            images = n - 1 if n % batch == 1 else n  # a last batch of one is dropped
            expected = len(range(0, images, batch))
            assert batches_per_epoch(n, batch) == expected, (n, batch)
    assert batches_per_epoch(13, 4) == 3 and batches_per_epoch(14, 4) == 4
    assert batches_per_epoch(16, 16) == 1 and batches_per_epoch(17, 16) == 1


@pytest.mark.parametrize("n", [13, 14])  # 13 % 4 == 1: a last batch of one, dropped
def test_an_epoch_makes_batches_per_epoch_updates(tmp_path, monkeypatch, n):
    counted = _count_updates(monkeypatch)
    subsets = {"train": frame(tmp_path / "t", n), "val": frame(tmp_path / "v", 4, seed=1)}
    train_classifier(subsets, **outputs(tmp_path / "out"),
                     arch=ARCH, labels=LABELS, cfg=cfg(epochs=2),
                     seed=0)
    per_epoch = batches_per_epoch(n, 4)
    assert counted == [{per_epoch}, {2 * per_epoch}]
    assert list(history(tmp_path / "out")["step"]) == [per_epoch, 2 * per_epoch]
    _, meta = load_weights(tmp_path / "out/last.safetensors")
    assert (meta["budget"], meta["updates_per_epoch"]) == ("epochs", per_epoch)
    assert (meta["epoch"], meta["step"]) == (2, 2 * per_epoch)


def test_budget_steps_gives_every_training_set_the_same_updates(tmp_path, monkeypatch):
    val = frame(tmp_path / "v", 6, seed=1)
    for n in (12, 30):
        counted = _count_updates(monkeypatch)
        out = tmp_path / f"n{n}"
        train_classifier({"train": frame(tmp_path / f"t{n}", n), "val": val}, **outputs(out),
                         arch=ARCH,
                         labels=LABELS, cfg=cfg(epochs=2, budget="steps"), seed=0,
                         updates_per_epoch=3)
        monkeypatch.undo()
        assert counted == [{3}, {6}], n
        h = history(out)
        assert list(h["epoch"]) == [1, 2] and list(h["step"]) == [3, 6]
        for ckpt in ("last", "best"):
            _, meta = load_weights(out / f"{ckpt}.safetensors")
            assert (meta["budget"], meta["updates_per_epoch"]) == ("steps", 3)
            assert meta["step"] == 3 * meta["epoch"]


@pytest.mark.parametrize("n", [13, 14])
def test_budget_steps_walks_through_permutations_across_rounds(tmp_path, monkeypatch, n):
    """Batch 4, 3 updates a round, 3 rounds. 14 images: permutations of 4+4+4+2, the second round
    starts with the first permutation's last 2. 13: 4+4+4 and the 13th image dropped."""
    from mammosynth.classify.data import load_tensor

    batches = _record_batches(monkeypatch)
    train = frame(tmp_path / "t", n)
    train_classifier({"train": train, "val": frame(tmp_path / "v", 4, seed=1)},
                     **outputs(tmp_path / "out"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=3, budget="steps", augment=True), seed=0,
                     updates_per_epoch=3)
    assert list(history(tmp_path / "out")["step"]) == [3, 6, 9]
    images = load_tensor(train["path"], 32).flatten(1)
    ids = [[int((images == x).all(1).nonzero()) for x in b.flatten(1)] for b in batches]
    assert [len(b) for b in ids] == {14: [4, 4, 4, 2, 4, 4, 4, 2, 4], 13: [4] * 9}[n]
    per_permutation = {14: 4, 13: 3}[n]
    groups = [[i for b in ids[k:k + per_permutation] for i in b]
              for k in range(0, 9, per_permutation)]
    for seen in groups:  # one permutation each: distinct images, all but a dropped one
        assert len(seen) == len(set(seen))
    assert [len(g) for g in groups] == {14: [14, 14, 4], 13: [12, 12, 12]}[n]
    assert groups[0] != groups[1][:len(groups[0])]  # a fresh permutation, not the same again


@pytest.mark.parametrize("n", [12, 13])
def test_budget_steps_at_scenario_0_size_is_budget_epochs(tmp_path, n):
    """U = batches_per_epoch(n, batch): the same run, bit for bit (augmentation draws included)."""
    subsets = {"train": frame(tmp_path / "t", n), "val": frame(tmp_path / "v", 6, seed=1)}
    train_classifier(subsets, **outputs(tmp_path / "epochs"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=3, augment=True, budget="epochs"), seed=0)
    train_classifier(subsets, **outputs(tmp_path / "steps"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=3, augment=True, budget="steps"), seed=0,
                     updates_per_epoch=batches_per_epoch(n, 4))
    a, b = (history(tmp_path / d).drop(columns="seconds") for d in ("epochs", "steps"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for ckpt in ("last", "best"):
        x, y = (load_file(str(tmp_path / f"{d}/{ckpt}.safetensors")) for d in ("epochs", "steps"))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), ckpt


def test_budget_steps_resumes_mid_permutation(tmp_path, data, monkeypatch, caplog):
    """12 images, batch 4: 3 batches a permutation; 2 updates a round. Stopped after round 1
    (inside the first permutation) and after round 2 (inside the second), re-run: the run of an
    uninterrupted job."""
    config = cfg(epochs=4, budget="steps", augment=True)
    for done in (1, 2):
        out = tmp_path / f"stopped{done}"
        _write_resume_state(monkeypatch, data, out, config, epochs_done=done,
                            updates_per_epoch=2)
        state = torch.load(out / "resume.pt", weights_only=True)
        position = {1: 8, 2: 4}[done]  # round 2 finished permutation 1 and began permutation 2
        assert (state["step"], len(state["order"]), state["pos"]) == (2 * done, 12, position)
        caplog.set_level(logging.INFO)
        train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=config, seed=0,
                         updates_per_epoch=2)
        assert "resumed from" in caplog.text and not (out / "resume.pt.stale").exists()
    train_classifier(data, **outputs(tmp_path / "whole"),
                     arch=ARCH, labels=LABELS, cfg=config, seed=0,
                     updates_per_epoch=2)
    for done in (1, 2):
        _assert_same_run(tmp_path / f"stopped{done}", tmp_path / "whole")
    assert list(history(tmp_path / "whole")["step"]) == [2, 4, 6, 8]


def test_budget_steps_without_updates_per_epoch_is_budget_epochs(tmp_path, data, caplog):
    train_classifier(data, **outputs(tmp_path / "out"), arch=ARCH, labels=LABELS,
                     cfg=cfg(epochs=1, budget="steps"), seed=0)
    assert "without updates_per_epoch" in caplog.text
    _, meta = load_weights(tmp_path / "out/last.safetensors")
    assert (meta["budget"], meta["updates_per_epoch"]) == ("epochs", 3)


# -- which epoch the monitored validation loss picks ----------------------------------------------

def test_loss_weighting_changes_the_selected_epoch():
    """Imbalanced validation set (9 of class 0, 3 of class 1; training weights 2/3 and 2, the
    "balanced" weights of a 9:3 training set). Epoch A is sure of class 0 and wrong on class 1,
    epoch B unsure of class 0 and right on class 1: the plain mean prefers A, the class-weighted
    mean (what training minimises) prefers B."""
    y = torch.tensor([0] * 9 + [1] * 3)
    weights = torch.tensor([2 / 3, 2.0])
    logits = {"A": torch.tensor([-3.0] * 9 + [-1.0] * 3)[:, None],
              "B": torch.tensor([0.0] * 9 + [2.0] * 3)[:, None]}
    expected = {}
    for epoch, z in logits.items():
        per_image = F.binary_cross_entropy_with_logits(z[:, 0], y.float(), reduction="none")
        expected["none", epoch] = per_image.mean().item()
        expected["balanced", epoch] = (per_image * torch.where(y == 1, 2.0, 2 / 3)).mean().item()
    # by hand: A 0.365 / 0.681, B 0.552 / 0.410 (none / balanced)
    assert expected["none", "A"] == pytest.approx(0.365, abs=1e-3)
    assert expected["balanced", "B"] == pytest.approx(0.410, abs=1e-3)

    for weighting, pick in (("none", "A"), ("balanced", "B")):
        monitored = {epoch: monitored_loss(z, y, weights, weighting)
                     for epoch, z in logits.items()}
        for epoch in logits:
            assert monitored[epoch] == pytest.approx(expected[weighting, epoch], rel=1e-6)
        assert min(monitored, key=monitored.get) == pick, (weighting, monitored)
