rule report:
    input:
        evals=evaluations(layout.eval_file),
        predictions=evaluations(layout.predictions_file),
        histories=model_files(layout.HISTORY),
        compositions=model_files(layout.COMPOSITION),
        manifest=layout.manifest(),
        splits=[layout.split(s) for s in SPLITS],
        ddpm_splits=[layout.split(s) for s in DDPM_SPLITS if SYNTHETIC],
        quality=[layout.quality(**q) for q in QUALITY],
        quality_nn=[layout.quality(**q, figure="nn") for q in QUALITY],
        quality_pairs=[layout.quality(**q, figure="pairs") for q in QUALITY],
        # the first shard per label of the first DDPM split: the report's sample grids
        samples=[
            layout.shard(DDPM_SPLITS[0], label, 0) for label in LABELS if SYNTHETIC
        ],
    output:
        report(
            directory(layout.report()),
            patterns=["{name}.html", "figures/{fig}.png"],
            caption="../report/report.rst",
            category="Report",
        ),
    log:
        layout.log("report"),
    benchmark:
        layout.benchmark("report")
    conda:
        ENV
    threads: 2
    params:
        grid=GRID,
        models=MODELS,
        split_ids=SPLITS,
        ddpm_split_ids=DDPM_SPLITS,
        quality_keys=QUALITY,
        labels=LABELS,
        config=config,
        captions=FIGURE_CAPTIONS,
    script:
        "../scripts/report.py"
