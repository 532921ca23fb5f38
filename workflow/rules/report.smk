rule report:
    input:
        evals=evaluations(),
        quality=quality_reports(),
        manifest="results/data/manifest.csv",
        splits=expand("results/splits/split{split}.csv", split=SPLITS),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.html"],
            caption="../report/report.rst",
            category="Report",
        ),
    params:
        grid=GRID,
        split_ids=SPLITS,
        protocol=config["protocol"],
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        ENV
    script:
        "../scripts/report.py"
