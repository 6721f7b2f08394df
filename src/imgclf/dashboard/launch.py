"""``python -m imgclf.dashboard.launch APP [streamlit options] -- --runs PATH --threads N``: Streamlit's own
``streamlit run`` command line, with the slow imports (torch, the model and report code, Plotly) warmed up in a
background thread meanwhile, so the first page does not wait for them once the browser connects.

``imgclf dashboard`` runs this; anything it is given goes to ``streamlit run`` unchanged.
"""

from __future__ import annotations

import contextlib
import sys
import threading


def _threads(argv: list[str]) -> int:
    tail = argv[argv.index("--") + 1 :] if "--" in argv else []
    try:
        return max(1, int(tail[tail.index("--threads") + 1]))
    except (ValueError, IndexError):
        return 1


def warm_up(threads: int = 1) -> None:
    """Import what the pages need; a failure is left for the pages to report (a warm-up never stops the server)."""
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(threads)
        import plotly.graph_objects  # noqa: F401

        import imgclf.evaluation.explain  # noqa: F401
        import imgclf.evaluation.report  # noqa: F401
        import imgclf.infer.predict  # noqa: F401
        import imgclf.models.summary  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    threading.Thread(target=warm_up, args=(_threads(argv),), name="imgclf-warm-up", daemon=True).start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", *argv]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
