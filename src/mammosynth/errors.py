"""Errors a user can cause, and how a pipeline step reports them."""

from __future__ import annotations

import contextlib
import logging
import sys


class UserError(Exception):
    """A problem the user can fix (bad input, bad config). Reported as one line, no traceback."""


class ImageError(UserError):
    """An input image that cannot be used; its message becomes the manifest's `reason`."""


@contextlib.contextmanager
def job(log_path: str | None = None, threads: int | None = None):
    """Run one pipeline step: log to `log_path` and stderr, set torch's threads, report UserErrors.

    A UserError ends the step with one line naming the problem (and exit code 1); any other
    exception is a bug and keeps its traceback.
    """
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:  # the steps that take `threads` run torch
        import torch

        torch.set_num_threads(threads)
    try:
        yield logging.getLogger("mammosynth")
    except UserError as e:
        logging.getLogger("mammosynth").error("%s", e)
        sys.exit(1)
