"""mammosynth.layout: each artifact's path template and its filled form, the logs derived from
them, and the seeds."""

from __future__ import annotations

import pytest

from mammosynth import layout


def test_a_path_function_gives_the_rules_template_or_one_file():
    assert layout.classifier() == "results/classifier/{arch}/{arm}{n}/split{split}"
    assert (layout.classifier("resnet10t", "dup", 64, 1, layout.weights_file("best"))
            == "results/classifier/resnet10t/dup64/split1/best.safetensors")
    assert layout.classifier(file=layout.eval_file()).endswith("/eval_{ckpt}.json")
    assert layout.shard(0, "normal", 2) == "results/synthetic/split0/normal/shard2"
    assert layout.ddpm_resume("all", "all-labels") == "results/ddpm/splitall/all-labels.resume.pt"
    assert layout.quality(1, "abnormal", figure="nn") == "results/quality/split1/abnormal_nn.png"
    assert layout.quality(1, "abnormal") == "results/quality/split1/abnormal.json"


def test_logs_and_benchmarks_follow_the_output_below_its_stage_folder():
    assert layout.log("ingest") == "logs/ingest.log"
    assert layout.log("train_ddpm", layout.ddpm()) == "logs/train_ddpm/split{split}/{model}.log"
    assert (layout.benchmark("evaluate", layout.classifier("a.b", "synth", 0, 0,
                                                           layout.eval_file("last")))
            == "benchmarks/evaluate/a.b/synth0/split0/eval_last.tsv")
    assert (layout.log("train_classifier", layout.classifier("a.b", "synth", 0, 0))
            == "logs/train_classifier/a.b/synth0/split0.log")  # a dot in the arch stays
    with pytest.raises(ValueError, match="is not a path under results/<stage>/"):
        layout.log("train_ddpm", "split0/normal")


def test_seeds():
    assert layout.split_seed(7, 3) == layout.split_seed(7, "3") == 10
    assert layout.split_seed(7, "all") == 6 and layout.val_seed(7, 3) == 10_010
    # one seed per DDPM: split x model, apart from every other split's
    seeds = {layout.ddpm_seed(0, s, m) for s in ("all", 0, 1, 2) for m in range(3)}
    assert len(seeds) == 12
    assert 0 <= layout.image_seed(0, 1, "normal", 5) < 2**63
    assert layout.copy_seed(0, "normal") != layout.copy_seed(1, "normal")
