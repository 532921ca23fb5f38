"""mammosynth: DDPM-synthesised mammograms and best-weights selection for CNN classifiers."""

import os as _os

# The pipeline never downloads: without this a hub look-up retries for ~47 s before failing.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mammosynth import _torchvision_fix  # noqa: E402

_torchvision_fix.install()

__version__ = "0.1.0"
