rule train_classifier:
    input:
        unpack(arm_inputs),
        manifest="results/data/manifest.csv",
        split="results/splits/split{split}.csv",
        pretrained=lambda wc: PRETRAINED[wc.arch] or [],
    output:
        last="results/classifier/{arch}/{arm}{n}/split{split}/last.safetensors",
        best="results/classifier/{arch}/{arm}{n}/split{split}/best.safetensors",
        history="results/classifier/{arch}/{arm}{n}/split{split}/history.csv",
        composition="results/classifier/{arch}/{arm}{n}/split{split}/composition.csv",
    params:
        classifier=config["classifier"],
        labels=LABELS,
        repool=repool,
        seed=lambda wc: config["seed"] + int(wc.split),
        budget=config["classifier"]["budget"],
    log:
        "logs/train_classifier/{arch}/{arm}{n}/split{split}.log",
    benchmark:
        "benchmarks/train_classifier/{arch}/{arm}{n}/split{split}.tsv"
    conda:
        ENV
    script:
        "../scripts/train_classifier.py"


rule evaluate:
    input:
        weights="results/classifier/{arch}/{arm}{n}/split{split}/{ckpt}.safetensors",
        composition="results/classifier/{arch}/{arm}{n}/split{split}/composition.csv",
    output:
        metrics="results/classifier/{arch}/{arm}{n}/split{split}/eval_{ckpt}.json",
        predictions="results/classifier/{arch}/{arm}{n}/split{split}/predictions_{ckpt}.csv",
    params:
        protocol=config["protocol"],
        bootstrap=config["classifier"]["bootstrap"],
        positive=config["labels"]["positive"],
    log:
        "logs/evaluate/{arch}/{arm}{n}/split{split}/{ckpt}.log",
    benchmark:
        "benchmarks/evaluate/{arch}/{arm}{n}/split{split}/{ckpt}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate.py"


rule augment:
    input:
        manifest="results/data/manifest.csv",
        split="results/splits/split{split}.csv",
    output:
        directory("results/augmented/split{split}/{label}"),
    params:
        total=augmented_per_label(),
        seed=lambda wc: config["seed"] + int(wc.split),
        labels=LABELS,
    log:
        "logs/augment/split{split}/{label}.log",
    benchmark:
        "benchmarks/augment/split{split}/{label}.tsv"
    conda:
        ENV
    script:
        "../scripts/augment.py"
