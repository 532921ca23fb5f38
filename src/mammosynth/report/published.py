"""The papers' published numbers, shown beside ours when config report.published names a paper.

They come from other procedures (see README, protocols) and, for paper 002, other data: a side
column to compare against, never a target. Keys: (arch, synthetic n, checkpoint) -> metric -> value.
"""

from __future__ import annotations

# Sutjiadi et al. 2025 (shared/papers/000), Table 4: EfficientNetV2-L after 50 epochs (the last
# weights), 410 INbreast images + n synthetic, normal = BI-RADS 1.
_SUTJIADI = {
    0: dict(accuracy=0.84, normal_precision=0.50, normal_recall=0.31, normal_f1=0.38,
            abnormal_precision=0.88, abnormal_recall=0.94, abnormal_f1=0.91),
    100: dict(accuracy=0.90, normal_precision=0.78, normal_recall=0.78, normal_f1=0.78,
              abnormal_precision=0.94, abnormal_recall=0.94, abnormal_f1=0.94),
    250: dict(accuracy=0.93, normal_precision=0.84, normal_recall=0.95, normal_f1=0.89,
              abnormal_precision=0.98, abnormal_recall=0.93, abnormal_f1=0.95),
    500: dict(accuracy=0.94, normal_precision=0.92, normal_recall=0.90, normal_f1=0.91,
              abnormal_precision=0.95, abnormal_recall=0.96, abnormal_f1=0.95),
}

# Paper 002 (shared/papers/002), Table 2: mean over five test sets; "CNN" = last weights,
# "Improved CNN" = best (lowest-loss) weights. Keyed by the arch names of
# config/presets/best_weights.yaml (the paper does not name its RegNet variant).
_M = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc")
_BEST_WEIGHTS = {
    "regnety_040": ("RegNet", (0.8900, 0.8959, 0.8841, 0.88, 0.95, 0.94),
                    (0.9465, 0.9480, 0.9427, 0.94, 0.97, 0.98)),
    "resnet152": ("ResNet152", (0.7496, 0.8518, 0.6892, 0.68, 0.88, 0.86),
                  (0.8673, 0.8673, 0.8246, 0.82, 0.94, 0.94)),
    "inception_v3": ("InceptionV3", (0.7912, 0.8376, 0.7372, 0.73, 0.87, 0.82),
                     (0.9441, 0.9449, 0.9427, 0.93, 0.96, 0.97)),
    "nasnetalarge": ("NasNetLarge", (0.8504, 0.8945, 0.8413, 0.83, 0.92, 0.87),
                     (0.9222, 0.9311, 0.8941, 0.88, 0.95, 0.95)),
    "nasnetamobile": ("NasNetMobile224", (0.9219, 0.9321, 0.9154, 0.91, 0.96, 0.94),
                      (0.9547, 0.9643, 0.9466, 0.95, 0.98, 0.98)),
    "mobilenetv3_large_100": ("MobileNetV3", (0.8061, 0.8348, 0.7844, 0.79, 0.88, 0.83),
                              (0.8985, 0.9404, 0.8557, 0.87, 0.96, 0.95)),
}

PUBLISHED = {
    "sutjiadi2025": {
        "source": "Sutjiadi et al. 2025, Table 4 (EfficientNetV2-L, last weights, one 80:20 "
                  "split of real + synthetic images)",
        "values": {("tf_efficientnetv2_l", n, "last"): v for n, v in _SUTJIADI.items()},
    },
    "best_weights": {
        "source": "paper 002, Table 2 (mean over five random 80:20 splits; CNN = last weights, "
                  "Improved CNN = lowest-loss weights)",
        "values": {(arch, 0, ckpt): dict(zip(_M, values))
                   for arch, (_, last, best) in _BEST_WEIGHTS.items()
                   for ckpt, values in (("last", last), ("best", best))},
    },
}
