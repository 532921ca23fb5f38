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
    """Run one pipeline step: stderr (logging, progress bars, warnings, tracebacks) goes to
    `log_path`; torch gets `threads`; a UserError ends the step with one line naming the problem
    (in the log and on the console, exit code 1); any other exception is a bug and keeps its
    traceback (in the log).
    """
    if log_path:
        sys.stderr = open(log_path, "w", buffering=1)
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)],
                        force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:  # the steps that take `threads` run torch
        import torch

        torch.set_num_threads(threads)
    try:
        yield logging.getLogger("mammosynth")
    except UserError as e:
        logging.getLogger("mammosynth").error("%s", e)
        if sys.stderr is not sys.__stderr__:
            print(f"ERROR: {e}", file=sys.__stderr__)
        sys.exit(1)
