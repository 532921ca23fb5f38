rule report:
    input:
        evals=evaluations(),
        predictions=evaluations("predictions", "csv"),
        histories=model_files("history.csv"),
        compositions=model_files("composition.csv"),
        manifest="results/data/manifest.csv",
        splits=expand("results/splits/split{split}.csv", split=SPLITS),
        ddpm_splits=ddpm_split_files(),
        quality=quality_reports(),
        quality_figures=[
            p.replace(".json", f"_{kind}.png")
            for p in quality_reports()
            for kind in ("nn", "pairs")
        ],
        samples=sample_shards(),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.html", "figures/{fig}.png"],
            caption="../report/report.rst",
            category="Report",
        ),
    params:
        grid=GRID,
        models=MODELS,
        split_ids=SPLITS,
        ddpm_split_ids=DDPM_SPLITS,
        labels=LABELS,
        config=config,
        captions=FIGURE_CAPTIONS,
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        ENV
    script:
        "../scripts/report.py"
