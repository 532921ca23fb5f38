rule train_ddpm:
    input:
        manifest="results/data/manifest.csv",
        split="results/splits/split{split}.csv",
    output:
        directory("results/ddpm/split{split}/{model}"),
    params:
        ddpm=config["ddpm"],
        sampling=config["sampling"],
        size=config["preprocess"]["size"],
        labels=ddpm_labels,
        seed=ddpm_seed,
        checkpoint="results/ddpm/split{split}/{model}.resume.pt",
    # the longest jobs, at the head of every synthetic arm's path: start them first
    priority: 10
    log:
        "logs/train_ddpm/split{split}/{model}.log",
    benchmark:
        "benchmarks/train_ddpm/split{split}/{model}.tsv"
    conda:
        ENV
    script:
        "../scripts/train_ddpm.py"


rule sample_shard:
    input:
        ddpm_model,
    output:
        directory("results/synthetic/split{split}/{label}/shard{shard}"),
    params:
        sampling=config["sampling"],
        seed=config["seed"],
        total=synthetic_per_label(),
        size=config["preprocess"]["size"],
    log:
        "logs/sample_shard/split{split}/{label}/shard{shard}.log",
    benchmark:
        "benchmarks/sample_shard/split{split}/{label}/shard{shard}.tsv"
    conda:
        ENV
    script:
        "../scripts/sample_shard.py"


rule quality:
    input:
        unpack(quality_inputs),
        unpack(label_fidelity_classifier),
        manifest="results/data/manifest.csv",
        split="results/splits/split{split}.csv",
    output:
        json="results/quality/split{split}/{label}.json",
        pairs=report(
            "results/quality/split{split}/{label}_pairs.png",
            caption="../report/quality_pairs.rst",
            category="Synthetic quality",
            subcategory="split {split}",
            labels={"label": "{label}", "figure": "closest pairs"},
        ),
        nn=report(
            "results/quality/split{split}/{label}_nn.png",
            caption="../report/quality_nn.rst",
            category="Synthetic quality",
            subcategory="split {split}",
            labels={"label": "{label}", "figure": "nearest-neighbour similarity"},
        ),
    params:
        quality=config["quality"],
    log:
        "logs/quality/split{split}/{label}.log",
    benchmark:
        "benchmarks/quality/split{split}/{label}.tsv"
    conda:
        ENV
    script:
        "../scripts/quality.py"
