"""The interactive dashboard (Streamlit): explore a run's data, inspect its model, classify uploaded images.

    imgclf dashboard runs/c10 [--port 8501]     # one run
    imgclf dashboard runs/                      # every run in the folder, chosen in the sidebar

Five pages (``views/``): project summary, data visualizer, model performance, image classifier, findings.
``data`` and ``classify`` hold the computations (no Streamlit, tested on their own), ``figures`` the Plotly
charts, ``loaders`` the cached reading of run files and models, ``app`` the entry point that ``streamlit run``
executes. Streamlit and Plotly are imported only here (``pip install 'imgclf[dashboard]'``).
"""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).with_name("app.py")  # the script ``streamlit run`` executes

__all__ = ["APP"]
