"""Errors a user can cause. (How a pipeline step reports them: mammosynth.runtime.job.)"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, bad config). Reported as one line, no traceback."""


class ImageError(UserError):
    """An input image that cannot be used; its message becomes the manifest's `reason`."""
