"""User-facing errors: one line that names the problem and, where it helps, the accepted values."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ImgclfError(Exception):
    """An error caused by the user's input (path, option, file). The CLI prints it as one line, exit code 2."""


def unknown(kind: str, value: str, accepted: Iterable[str]) -> ImgclfError:
    """Build the error for an unknown name, listing close matches first, then all accepted values.

    Examples:
        >>> str(unknown("model", "resnt-fast", ["resnet-fast", "cnn3"]))
        "unknown model 'resnt-fast'; did you mean 'resnet-fast'? accepted: resnet-fast, cnn3"
    """
    accepted = list(accepted)
    close = difflib.get_close_matches(value, accepted, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ";"
    shown = ", ".join(accepted[:30]) + (", ..." if len(accepted) > 30 else "")
    return ImgclfError(f"unknown {kind} {value!r}{hint} accepted: {shown}")
