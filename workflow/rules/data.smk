if PHANTOM:

    rule phantom:
        output:
            directory(DATA_ROOT),
        params:
            phantom=config["phantom"],
            seed=config["seed"],
        log:
            "logs/phantom.log",
        benchmark:
            "benchmarks/phantom.tsv"
        conda:
            ENV
        script:
            "../scripts/phantom.py"


rule ingest:
    input:
        roots=DATA_ROOTS,
    output:
        "results/data/ingest.csv",
    params:
        dataset=config["dataset"],
        labels=config["labels"],
    log:
        "logs/ingest.log",
    benchmark:
        "benchmarks/ingest.tsv"
    conda:
        ENV
    script:
        "../scripts/ingest.py"


rule preprocess:
    input:
        ingest="results/data/ingest.csv",
        roots=DATA_ROOTS,
    output:
        manifest=report(
            "results/data/manifest.csv",
            caption="../report/manifest.rst",
            category="Data",
        ),
        images=directory("results/data/images"),
    params:
        # sources are relative to the data set's root (format combined: absolute)
        root=lambda w, input: input.roots[0],
        size=config["preprocess"]["size"],
        orientation=config["preprocess"]["orientation"],
        on_bad_image=config["dataset"]["on_bad_image"],
    threads: 2
    log:
        "logs/preprocess.log",
    benchmark:
        "benchmarks/preprocess.tsv"
    conda:
        ENV
    script:
        "../scripts/preprocess.py"


rule split:
    input:
        "results/data/manifest.csv",
    output:
        "results/splits/split{split}.csv",
    params:
        splits=config["splits"],
        seed=config["seed"],
        protocol=config["protocol"],
        labels=LABELS,
    log:
        "logs/split/split{split}.log",
    benchmark:
        "benchmarks/split/split{split}.tsv"
    conda:
        ENV
    script:
        "../scripts/split.py"
