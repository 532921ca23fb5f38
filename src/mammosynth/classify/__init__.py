"""CNN classifiers (timm) trained per arch x scenario x split; evaluated with last and best weights."""

# Registers the timm model "nasnetamobile" (NASNet-A Mobile, which timm lacks).
from mammosynth.classify import nasnet  # noqa: F401
