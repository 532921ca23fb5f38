"""Mammogram decoding and preprocessing: decode -> breast mask -> crop -> chest wall left -> resize."""

from mammosynth.imaging.breast import preprocess_array
from mammosynth.imaging.decode import read_image
from mammosynth.imaging.png import read_png, write_png

__all__ = ["preprocess_array", "read_image", "read_png", "write_png"]
