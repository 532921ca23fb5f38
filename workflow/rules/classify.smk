rule augment:
    input:
        manifest=layout.manifest(),
        split=layout.split(),
    output:
        directory(layout.augmented()),
    log:
        layout.log("augment", layout.augmented()),
    benchmark:
        layout.benchmark("augment", layout.augmented())
    conda:
        ENV
    threads: 2
    params:
        total=largest_per_label(),
        seed=split_seed,
        labels=LABELS,
    script:
        "../scripts/augment.py"


rule train_classifier:
    input:
        unpack(arm_inputs),
        manifest=layout.manifest(),
        split=layout.split(),
        pretrained=pretrained,
    output:
        last=layout.classifier(file=layout.weights_file("last")),
        best=layout.classifier(file=layout.weights_file("best")),
        history=layout.classifier(file=layout.HISTORY),
        composition=layout.classifier(file=layout.COMPOSITION),
    log:
        layout.log("train_classifier", layout.classifier()),
    benchmark:
        layout.benchmark("train_classifier", layout.classifier())
    conda:
        ENV
    threads: 8
    params:
        classifier=section("classifier", "bootstrap", "checkpoints", "archs"),
        labels=LABELS,
        repool=repool,
        seed=split_seed,
        resume=layout.classifier(file=layout.CLASSIFIER_RESUME),
    script:
        "../scripts/train_classifier.py"


rule evaluate:
    input:
        weights=layout.classifier(file=layout.weights_file()),
        composition=layout.classifier(file=layout.COMPOSITION),
    output:
        metrics=layout.classifier(file=layout.eval_file()),
        predictions=layout.classifier(file=layout.predictions_file()),
    log:
        layout.log("evaluate", layout.classifier(file=layout.eval_file())),
    benchmark:
        layout.benchmark("evaluate", layout.classifier(file=layout.eval_file()))
    conda:
        ENV
    threads: 4
    params:
        protocol=config["protocol"],
        bootstrap=config["classifier"]["bootstrap"],
        positive=config["labels"]["positive"],
    script:
        "../scripts/evaluate.py"
