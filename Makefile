# `make demo`: set up .venv and run the demo pipeline end to end (phantom data, CPU, minutes).
# `make test`: set up .venv and run the tests (unit + real snakemake on phantom data), --lint and
# snakefmt --check (the snakemake-workflows CI's formatter).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Quieten pip's warnings about this machine's unreachable extra index folders.
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
export HF_HUB_OFFLINE := 1

.PHONY: demo test lint bench install clean

install: $(VENV)/.installed

# torch first, from the local CPU wheel, then everything else with torch pinned by
# constraints.txt (unpinned, timm pulls a newer torch with ~2.6 GB of CUDA wheels). The registry's
# torchvision is a CUDA build; mammosynth's import hook (src/mammosynth/_torchvision_fix.py) makes it
# importable on the CPU torch, and the .pth file below installs that hook in every interpreter of
# the venv, so a bare `import timm` works too.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0 2> >(grep -v 'is ignored' >&2)
	$(PIP) -c constraints.txt -e '.[test]' 2> >(grep -v 'is ignored' >&2)
	echo 'import mammosynth._torchvision_fix as f; f.install()' \
	  > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mammosynth_torchvision_fix.pth"
	$(BIN)/python -c 'import timm, diffusers, torch; print("torch", torch.__version__, "timm", timm.__version__, "diffusers", diffusers.__version__)'
	touch $@

# The demo's models are tiny: on a laptop its jobs finish sooner side by side, one thread each,
# than one at a time with every core (2 cores, measured: the rules' threads - one DDPM at a time,
# 290 s each at 2 threads - made the demo 18 min 17 s; one thread per job - two DDPMs at once,
# 420 s each - 12 min 24 s). Real runs keep the rules' threads (profiles/default, profiles/slurm).
DEMO_THREADS := train_ddpm=1 sample_shard=1 augment=1 train_classifier=1 evaluate=1 quality=1 report=1

demo: install
	time $(BIN)/snakemake --profile profiles/default --set-threads $(DEMO_THREADS)

test: install lint
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

bench: install
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/ddpm.py
	$(BIN)/python bench/classifier.py

clean:
	rm -rf results logs benchmarks resources/phantom .snakemake
