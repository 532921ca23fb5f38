"""Figure captions by kind (the part of a figure's name before the first "-"): shown under each
figure on the HTML page and in Snakemake's report. A light module: the Snakefile imports it."""

CAPTIONS = {
    "scenarios": "Test metrics against the number of synthetic training images (the main result): "
                 "mean over splits with the corrected t 95% confidence interval (Nadeau-Bengio: the "
                 "splits overlap), per classifier and "
                 "checkpoint.",
    "curves": "Training curves per scenario (paper 000's Figure 5): mean over splits, the band "
              "spans the splits' minimum to maximum; solid = training, dashed = validation.",
    "checkpoints": "Test accuracy per split, last against best weights (paper 002's Figure 1): "
                   "one line per split, so every pair is visible.",
    "roc": "ROC and precision-recall curves of the best weights, test predictions of all splits "
           "pooled (multi-class: micro-average over one-vs-rest).",
    "confusion": "Confusion matrices summed over splits (rows: true label; colour: row "
                 "fraction; numbers: images).",
    "samples": "Real training images (top) and synthetic images (bottom) of one label, same "
               "preprocessing and size (paper 000's Table 2).",
    "controls": "Control arms (best weights). Left: the primary metric against the number of "
                "images added (synthetic, duplicated real, augmented real) or used alone "
                "(synthetic only), mean over splits with the corrected t 95% CI; n = 0 is the "
                "real images alone. Right: the real-data learning curve (percent of the real "
                "training images; 100 % = the real images alone) with its CI, its monotone "
                "(isotonic) fit, and each synth n's mean as a horizontal line.",
    "memorization": "Memorization audit: each synthetic image's similarity (NCC over the breast) "
                    "to its nearest real training image against each real training image's "
                    "similarity to its nearest real image of another patient.",
    "pairs": "The synthetic images closest to a real training image, each above its nearest real "
             "image: near copies here would contradict privacy claims.",
}
