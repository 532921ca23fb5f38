"""Scenario composition, metrics, the timm model helpers, and classifier training + evaluation.

Tiny CPU-only data: 32x32 PNGs where the label is the brightness; 3 epochs of a small timm net.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mammosynth import layout
from mammosynth.classify import model as models
from mammosynth.classify.data import compose, load_tensor, per_label
from mammosynth.classify.evaluate import compute_metrics, evaluate
from mammosynth.classify.train import HISTORY, train_classifier
from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png

LABELS = ["normal", "abnormal"]


def outputs(out) -> dict[str, Path]:
    """train_classifier's files in folder `out`, named as the workflow names them."""
    out = Path(out)
    return {"last": out / layout.weights_file("last"), "best": out / layout.weights_file("best"),
            "history": out / layout.HISTORY, "resume": out / layout.CLASSIFIER_RESUME}


# --------------------------------------------------------------------------- compose


def make_manifest(n_per_subset=(6, 2, 2)):
    """manifest (as read with dtype=str) and split: per subset, images alternating the labels."""
    rows, split = [], []
    k = 0
    for subset, n in zip(("train", "val", "test"), n_per_subset):
        for i in range(n):
            image_id = f"img{k:03d}"
            rows.append({"image_id": image_id, "patient_id": f"p{k:03d}",
                         "label": LABELS[i % 2], "status": "ok", "reason": "",
                         "source": f"src/{image_id}.dcm", "image_path": f"png/{image_id}.png"})
            split.append({"image_id": image_id, "subset": subset})
            k += 1
    rows.append({"image_id": "bad", "patient_id": "p999", "label": "", "status": "rejected",
                 "reason": "empty file", "source": "src/bad.dcm", "image_path": ""})
    return pd.DataFrame(rows), pd.DataFrame(split)


def synthetic_paths(count=10):
    return {label: [f"synth/{label}_{i:05d}.png" for i in range(count)] for label in LABELS}


def test_compose_adds_synthetic_images_to_train_only():
    manifest, split = make_manifest()
    synthetic = synthetic_paths()
    subsets = compose(manifest, split, synthetic, 8, LABELS)
    assert set(subsets) == {"train", "val", "test"}
    for name in ("train", "val", "test"):
        assert {"image_id", "path", "label", "y", "synthetic"} <= set(subsets[name].columns)
        assert list(subsets[name].index) == list(range(len(subsets[name])))

    for name, n in (("val", 2), ("test", 2)):
        sub = subsets[name]
        assert len(sub) == n
        assert not sub["synthetic"].astype(bool).any()
        assert not sub["image_id"].str.startswith("synthetic").any()
        assert set(sub["image_id"]) == set(split.loc[split["subset"] == name, "image_id"])

    train = subsets["train"]
    real, synth = train[~train["synthetic"].astype(bool)], train[train["synthetic"].astype(bool)]
    assert set(real["image_id"]) == set(split.loc[split["subset"] == "train", "image_id"])
    assert len(synth) == 8
    for label in LABELS:
        mine = synth[synth["label"] == label]
        assert len(mine) == 4  # n / len(labels)
        assert list(mine["path"]) == synthetic[label][:4]  # the first k of each label
        assert list(mine["image_id"]) == [f"synthetic-{label}-{i:05d}" for i in range(4)]
    # the manifest's image_path becomes path
    assert (real["path"] == "png/" + real["image_id"] + ".png").all()

    for sub in subsets.values():  # y follows the order of `labels`
        assert (sub["y"] == sub["label"].map({"normal": 0, "abnormal": 1})).all()
        assert sub["y"].dtype.kind == "i"


def test_compose_label_order_sets_y():
    manifest, split = make_manifest()
    reverse = compose(manifest, split, synthetic_paths(), 2, LABELS[::-1])
    for sub in reverse.values():
        assert (sub["y"] == sub["label"].map({"abnormal": 0, "normal": 1})).all()


def test_compose_scenarios_are_nested():
    manifest, split = make_manifest()
    synthetic = synthetic_paths()
    small = compose(manifest, split, synthetic, 4, LABELS)["train"]
    large = compose(manifest, split, synthetic, 8, LABELS)["train"]
    small_paths = set(small.loc[small["synthetic"].astype(bool), "path"])
    large_paths = set(large.loc[large["synthetic"].astype(bool), "path"])
    assert len(small_paths) == 4 and len(large_paths) == 8
    assert small_paths < large_paths


def test_compose_without_synthetic_images():
    manifest, split = make_manifest()
    subsets = compose(manifest, split, {}, 0, LABELS)
    assert len(subsets["train"]) == 6
    assert not subsets["train"]["synthetic"].astype(bool).any()
    assert "bad" not in set(pd.concat(subsets.values())["image_id"])


def test_compose_errors():
    manifest, split = make_manifest()
    with pytest.raises(UserError, match="needs 6 synthetic"):
        compose(manifest, split, synthetic_paths(5), 12, LABELS)
    only_one = {"normal": synthetic_paths()["normal"]}
    with pytest.raises(UserError, match="abnormal"):
        compose(manifest, split, only_one, 2, LABELS)
    assert per_label(12, ["a", "b", "c"]) == 4  # config.check makes n a multiple of the labels


# --------------------------------------------------------------------------- metrics


def _by_hand(y, pred, n_classes):
    out = []
    for c in range(n_classes):
        tp = int(np.sum((pred == c) & (y == c)))
        fp = int(np.sum((pred == c) & (y != c)))
        fn = int(np.sum((pred != c) & (y == c)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"precision": precision, "recall": recall, "f1": f1,
                    "support": int(np.sum(y == c))})
    return out


def _assert_plain_json(value):
    """Only dict/list/str/int/float/bool/None, no NaN or infinity."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str
            _assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            _assert_plain_json(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        if type(value) is float:
            assert np.isfinite(value)


def _binary_case():
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.3, 0.6, 0.2, 0.45, 0.9, 0.8, 0.4, 0.7, 0.65, 0.35, 0.55])
    return y, np.stack([1 - p1, p1], axis=1)


def test_binary_metrics_by_hand():
    y, prob = _binary_case()
    m = compute_metrics(y, prob, LABELS)
    pred = (prob[:, 1] > 0.5).astype(int)
    assert m["n"] == 12
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    hand = _by_hand(y, pred, 2)
    recalls = [h["recall"] for h in hand]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    for label, h in zip(LABELS, hand):
        for key in ("precision", "recall", "f1"):
            assert m["per_class"][label][key] == pytest.approx(h[key]), (label, key)
        assert m["per_class"][label]["support"] == h["support"]
    for key in ("precision", "recall", "f1"):
        assert m["macro"][key] == pytest.approx(np.mean([h[key] for h in hand]))
        weighted = sum(h[key] * h["support"] for h in hand) / len(y)
        assert m["weighted"][key] == pytest.approx(weighted)

    assert m["auc"] == pytest.approx(roc_auc_score(y, prob[:, 1]))
    tp = np.sum((pred == 1) & (y == 1))
    tn = np.sum((pred == 0) & (y == 0))
    assert m["sensitivity"] == pytest.approx(tp / np.sum(y == 1))  # abnormal = class 1
    assert m["specificity"] == pytest.approx(tn / np.sum(y == 0))
    cm = [[int(np.sum((y == a) & (pred == b))) for b in range(2)] for a in range(2)]
    assert m["confusion_matrix"] == cm
    assert 0.0 <= m["pr_auc"] <= 1.0
    assert "note" not in m

    _assert_plain_json(m)
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_binary_metrics_hand_values():
    # 4 images, one mistake: an abnormal image predicted normal
    y = np.array([0, 0, 1, 1])
    prob = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    m = compute_metrics(y, prob, LABELS)
    assert m["accuracy"] == 0.75
    assert m["balanced_accuracy"] == 0.75
    assert m["per_class"]["normal"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                        "f1": pytest.approx(0.8), "support": 2}
    assert m["per_class"]["abnormal"] == {"precision": 1.0, "recall": 0.5,
                                          "f1": pytest.approx(2 / 3), "support": 2}
    assert m["sensitivity"] == 0.5 and m["specificity"] == 1.0
    assert m["auc"] == 1.0  # the scores still rank every abnormal above every normal
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]


def test_one_class_test_set_has_no_auc():
    y = np.array([1, 1, 1])
    prob = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    m = compute_metrics(y, prob, LABELS)
    assert m["auc"] is None and m["pr_auc"] is None
    assert "one class" in m["note"]
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["normal"]["support"] == 0
    _assert_plain_json(m)
    json.dumps(m, allow_nan=False)


def test_multiclass_macro_auc_is_mean_of_one_vs_rest():
    rng = np.random.default_rng(1)
    labels = ["a", "b", "c"]
    y = np.array([0, 1, 2] * 6)
    logits = rng.normal(size=(18, 3)) + 1.5 * np.eye(3)[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, prob, labels)
    expected = np.mean([roc_auc_score(y == c, prob[:, c]) for c in range(3)])
    assert m["auc"] == pytest.approx(expected)
    assert "sensitivity" not in m and "note" not in m
    pred = prob.argmax(1)
    hand = _by_hand(y, pred, 3)
    for label, h in zip(labels, hand):
        assert m["per_class"][label]["f1"] == pytest.approx(h["f1"])
    assert m["balanced_accuracy"] == pytest.approx(np.mean([h["recall"] for h in hand]))
    assert np.array(m["confusion_matrix"]).sum() == 18
    _assert_plain_json(m)
    json.dumps(m, allow_nan=False)


def test_multiclass_with_an_absent_class():
    labels = ["a", "b", "c"]
    y = np.array([0, 1, 0, 1, 0, 1])
    prob = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1],
                     [0.5, 0.4, 0.1], [0.4, 0.35, 0.25]])
    m = compute_metrics(y, prob, labels)
    expected = np.mean([roc_auc_score(y == c, prob[:, c]) for c in (0, 1)])
    assert m["auc"] == pytest.approx(expected)
    assert "present" in m["note"]
    assert m["per_class"]["c"]["support"] == 0
    _assert_plain_json(m)
    json.dumps(m, allow_nan=False)


# --------------------------------------------------------------------------- model helpers


def test_n_outputs():
    assert models.n_outputs(2) == 1
    assert models.n_outputs(3) == 3
    assert models.n_outputs(6) == 6


def test_pretrained_file_resolution(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert models.pretrained_file(None, "resnet152") is None
    assert models.pretrained_file(False, "resnet152") is None
    assert models.pretrained_file(str(weights), "resnet152") == str(weights)
    assert models.pretrained_file({"resnet152": str(weights)}, "resnet152", 6) == str(weights)
    with pytest.raises(UserError, match="true, but nothing is downloaded"):
        models.pretrained_file(True, "resnet152")
    with pytest.raises(UserError, match="no file for inception_v3; add 'inception_v3: "):
        models.pretrained_file({"resnet152": str(weights)}, "inception_v3", 2)
    with pytest.raises(UserError, match="one file for 2 archs"):
        models.pretrained_file(str(weights), "resnet152", 2)
    with pytest.raises(UserError, match=r"/nonexistent.pth \(for resnet152\) does not exist"):
        models.pretrained_file({"resnet152": "/nonexistent.pth"}, "resnet152")


def test_create_shapes():
    model = models.create("resnet10t", 6, 1).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, 6)
    model = models.create("resnet10t", 2, 3).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1)


def test_create_from_local_pretrained_file(tmp_path):
    from safetensors.torch import save_file

    source = models.create("resnet10t", 2, 1)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "weights.safetensors")
    loaded = models.create("resnet10t", 2, 1, pretrained_file=str(tmp_path / "weights.safetensors"))
    # timm keeps the pretrained body and, as for ImageNet weights (1000 classes), starts the
    # classifier head afresh
    head = loaded.pretrained_cfg["classifier"]
    body = [k for k in state if not k.startswith(head + ".")]
    assert len(body) == len(state) - 2
    for k in body:
        assert torch.equal(loaded.state_dict()[k], state[k]), k


def test_normalize():
    model = models.create("resnet10t", 2, 3)
    mean = torch.tensor(model.pretrained_cfg["mean"], dtype=torch.float32)
    std = torch.tensor(model.pretrained_cfg["std"], dtype=torch.float32)
    x = torch.rand(2, 1, 8, 8)

    three = models.Normalize(model, 3)(x)
    assert three.shape == (2, 3, 8, 8)
    for c in range(3):
        assert torch.allclose(three[:, c], (x[:, 0] - mean[c]) / std[c])

    one = models.Normalize(model, 1)(x)
    assert one.shape == (2, 1, 8, 8)
    assert torch.allclose(one, (x - mean.mean()) / std.mean())
    assert not models.Normalize(model, 1).state_dict()  # buffers are not saved with weights


def test_probabilities():
    one = models.probabilities(torch.tensor([[0.0], [2.0], [-1.0]]))
    assert one.shape == (3, 2)
    assert torch.allclose(one.sum(1), torch.ones(3))
    assert torch.allclose(one[:, 1], torch.sigmoid(torch.tensor([0.0, 2.0, -1.0])))
    many = models.probabilities(torch.randn(4, 5))
    assert many.shape == (4, 5)
    assert torch.allclose(many.sum(1), torch.ones(4))


def test_save_and_load_weights(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    meta = {"arch": "x", "labels": ["a", "b"], "in_chans": 1, "image_size": 32, "epoch": 7}
    path = tmp_path / "w.safetensors"
    models.save_weights(net, path, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
    state, loaded_meta = models.load_weights(path)
    assert loaded_meta == meta
    assert state.keys() == net.state_dict().keys()
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    state, _ = models.load_weights(str(path))  # a str path works too
    assert len(state) == len(net.state_dict())


# --------------------------------------------------------------------------- train + evaluate


def _write_subset(folder, subset, n, labels=LABELS, size=32, seed=0):
    """n images cycling through the labels: label i has brightness ~ (i + 0.5) / len(labels)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = i % len(labels)
        level = (y + 0.5) / len(labels)
        image = np.clip(level + 0.1 * (rng.random((size, size)) - 0.5), 0, 1)
        path = folder / f"{subset}_{i:02d}.png"
        write_png(path, image)
        rows.append({"image_id": f"{subset}_{i:02d}", "path": str(path), "label": labels[y],
                     "synthetic": False, "y": y})
    return pd.DataFrame(rows)


def classifier_cfg(**overrides):
    cfg = dict(image_size=32, in_chans=1, optimizer="adam", optimizer_args={"amsgrad": True},
               lr=1e-2, weight_decay=0.0, batch_size=4, epochs=3, class_weights="balanced",
               monitor="val_loss", patience=None, pretrained=None)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classify_images")
    return {"train": _write_subset(folder, "train", 12, seed=1),
            "val": _write_subset(folder, "val", 4, seed=2),
            "test": _write_subset(folder, "test", 4, seed=3)}


ARCH = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("classifier") / "run"
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS, cfg=classifier_cfg(), seed=0)
    return out


def read_history(out):
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == HISTORY
    return rows


def _assert_best_marks_new_minima(rows, monitor):
    best_so_far = float("inf")
    for r in rows:
        value = float(r[monitor])
        assert r["best"] == str(value < best_so_far), (r["epoch"], value, best_so_far)
        best_so_far = min(best_so_far, value)


def test_load_tensor(data):
    x = load_tensor(data["val"]["path"], 16)
    assert x.shape == (4, 1, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[1].mean()) > float(x[0].mean())  # abnormal images are the bright ones


def test_train_writes_weights_and_history(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["best.safetensors", "history.csv",
                                                         "last.safetensors"]
    rows = read_history(trained)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    _assert_best_marks_new_minima(rows, "val_loss")
    val_loss = [float(r["val_loss"]) for r in rows]
    best_epoch = int(np.argmin(val_loss)) + 1
    assert rows[0]["best"] == "True"
    assert all(float(r["lr"]) == pytest.approx(1e-2) for r in rows)
    assert all(0.0 <= float(r["train_acc"]) <= 1.0 and 0.0 <= float(r["val_acc"]) <= 1.0
               for r in rows)

    _, last_meta = models.load_weights(trained / "last.safetensors")
    best_state, best_meta = models.load_weights(trained / "best.safetensors")
    assert last_meta["epoch"] == 3
    assert best_meta["epoch"] == best_epoch
    for meta in (last_meta, best_meta):
        assert meta["arch"] == ARCH and meta["labels"] == LABELS
        assert meta["in_chans"] == 1 and meta["image_size"] == 32 and meta["num_classes"] == 1
    net = models.create(ARCH, 2, 1)
    net.load_state_dict(best_state)  # the saved state fits the architecture


def test_evaluate_best_and_last(trained, data):
    test = data["test"]
    for ckpt in ("best", "last"):
        metrics, predictions = evaluate(trained / f"{ckpt}.safetensors", test, batch_size=3)
        assert metrics["n"] == 4
        assert metrics["arch"] == ARCH and metrics["labels"] == LABELS
        _, meta = models.load_weights(trained / f"{ckpt}.safetensors")
        assert metrics["epoch"] == meta["epoch"]
        json.dumps(metrics, allow_nan=False)
        assert list(predictions.columns) == ["image_id", "label", "y", "pred", "prob_normal",
                                             "prob_abnormal", "synthetic"]
        assert list(predictions["image_id"]) == list(test["image_id"])
        total = predictions["prob_normal"] + predictions["prob_abnormal"]
        assert np.allclose(total, 1.0, atol=1e-6)
        pred = predictions[["prob_normal", "prob_abnormal"]].to_numpy().argmax(1)
        assert (predictions["pred"].to_numpy() == pred).all()
        assert metrics["accuracy"] == pytest.approx(np.mean(pred == test["y"].to_numpy()))


def test_training_is_deterministic(tmp_path, data, trained):
    train_classifier(data, **outputs(tmp_path / "again"),
                     arch=ARCH, labels=LABELS, cfg=classifier_cfg(),
                     seed=0)
    a, _ = models.load_weights(trained / "last.safetensors")
    b, _ = models.load_weights(tmp_path / "again" / "last.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_history(trained)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"}
                     for r in read_history(tmp_path / "again")]


def test_early_stopping(tmp_path, data):
    out = tmp_path / "patience"
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS,
                     cfg=classifier_cfg(epochs=10, patience=1), seed=0)
    rows = read_history(out)
    assert 1 <= len(rows) <= 10
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    _assert_best_marks_new_minima(rows, "val_loss")
    best_epochs = [int(r["epoch"]) for r in rows if r["best"] == "True"]
    if len(rows) < 10:  # stopped early: the last epoch is the first one without improvement
        assert len(rows) - best_epochs[-1] == 1
        assert rows[-1]["best"] == "False"
    else:  # ran all epochs: val_loss improved at every epoch but possibly the last
        assert best_epochs[-1] >= 9
    _, meta = models.load_weights(out / "best.safetensors")
    assert meta["epoch"] == best_epochs[-1]


def test_monitor_train_loss(tmp_path, data):
    out = tmp_path / "train_loss"
    train_classifier(data, **outputs(out), arch=ARCH, labels=LABELS,
                     cfg=classifier_cfg(epochs=2, monitor="train_loss", class_weights="none"),
                     seed=0)
    rows = read_history(out)
    _assert_best_marks_new_minima(rows, "train_loss")
    _, meta = models.load_weights(out / "best.safetensors")
    assert meta["epoch"] == int(np.argmin([float(r["train_loss"]) for r in rows])) + 1


def test_three_channel_input(tmp_path, data):
    # 13 training images with batch 4 leave a batch of one, which BatchNorm cannot train on
    folder = tmp_path / "img"
    folder.mkdir()
    subsets = {"train": _write_subset(folder, "train", 13, seed=4), "val": data["val"]}
    out = tmp_path / "rgb"
    train_classifier(subsets, **outputs(out), arch="resnet10t", labels=LABELS,
                     cfg=classifier_cfg(in_chans=3, epochs=1, optimizer="sgd", optimizer_args={},
                                        lr=1e-3), seed=0)
    _, meta = models.load_weights(out / "last.safetensors")
    assert meta["in_chans"] == 3 and meta["arch"] == "resnet10t"
    metrics, predictions = evaluate(out / "best.safetensors", data["test"])
    assert metrics["n"] == 4
    assert np.allclose(predictions[["prob_normal", "prob_abnormal"]].sum(axis=1), 1.0, atol=1e-6)


def test_multiclass_training(tmp_path):
    labels = ["a", "b", "c"]
    subsets = {"train": _write_subset(tmp_path, "train", 9, labels=labels, seed=5),
               "val": _write_subset(tmp_path, "val", 3, labels=labels, seed=6)}
    out = tmp_path / "three"
    train_classifier(subsets, **outputs(out),
                     arch=ARCH, labels=labels, cfg=classifier_cfg(epochs=1),
                     seed=0)
    _, meta = models.load_weights(out / "best.safetensors")
    assert meta["num_classes"] == 3 and meta["labels"] == labels
    test = _write_subset(tmp_path, "test", 6, labels=labels, seed=7)
    metrics, predictions = evaluate(out / "best.safetensors", test)
    assert metrics["n"] == 6 and metrics["auc"] is not None
    cols = [f"prob_{label}" for label in labels]
    assert np.allclose(predictions[cols].sum(axis=1), 1.0, atol=1e-6)
    json.dumps(metrics, allow_nan=False)
