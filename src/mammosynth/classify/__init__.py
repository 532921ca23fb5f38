"""CNN classifiers (timm) trained per arch x scenario x split; evaluated with last and best weights."""
