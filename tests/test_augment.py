"""Augmented copies for the control arm aug{n}: mammography-safe, deterministic, auditable."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import breast_image
from PIL import Image
from scipy import ndimage

from mammosynth.augment import (INDEX_COLUMNS, augment_image, read_augmented,
                                write_augmented)
from mammosynth.errors import UserError
from mammosynth.imaging.png import read_png, write_png

SEEDS = range(50)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A preprocessed-like image: black background, breast against the left (chest-wall) edge,
    reaching 0.7 of the width, quantised to 16 bits as read from a PNG."""
    return np.round(breast_image(128, 128, side="L") * 65535).astype(np.float32) / 65535


@pytest.fixture(scope="module")
def copies(image) -> list[tuple[np.ndarray, dict]]:
    return [augment_image(image, seed) for seed in SEEDS]


def test_deterministic_in_the_seed(image):
    a, params = augment_image(image, 7)
    b, same = augment_image(image, 7)
    c, other = augment_image(image, 8)
    assert a.tobytes() == b.tobytes() and params == same
    assert not np.array_equal(a, c) and params != other
    assert set(params) == set(INDEX_COLUMNS) - {"index", "source_image", "file", "seed"}


def test_independent_of_global_rng(image):
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    a, _ = augment_image(image, 3)
    torch.manual_seed(1)
    np.random.seed(1)
    torch.rand(10)
    b, _ = augment_image(image, 3)
    assert a.tobytes() == b.tobytes()


def test_chest_wall_stays_left(image, copies):
    """Never a horizontal flip, and the breast is not pulled off the chest-wall edge."""
    edge = (image[:, 0] > 0).sum()
    right = int(0.85 * image.shape[1])  # breast reaches 0.7 of the width; scale <= 1.1
    for out, params in copies:
        assert (out[:, 0] > 0).sum() >= 0.8 * edge, params
        assert not out[:, right:].any(), params
        columns = out.sum(axis=0)
        assert np.average(np.arange(out.shape[1]), weights=columns) < 0.35 * out.shape[1]


def test_background_exactly_zero_and_range(image, copies):
    """Background stays 0 outside the moved breast; the breast is one region, no noise leaks."""
    near = ndimage.binary_dilation(image > 0, iterations=20)  # rotation + scale + elastic move
    for out, params in copies:  # the outline by < 20 px at 128 px
        assert out.dtype == np.float32 and out.shape == image.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not out[~near].any(), params
        assert ndimage.label(out > 0)[1] == 1, params
        assert 0.75 < (out > 0).sum() / (image > 0).sum() < 1.3, params  # scale^2: 0.81..1.21
    vflip = [p["vflip"] for _, p in copies]
    assert any(vflip) and not all(vflip)


def test_changes_small_but_real(image, copies):
    """Mean |copy - input| over the image < 0.12: the breast covers ~44 % of it at ~0.55-0.95;
    scale 0.9-1.1 moves the outline so <= ~20 % of the breast swaps breast / background (~0.05),
    gamma 0.8-1.25 moves a value by <= ~0.07 (~0.03), noise sigma <= 0.01 (~0.004) - so at
    most ~0.09. A copy is never the input."""
    inside = ndimage.binary_erosion(image > 0, iterations=25)  # stays breast in every copy
    for out, params in copies:
        diff = np.abs(out - image)
        assert 1e-3 < diff.mean() < 0.12, params
        assert np.median(diff[inside]) < 0.1, params
        assert np.corrcoef(out[inside], image[inside])[0, 1] > 0.8, params
    for key, (low, high) in {"rotation": (-10, 10), "scale": (0.9, 1.1), "gamma": (0.8, 1.25),
                             "noise_sigma": (0, 0.01), "elastic_alpha": (0, 0.01)}.items():
        values = [p[key] for _, p in copies]
        assert low <= min(values) and max(values) <= high, key
        assert max(values) - min(values) > 0.5 * (high - low), key  # drawn, not fixed


def test_rejects_a_stack(image):
    with pytest.raises(ValueError):
        augment_image(image[None], 0)


def sources(tmp_path, n: int = 3, shapes=((96, 96), (64, 80), (96, 96))):
    out = []
    for i, (h, w) in zip(range(n), shapes):
        path = tmp_path / "real" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        write_png(path, breast_image(h, w, side="L") * (0.6 + 0.1 * i))
        out.append((f"img{i}", str(path)))
    return out


def test_write_and_read_augmented(tmp_path):
    src = sources(tmp_path)
    draws = [src[2], src[0], src[2], src[1]]  # drawn again once every image was drawn
    out = tmp_path / "augmented" / "split0" / "malignant"
    write_augmented(draws, out, seed=11)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i:05d}.png" for i in range(4)] + ["index.csv"])
    with open(out / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == INDEX_COLUMNS
    assert [r["source_image"] for r in rows] == [s for s, _ in draws]
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]
    assert len({r["seed"] for r in rows}) == 4
    for (source, path), row in zip(draws, rows):
        with Image.open(out / row["file"]) as im:
            assert im.mode.startswith("I;16") and im.size == Image.open(path).size
        real = read_png(path)
        copy = read_png(out / row["file"])
        assert copy.shape == real.shape and not np.array_equal(copy, real)
        assert not copy[~ndimage.binary_dilation(real > 0, iterations=15)].any()
    # the same source drawn twice gives two different copies
    assert not np.array_equal(read_png(out / "00000.png"), read_png(out / "00002.png"))
    assert read_augmented(out) == [(s, str(out / f"{i:05d}.png"))
                                   for i, (s, _) in enumerate(draws)]
    assert not list(out.parent.glob(".*.tmp"))


def test_size_resizes_the_source(tmp_path):
    src = sources(tmp_path)
    write_augmented(src[1:2], tmp_path / "out", seed=0, size=48)
    assert read_png(tmp_path / "out" / "00000.png").shape == (48, 48)


def test_nested_draws_give_the_same_first_copies(tmp_path):
    """write_augmented on the first k draws writes the same first k files as on all of them."""
    src = sources(tmp_path)
    draws = [src[1], src[0], src[2], src[0], src[1]]
    write_augmented(draws, tmp_path / "all", seed=5)
    write_augmented(draws[:2], tmp_path / "first", seed=5)
    for i in range(2):
        name = f"{i:05d}.png"
        assert (tmp_path / "all" / name).read_bytes() == (tmp_path / "first" / name).read_bytes()
    with open(tmp_path / "all" / "index.csv") as f, open(tmp_path / "first" / "index.csv") as g:
        assert f.read().splitlines()[:3] == g.read().splitlines()
    write_augmented(draws, tmp_path / "again", seed=5)  # and a re-run is bit-identical
    assert all((tmp_path / "again" / p.name).read_bytes() == p.read_bytes()
               for p in (tmp_path / "all").iterdir())
    write_augmented(draws[:1], tmp_path / "other", seed=6)
    assert (tmp_path / "other" / "00000.png").read_bytes() != (
        tmp_path / "all" / "00000.png").read_bytes()


def test_rewrite_replaces_the_folder_and_empty_draws(tmp_path):
    src = sources(tmp_path)
    out = tmp_path / "out"
    write_augmented(src, out, seed=1)
    write_augmented(src[:1], out, seed=1)
    assert len(read_augmented(out)) == 1 and not (out / "00001.png").exists()
    write_augmented([], out, seed=1)
    assert read_augmented(out) == []


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="missing.png.*re-run the preprocess"):
        write_augmented([("x", str(tmp_path / "missing.png"))], tmp_path / "out", seed=0)
    with pytest.raises(UserError, match="index.csv: missing"):
        read_augmented(tmp_path)
    src = sources(tmp_path)
    write_augmented(src[:2], tmp_path / "out", seed=0)
    index = tmp_path / "out" / "index.csv"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # copy 0 lost
    with pytest.raises(UserError, match="0..n-1"):
        read_augmented(tmp_path / "out")


def test_augment_split_copies_the_dup_draws_that_compose_accepts(tmp_path, image):
    """The rule's whole job: the split's dup draws of a label, augmented; aug{n} accepts them."""
    import pandas as pd

    from mammosynth.augment import augment_split
    from mammosynth.classify.data import compose

    rows = []
    for i in range(12):
        path = tmp_path / f"img{i}.png"
        write_png(path, image)
        rows.append({"image_id": f"i{i}", "patient_id": f"p{i}", "label": ["a", "b"][i % 2],
                     "status": "ok", "image_path": str(path)})
    manifest = pd.DataFrame(rows)
    split = pd.DataFrame({"image_id": manifest["image_id"],
                          "subset": ["train"] * 8 + ["val"] * 2 + ["test"] * 2})
    for label in ("a", "b"):
        augment_split(manifest, split, label, 3, 7, ["a", "b"], tmp_path / f"aug-{label}")
    augmented = {label: read_augmented(tmp_path / f"aug-{label}") for label in ("a", "b")}
    subsets = compose(manifest, split, {}, 6, ["a", "b"], arm="aug", augmented=augmented, seed=7)
    copies = subsets["train"][subsets["train"]["kind"] == "augmented"]
    assert len(copies) == 6 and set(copies["source_image"]) <= set(split["image_id"][:8])
    assert read_png(augmented["a"][0][1]).shape == image.shape
