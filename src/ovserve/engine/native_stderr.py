"""Capture what native code prints to the process's stderr while reading a model file.

OpenVINO tries each of its front-ends on a file it cannot read; some (TensorFlow's, through
absl) print their own parser errors straight to file descriptor 2, before and around ovserve's
one clear message. Reading is wrapped here: the descriptor points at a temporary file for the
call, so the text can be logged at DEBUG on failure and passed through on success (a warning of
a model that does load is worth keeping). One lock serialises the swap, because descriptor 2
belongs to the whole process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

_swap = threading.Lock()


@dataclass
class Captured:
    """What was printed to descriptor 2 inside the block (set when the block ends)."""

    text: str = ""

    def pass_through(self) -> None:
        """Print the captured text to stderr after all."""
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[Captured]:
    """Redirect descriptor 2 to a temporary file for the block; yield what was printed."""
    captured = Captured()
    with _swap, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")
