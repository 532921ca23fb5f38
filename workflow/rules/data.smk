if PHANTOM:

    rule phantom:
        output:
            directory(config["dataset"]["root"]),
        log:
            layout.log("phantom"),
        benchmark:
            layout.benchmark("phantom")
        conda:
            ENV
        params:
            phantom=config["phantom"],
            seed=config["seed"],
        script:
            "../scripts/phantom.py"


rule ingest:
    input:
        roots=list(ROOTS.values()),
    output:
        layout.ingest(),
    log:
        layout.log("ingest"),
    benchmark:
        layout.benchmark("ingest")
    conda:
        ENV
    params:
        dataset=config["dataset"],
        labels=config["labels"],
    script:
        "../scripts/ingest.py"


rule preprocess:
    input:
        ingest=layout.ingest(),
        roots=list(ROOTS.values()),
    output:
        manifest=report(
            layout.manifest(),
            caption="../report/manifest.rst",
            category="Data",
        ),
        images=directory(layout.images()),
    log:
        layout.log("preprocess"),
    benchmark:
        layout.benchmark("preprocess")
    conda:
        ENV
    threads: 8
    params:
        roots=ROOTS,
        size=config["preprocess"]["size"],
        orientation=config["preprocess"]["orientation"],
        on_bad_image=config["dataset"]["on_bad_image"],
    script:
        "../scripts/preprocess.py"


rule split:
    input:
        layout.manifest(),
    output:
        layout.split(),
    log:
        layout.log("split", layout.split()),
    benchmark:
        layout.benchmark("split", layout.split())
    conda:
        ENV
    params:
        splits=config["splits"],
        seed=config["seed"],
        protocol=config["protocol"],
        labels=LABELS,
    script:
        "../scripts/split.py"
