rule train_classifier:
    input:
        unpack(synthetic_shards),
        manifest="results/data/manifest.csv",
        split="results/splits/split{split}.csv",
        pretrained=lambda wc: PRETRAINED[wc.arch] or [],
    output:
        last="results/classifier/{arch}/synth{n}/split{split}/last.safetensors",
        best="results/classifier/{arch}/synth{n}/split{split}/best.safetensors",
        history="results/classifier/{arch}/synth{n}/split{split}/history.csv",
        composition="results/classifier/{arch}/synth{n}/split{split}/composition.csv",
    params:
        classifier=config["classifier"],
        labels=LABELS,
        repool=repool,
        seed=lambda wc: config["seed"] + int(wc.split),
    log:
        "logs/train_classifier/{arch}/synth{n}/split{split}.log",
    benchmark:
        "benchmarks/train_classifier/{arch}/synth{n}/split{split}.tsv"
    conda:
        ENV
    script:
        "../scripts/train_classifier.py"


rule evaluate:
    input:
        weights="results/classifier/{arch}/synth{n}/split{split}/{ckpt}.safetensors",
        composition="results/classifier/{arch}/synth{n}/split{split}/composition.csv",
    output:
        metrics="results/classifier/{arch}/synth{n}/split{split}/eval_{ckpt}.json",
        predictions="results/classifier/{arch}/synth{n}/split{split}/predictions_{ckpt}.csv",
    params:
        protocol=config["protocol"],
        bootstrap=config["classifier"]["bootstrap"],
        positive=config["labels"]["positive"],
    log:
        "logs/evaluate/{arch}/synth{n}/split{split}/{ckpt}.log",
    benchmark:
        "benchmarks/evaluate/{arch}/synth{n}/split{split}/{ckpt}.tsv"
    conda:
        ENV
    script:
        "../scripts/evaluate.py"
