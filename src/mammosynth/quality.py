"""Quality and memorisation audit of a synthetic image set against the real (training) images.

`audit` compares the two sets at a common square `size` and returns a JSON-ready dict:

- intensity: how far apart the pixel-intensity distributions are (1-D Wasserstein distance,
  64-bin histogram intersection, mean and standard deviation of each set);
- diversity: mean pairwise MS-SSIM within each set (a collapsed generator scores much higher
  than the real images do);
- memorization: every synthetic image's nearest real image by normalised cross-correlation
  (NCC) over the breast region, the count of near copies, the closest pairs, and as a baseline
  every real image's nearest real image of *another patient* (given the patients; otherwise of
  any other image), so a reader can tell whether the synthetic images sit closer to the
  training images than one woman's images sit to another's;
- fid: FID and KID from a local Inception-v3 weights file, when asked for (nothing can be
  downloaded, so the weights must be given).

Everything is deterministic: subsamples use fixed seeds, and KID's subset draws run under a
fixed torch seed that does not disturb the caller's random state.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from pathlib import Path

import numpy as np

from mammosynth.errors import UserError
from mammosynth.imaging.png import read_pngs

MIN_SIZE = 32
MAX_WASSERSTEIN_PIXELS = 200_000  # per side
HISTOGRAM_BINS = 64
MAX_SSIM_PAIRS = 500  # per set
SSIM_KERNEL = 11
SSIM_SIGMA = 1.5
DEFAULT_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, torchmetrics' default
N_CLOSEST = 8
# torch-fidelity's Inception-v3 (TF FID weights converted to PyTorch), the network torchmetrics'
# FID/KID run; fetch it elsewhere and copy it in


def audit(real_paths: list[str], synthetic_paths: list[str], *, size: int = 64,
          near_copy_threshold: float = 0.95, fid: bool = False,
          inception_weights: str | None = None,
          figures: dict[str, str | Path] | None = None,
          held_out_paths: list[str] | None = None, test_paths: list[str] | None = None,
          classifier: str | None = None, label: str | None = None,
          thresholds: dict | None = None, real_groups: list[str] | None = None) -> dict:
    """Audit synthetic images against real ones; see the module docstring for what is measured.

    With `thresholds` (config quality.verdict) the result also holds `realism`: the measures of
    `mammosynth.realism` and their verdict, for the synthetic images and, as the floor, for
    `held_out_paths` (the label's real val + test images) presented as synthetic. `classifier`
    (the split's real-only weights) gives label fidelity - the fraction of synthetic images it
    calls `label`, beside its recall on `test_paths` - and the features for precision /
    recall / density / coverage.

    Images are read with `read_pngs(paths, size)` (float in [0, 1], resized to size x size).

    MS-SSIM (`diversity`) uses torchmetrics' functional MS-SSIM with an 11-px Gaussian kernel
    (sigma 1.5), data range 1, and as many scales as the image size allows: torchmetrics needs
    `size // (scales - 1)**2 > kernel - 1`, so 5 scales (the standard) need size >= 176, 4 scales
    size >= 99, 3 scales size >= 44 and 2 scales size >= 11; at the default size 64 that is 3
    scales. The weights are the first `scales` of the standard betas (0.0448, 0.2856, 0.3001,
    0.2363, 0.1333) renormalised to sum to 1. `diversity` records `scales`, `kernel_size` and
    `betas`. Each set's mean is over all pairs, or a fixed-seed sample of 500 distinct pairs.

    NCC (`memorization`), over the breast: preprocessed images (and synthetic ones, post-processed
    the same way) have a background of exactly 0, which every image shares and which would
    otherwise inflate every correlation. Each image (at `size`) becomes a vector: its breast
    pixels (value > 0) minus the mean of its breast pixels, its background pixels 0, divided by
    the vector's L2 norm. NCC of two images is the dot product of their vectors: the
    covariance over the pixels where both have breast, normalised by each image's own breast
    norm, so it lies in [-1, 1], is 1 for an image and itself or an intensity-scaled copy, and
    is lowered where the two breasts do not overlap. An image with no breast pixels or a
    constant breast has NCC 0 with everything. A synthetic image is a near copy when its NCC
    with its nearest real image is at least `near_copy_threshold`.

    The baseline (`memorization.real_nn_ncc`, `real_per_image`): each real image's NCC with its
    nearest real image, excluding itself and, with `real_groups` (the patient id of each real
    image, aligned with `real_paths`), every image of the same patient - one woman's other view
    and other breast are far closer to her image than any synthetic image should be to a
    training image, and would inflate the baseline. `memorization.baseline_excludes` says which:
    "same patient" or "self". An empty patient id counts as a patient of its own. UserError if
    every real image is of one patient (there is no baseline).

    FID/KID (`fid`, only when `fid=True`): one Inception-v3 pass (torch-fidelity's network as
    torchmetrics wraps it, `NoTrainInceptionV3`, 2048-d pool features) over the grayscale images
    replicated to 3 channels and converted to bytes exactly as torchmetrics' `normalize=True`
    does (`(x * 255).byte()`, resized to 299 internally). The features feed torchmetrics'
    `FrechetInceptionDistance` and `KernelInceptionDistance` (subset size min(50, n_real,
    n_synthetic), 100 subsets, seeded). The network runs once per image rather than once per
    metric, and torchmetrics' KID has no `feature_extractor_weights_path` argument, so both get
    the precomputed features. FID is clamped at 0 (tiny negatives are round-off).

    Beyond the keys the report needs, the dict also holds `intensity.bins` and
    `pixels_compared`, `diversity.pairs` as {synthetic, real} counts, `memorization.real_per_image`
    (the baseline's full distribution) and `fid.kid_subset_size`.

    figures: also write {"pairs": path} (the closest synthetic/real pairs) and {"nn": path}
    (histogram of nearest-real NCC against the real-real baseline).
    """
    if len(real_paths) < 2 or len(synthetic_paths) < 2:
        missing = []
        if len(real_paths) < 2:
            missing.append(f"{len(real_paths)} real image(s)")
        if len(synthetic_paths) < 2:
            missing.append(f"{len(synthetic_paths)} synthetic image(s)")
        raise UserError(f"quality audit needs at least 2 real and 2 synthetic images; got "
                        f"{' and '.join(missing)}")
    if int(size) != size or size < MIN_SIZE:
        raise UserError(f"quality audit size {size}: must be a whole number of pixels, at least "
                        f"{MIN_SIZE}")
    size = int(size)
    near_copy_threshold = float(near_copy_threshold)
    groups = _group_codes(real_groups, len(real_paths))
    weights = Path(inception_weights) if fid else None

    real_paths = [str(p) for p in real_paths]
    synthetic_paths = [str(p) for p in synthetic_paths]
    real = read_pngs(real_paths, size)
    synthetic = read_pngs(synthetic_paths, size)

    memorization, syn_ncc, real_ncc = _memorization(real, synthetic, real_paths, synthetic_paths,
                                                    near_copy_threshold, groups)
    result = {
        "n_real": len(real_paths),
        "n_synthetic": len(synthetic_paths),
        "size": size,
        "intensity": _intensity(real, synthetic),
        "diversity": _diversity(real, synthetic),
        "memorization": memorization,
        "fid": (_fid_kid(real, synthetic, weights) if fid
                else {"computed": False, "reason": "quality.fid is off"}),
    }
    if thresholds is not None:
        held_out = read_pngs([str(p) for p in held_out_paths or []], size)
        result["realism"] = _realism(real, synthetic, held_out, real_paths, synthetic_paths,
                                     held_out_paths or [], test_paths or [], classifier, label,
                                     thresholds)
    if figures:
        _pairs_figure(figures["pairs"], memorization["closest"], synthetic, real,
                      synthetic_paths, real_paths)
        _nn_figure(figures["nn"], syn_ncc, real_ncc, near_copy_threshold,
                   by_patient=real_groups is not None)
    return result


# --- intensity -------------------------------------------------------------------------------

def _intensity(real: np.ndarray, synthetic: np.ndarray) -> dict:
    from scipy.stats import wasserstein_distance

    r, s = real.ravel(), synthetic.ravel()
    rng = np.random.default_rng(0)
    r_sub = r if r.size <= MAX_WASSERSTEIN_PIXELS else rng.choice(r, MAX_WASSERSTEIN_PIXELS,
                                                                  replace=False)
    s_sub = s if s.size <= MAX_WASSERSTEIN_PIXELS else rng.choice(s, MAX_WASSERSTEIN_PIXELS,
                                                                  replace=False)
    hr = np.histogram(r, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / r.size
    hs = np.histogram(s, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / s.size
    return {
        "wasserstein": float(wasserstein_distance(r_sub.astype(np.float64),
                                                  s_sub.astype(np.float64))),
        "histogram_intersection": float(min(1.0, np.minimum(hr, hs).sum())),
        "bins": HISTOGRAM_BINS,
        "pixels_compared": int(min(r_sub.size, s_sub.size)),
        "real": {"mean": float(r.mean(dtype=np.float64)), "std": float(r.std(dtype=np.float64))},
        "synthetic": {"mean": float(s.mean(dtype=np.float64)),
                      "std": float(s.std(dtype=np.float64))},
    }


# --- realism verdict -------------------------------------------------------------------------

def _realism(real, synthetic, held_out, real_paths, synthetic_paths, held_out_paths,
             test_paths, classifier, label, thresholds) -> dict:
    from mammosynth import realism

    probes = {}
    if classifier:
        from mammosynth.classify.evaluate import probe

        sets = {"real": list(real_paths), "synthetic": list(synthetic_paths),
                "held_out": list(held_out_paths), "test": list(test_paths)}
        unique = list(dict.fromkeys(p for paths in sets.values() for p in paths))
        names, prob, feats = probe(classifier, unique)  # the test images are held out too: once
        if label not in names:
            raise UserError(f"{classifier}: this classifier knows the labels "
                            f"{', '.join(names)}, not {label!r}; delete it and re-run")
        calls = prob.argmax(1) == names.index(label)
        row = {p: i for i, p in enumerate(unique)}
        probes = {name: (calls[[row[p] for p in paths]], feats[[row[p] for p in paths]])
                  for name, paths in sets.items()}

    def measures(candidate, name):
        c2st = realism.c2st(real, candidate) if len(candidate) >= 2 else None
        out = {"c2st": c2st, "image": realism.image_statistics(real, candidate),
               "label_fidelity": None, "prdc": None}
        if probes and len(probes["test"][0]) and len(probes[name][0]):
            out["label_fidelity"] = {
                "fraction": float(probes[name][0].mean()), "n": int(len(probes[name][0])),
                "real_recall": float(probes["test"][0].mean()),
                "n_real_test": int(len(probes["test"][0])), "classifier": str(classifier)}
        if probes and len(candidate) >= 2:
            out["prdc"] = realism.prdc(probes["real"][1], probes[name][1])
        flat = {**out["image"], "c2st_auc": c2st and c2st["auc"]}
        if out["label_fidelity"]:
            flat["label_fidelity_gap"] = (out["label_fidelity"]["real_recall"]
                                          - out["label_fidelity"]["fraction"])
        if out["prdc"]:
            flat.update(precision=out["prdc"]["precision"], coverage=out["prdc"]["coverage"])
        return out, realism.verdict(flat, thresholds)

    syn, syn_verdict = measures(synthetic, "synthetic")
    ref, ref_verdict = (measures(held_out, "held_out") if len(held_out) >= 2
                        else ({"c2st": None}, {"verdict": "not computed", "checks": []}))
    return {**syn_verdict, "reference": ref_verdict, **syn, "reference_c2st": ref["c2st"],
            "reference_detail": ref, "thresholds": thresholds}


# --- diversity -------------------------------------------------------------------------------

def ms_ssim_scales(size: int, kernel_size: int = SSIM_KERNEL) -> int:
    """The most scales (<= 5) torchmetrics' MS-SSIM accepts for size x size images."""
    for scales in range(len(DEFAULT_BETAS), 0, -1):
        if size >= 2 ** scales and size // max(1, scales - 1) ** 2 > kernel_size - 1:
            return scales
    raise UserError(f"quality audit size {size}: too small for MS-SSIM with a {kernel_size}-px "
                    f"kernel")


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j of n items, or a fixed-seed sample of MAX_SSIM_PAIRS distinct ones."""
    total = n * (n - 1) // 2
    if total <= MAX_SSIM_PAIRS:
        i, j = np.triu_indices(n, 1)
        return i, j
    k = np.sort(np.random.default_rng(seed).choice(total, MAX_SSIM_PAIRS, replace=False))
    rows = np.arange(n, dtype=np.int64)
    starts = rows * (2 * n - rows - 1) // 2  # linear index of pair (i, i + 1)
    i = np.searchsorted(starts, k, side="right") - 1
    j = k - starts[i] + i + 1
    return i, j


def _mean_ms_ssim(images: np.ndarray, scales: int, betas: tuple[float, ...],
                  seed: int) -> tuple[float, int]:
    import torch
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    i, j = _pairs(len(images), seed)
    x = torch.from_numpy(images)
    values = []
    batch = max(1, min(256, (1 << 20) // images[0].size))
    # oneDNN's convolution is ~3x slower than ATen's own for these 1-channel 11x11 Gaussian
    # filters on CPU (float64, the other way around it, is slower still)
    threads = torch.get_num_threads()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.ExitStack() as stack:
        warnings.simplefilter("ignore")  # the flags' note about TF32 on Intel GPUs
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
        # one thread: these small convolutions gain nothing from more, and on a busy 2-core
        # machine two threads made this loop 4x slower
        stack.callback(torch.set_num_threads, threads)
        torch.set_num_threads(1)
        for b in range(0, len(i), batch):
            ii = torch.from_numpy(i[b:b + batch].astype(np.int64))
            jj = torch.from_numpy(j[b:b + batch].astype(np.int64))
            values.append(multiscale_structural_similarity_index_measure(
                x[ii], x[jj], gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL,
                reduction="none", data_range=1.0, betas=betas).double())
    v = torch.cat(values)
    return _finite(float(v.mean())), len(i)


def _diversity(real: np.ndarray, synthetic: np.ndarray) -> dict:
    scales = ms_ssim_scales(real.shape[-1])
    head = DEFAULT_BETAS[:scales]
    betas = tuple(b / sum(head) for b in head)
    syn, syn_pairs = _mean_ms_ssim(synthetic, scales, betas, seed=0)
    rea, real_pairs = _mean_ms_ssim(real, scales, betas, seed=1)
    return {
        "ms_ssim_synthetic": syn,
        "ms_ssim_real": rea,
        "pairs": {"synthetic": syn_pairs, "real": real_pairs},
        "scales": scales,
        "kernel_size": SSIM_KERNEL,
        "betas": [float(b) for b in betas],
    }


# --- memorization ----------------------------------------------------------------------------

def patients_of(manifest, paths: list[str], column: str = "patient_id") -> list[str]:
    """The `column` (patient id) of each preprocessed image path, from the manifest's rows with
    that `image_path`; aligned with `paths` (e.g. `splits.images_of`'s list)."""
    rows = manifest[manifest["image_path"].isin(set(paths))]
    where = dict(zip(rows["image_path"], rows[column]))
    missing = [p for p in paths if p not in where]
    if missing:
        raise UserError(f"manifest: no row has image_path {missing[0]} ({len(missing)} such); "
                        "the manifest and split are out of step - re-run preprocess and split")
    return [where[p] for p in paths]


def _group_codes(groups: list[str] | None, n: int) -> np.ndarray | None:
    """Patient ids -> integer codes (an empty id: a code of its own); None stays None."""
    if groups is None:
        return None
    groups = [str(g) if g is not None else "" for g in groups]
    if len(groups) != n:
        raise ValueError(f"real_groups has {len(groups)} entries for {n} real images")
    codes = {}
    out = np.array([codes.setdefault(g, len(codes)) if g.strip() else -1 - k
                    for k, g in enumerate(groups)], dtype=np.int64)
    return out


def _unit_rows(images: np.ndarray) -> np.ndarray:
    """Each image flattened to its breast vector: pixels > 0 minus their mean, background 0, over
    the L2 norm (an image without breast pixels or with a constant breast: a zero row)."""
    x = images.reshape(len(images), -1).astype(np.float64)
    breast = x > 0
    count = breast.sum(axis=1, keepdims=True)
    mean = np.divide(np.where(breast, x, 0.0).sum(axis=1, keepdims=True), count,
                     out=np.zeros((len(x), 1)), where=count > 0)
    x = np.where(breast, x - mean, 0.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)
    return x.astype(np.float32)


def _nearest(a: np.ndarray, b: np.ndarray,
             groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a, the index and NCC of its most correlated row of b (chunked). With
    `groups` (a and b the same set; one code per row) a row's own group is excluded."""
    best = np.empty(len(a), dtype=np.float64)
    arg = np.empty(len(a), dtype=np.int64)
    chunk = max(1, (1 << 24) // max(1, len(b)))  # ~64 MiB of float32 similarities per chunk
    for start in range(0, len(a), chunk):
        sims = a[start:start + chunk] @ b.T
        if groups is not None:
            sims[groups[start:start + chunk, None] == groups[None, :]] = -np.inf
        arg[start:start + chunk] = np.argmax(sims, axis=1)
        best[start:start + chunk] = sims[np.arange(sims.shape[0]), arg[start:start + chunk]]
    return arg, np.clip(best, -1.0, 1.0)


def _summary(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None, "median": None, "p95": None, "max": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)), "max": float(values.max())}


def _memorization(real, synthetic, real_paths, synthetic_paths, threshold, groups=None):
    r, s = _unit_rows(real), _unit_rows(synthetic)
    syn_arg, syn_ncc = _nearest(s, r)
    if groups is not None and len(np.unique(groups)) < 2:
        # one patient: no real image of another patient to compare with, so no baseline
        real_arg, real_ncc = np.zeros(0, dtype=np.int64), np.zeros(0)
    else:
        real_arg, real_ncc = _nearest(r, r, np.arange(len(r)) if groups is None else groups)
    near = int((syn_ncc >= threshold).sum())
    order = sorted(range(len(syn_ncc)), key=lambda k: (-syn_ncc[k], k))
    closest = [{"synthetic": synthetic_paths[k], "real": real_paths[syn_arg[k]],
                "ncc": float(syn_ncc[k])} for k in order[:N_CLOSEST]]
    result = {
        "nn_ncc": _summary(syn_ncc),
        "near_copy_threshold": threshold,
        "near_copies": near,
        "near_copy_fraction": near / len(syn_ncc),
        "closest": closest,
        "real_nn_ncc": _summary(real_ncc),
        "baseline_excludes": "self" if groups is None else "same patient",
        "baseline_note": ("" if len(real_ncc) else f"all {len(r)} real training images are of "
                          "one patient: no real image of another patient, no baseline"),
        "per_image": [{"synthetic": synthetic_paths[k], "nearest_real": real_paths[syn_arg[k]],
                       "ncc": float(syn_ncc[k])} for k in range(len(syn_ncc))],
        "real_per_image": [{"real": real_paths[k], "nearest_other_real": real_paths[real_arg[k]],
                            "ncc": float(real_ncc[k])} for k in range(len(real_ncc))],
    }
    return result, syn_ncc, real_ncc


# --- FID / KID -------------------------------------------------------------------------------

def _inception(weights: Path):
    import torch
    from torchmetrics.image.fid import NoTrainInceptionV3

    # torch-fidelity unpickles the file with weights_only=False: load it safely first, so a file
    # holding anything but tensors is refused before any of its code could run.
    try:
        torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().split(". ")[0] if str(e).strip() else type(e).__name__
        raise UserError(f"config quality.inception_weights: {weights} is not an Inception-v3 "
                        f"state dict of plain tensors (refused without unpickling: {first})") \
            from None
    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                  feature_extractor_weights_path=str(weights))
    except Exception as e:  # a wrong or corrupt file: torch.load / load_state_dict errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"config quality.inception_weights: {weights} is not an Inception-v3 "
                        f"state dict torch-fidelity can load ({first})") from None


def _features(net, images: np.ndarray, batch: int = 16):
    import torch

    out = []
    with torch.no_grad():
        for b in range(0, len(images), batch):
            x = torch.from_numpy(images[b:b + batch]).repeat(1, 3, 1, 1)
            out.append(net((x * 255).byte()).double())  # as torchmetrics' normalize=True
    return torch.cat(out)


def _fid_kid(real: np.ndarray, synthetic: np.ndarray, weights: Path) -> dict:
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    net = _inception(weights)
    f_real, f_syn = _features(net, real), _features(net, synthetic)

    class Precomputed(torch.nn.Module):  # the "feature extractor" for features already taken
        num_features = f_real.shape[1]

        def forward(self, x):
            return x

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KID's note that it keeps all features in memory
        fid_metric = FrechetInceptionDistance(feature=Precomputed())
        fid_metric.update(f_real, real=True)
        fid_metric.update(f_syn, real=False)
        fid_value = float(fid_metric.compute())
        subset = min(50, len(real), len(synthetic))
        kid_metric = KernelInceptionDistance(feature=Precomputed(), subset_size=subset)
        kid_metric.update(f_real, real=True)
        kid_metric.update(f_syn, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            kid_mean, kid_std = (float(v) for v in kid_metric.compute())
    return {
        "computed": True,
        "fid": _finite(max(0.0, fid_value)),
        "kid_mean": _finite(kid_mean),
        "kid_std": _finite(kid_std),
        "kid_subset_size": subset,
        "weights": weights.name,
    }


def _finite(value: float) -> float | None:
    """JSON has no NaN/inf: a non-finite result becomes None."""
    return value if math.isfinite(value) else None


# --- figures ---------------------------------------------------------------------------------

def _save(fig, path: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


def _pairs_figure(path, closest, synthetic, real, synthetic_paths, real_paths) -> None:
    from matplotlib.figure import Figure

    syn_index = {p: k for k, p in enumerate(synthetic_paths)}
    real_index = {p: k for k, p in enumerate(real_paths)}
    n = len(closest)
    fig = Figure(figsize=(1.8 * n + 0.6, 4.4), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for col, pair in enumerate(closest):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(synthetic[syn_index[pair["synthetic"]], 0], cmap="gray", vmin=0, vmax=1)
        bottom.imshow(real[real_index[pair["real"]], 0], cmap="gray", vmin=0, vmax=1)
        top.set_title(f"NCC {pair['ncc']:.3f}", fontsize=10)
        top.set_xlabel(Path(pair["synthetic"]).name, fontsize=6)
        bottom.set_xlabel(Path(pair["real"]).name, fontsize=6)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("synthetic", fontsize=11)
    axes[1, 0].set_ylabel("nearest real", fontsize=11)
    fig.suptitle(f"The {n} synthetic images closest to a real image (NCC)", fontsize=12)
    _save(fig, path)


def _nn_figure(path, syn_ncc, real_ncc, threshold, by_patient: bool = False):
    """The nearest-neighbour NCC histogram, written to `path`; returns the figure."""
    from matplotlib.figure import Figure

    lo = min(float(syn_ncc.min()), threshold, 0.9,
             float(real_ncc.min()) if len(real_ncc) else 1.0)
    bins = np.linspace(lo - 0.02 * (1.0 - lo), 1.0, 41)
    near = int((syn_ncc >= threshold).sum())
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    # each set as a fraction of its images, so sets of different sizes compare
    ax.hist(syn_ncc, bins=bins, weights=np.full(len(syn_ncc), 1.0 / len(syn_ncc)),
            color="tab:orange", alpha=0.7, label=f"synthetic → nearest real (n={len(syn_ncc)})")
    ax.hist(real_ncc, bins=bins, weights=np.full(len(real_ncc), 1.0 / max(1, len(real_ncc))),
            histtype="step", color="tab:blue", linewidth=1.8,
            label=(f"real → nearest real of another patient (n={len(real_ncc)})" if by_patient
                   else f"real → nearest other real (n={len(real_ncc)})"))
    ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.5,
               label=f"near-copy threshold {threshold:g}")
    ax.set_xlabel("NCC with nearest neighbour")
    ax.set_ylabel("fraction of images")
    ax.set_title(f"{near} of {len(syn_ncc)} synthetic images are near copies "
                 f"(NCC ≥ {threshold:g})")
    ax.legend(loc="best", fontsize=9)
    _save(fig, path)
    return fig
