rule train_ddpm:
    input:
        manifest=layout.manifest(),
        split=layout.split(),
    output:
        directory(layout.ddpm()),
    log:
        layout.log("train_ddpm", layout.ddpm()),
    benchmark:
        layout.benchmark("train_ddpm", layout.ddpm())
    # the longest jobs, at the head of every synthetic arm's path: start them first
    priority: 10
    conda:
        ENV
    threads: 8
    params:
        ddpm=config["ddpm"],
        sampling=config["sampling"],
        size=config["preprocess"]["size"],
        labels=ddpm_labels,
        seed=ddpm_seed,
        resume=layout.ddpm_resume(),
    script:
        "../scripts/train_ddpm.py"


rule sample_shard:
    input:
        ddpm_model,
    output:
        directory(layout.shard()),
    log:
        layout.log("sample_shard", layout.shard()),
    benchmark:
        layout.benchmark("sample_shard", layout.shard())
    conda:
        ENV
    threads: 4
    params:
        sampling=config["sampling"],
        seed=config["seed"],
        total=largest_per_label(),
        size=config["preprocess"]["size"],
    script:
        "../scripts/sample_shard.py"


rule quality:
    input:
        unpack(quality_inputs),
        unpack(label_fidelity_classifier),
        manifest=layout.manifest(),
        split=layout.split(),
    output:
        json=layout.quality(),
        pairs=report(
            layout.quality(figure="pairs"),
            caption="../report/quality_pairs.rst",
            category="Synthetic quality",
            subcategory="split {split}",
            labels={"label": "{label}", "figure": "closest pairs"},
        ),
        nn=report(
            layout.quality(figure="nn"),
            caption="../report/quality_nn.rst",
            category="Synthetic quality",
            subcategory="split {split}",
            labels={"label": "{label}", "figure": "nearest-neighbour similarity"},
        ),
    log:
        layout.log("quality", layout.quality()),
    benchmark:
        layout.benchmark("quality", layout.quality())
    conda:
        ENV
    threads: 4
    params:
        quality=config["quality"],
    script:
        "../scripts/quality.py"
