"""gridtwin dashboards: one page per concern over a run folder or a sweep folder.

Started by ``twin dashboard DIR`` (``streamlit run dashboards/app.py -- --dir DIR``) or with
``TWIN_RUN_DIR``. The folder kind is detected from its contents (``twindash.folder_kind``):
a run folder gets the run pages; a sweep folder gets the Sweep page first, a comparison
folder (``twin compare``) the Compare page first, both with a run picker in the sidebar for
the run pages. Read-only: nothing here writes to the results or the chain.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # the views import twindash / dashui as top-level modules
    sys.path.insert(0, str(_HERE))

import dashui  # noqa: E402
import twindash as td  # noqa: E402

st.set_page_config(page_title="gridtwin", layout="wide")

_RUN_PAGES = [
    ("views/overview.py", "Overview", ":material/dashboard:"),
    ("views/feeder.py", "Feeder", ":material/hub:"),
    ("views/market.py", "Market", ":material/candlestick_chart:"),
    ("views/ledger.py", "Ledger", ":material/receipt_long:"),
    ("views/resilience.py", "Resilience", ":material/bolt:"),
    ("views/hil.py", "HIL", ":material/developer_board:"),
]
_GAME_PAGE = ("views/game.py", "Game", ":material/groups:")
_HOSTING_PAGE = ("views/hosting.py", "Hosting", ":material/solar_power:")
_SWEEP_PAGE = ("views/sweep.py", "Sweep", ":material/scatter_plot:")
_COMPARE_PAGE = ("views/compare.py", "Compare", ":material/compare_arrows:")

folder = dashui.base_folder()
kind = td.folder_kind(folder=folder)
_RESILIENCE = _RUN_PAGES[4]
run_kind = td.run_kind(folder=folder) if kind == "run" else "feeder"
if run_kind == "game":  # a cooperative game opens on its page
    run_specs = [_GAME_PAGE, *_RUN_PAGES]
elif run_kind == "hosting":  # a hosting study opens on its page (and has only that)
    run_specs = [_HOSTING_PAGE]
elif run_kind == "resilience":  # a resilience study opens on its page
    run_specs = [_RESILIENCE, *(p for p in _RUN_PAGES if p != _RESILIENCE), _GAME_PAGE]
else:
    run_specs = [*_RUN_PAGES, _GAME_PAGE]
specs = {"sweep": [_SWEEP_PAGE, *_RUN_PAGES, _GAME_PAGE, _COMPARE_PAGE],
         "compare": [_COMPARE_PAGE, *_RUN_PAGES, _GAME_PAGE, _SWEEP_PAGE]}.get(
    kind, [*run_specs, _SWEEP_PAGE, _COMPARE_PAGE])
pages = [st.Page(str(_HERE / path), title=title, icon=icon,
                 url_path=Path(path).stem, default=(i == 0))
         for i, (path, title, icon) in enumerate(specs)]
st.sidebar.caption(f"{ {'sweep': 'Sweep', 'compare': 'Comparison'}.get(kind, 'Results')} "
                   f"folder: `{folder}`")
if kind in ("sweep", "compare"):
    dashui.select_run(sweep_dir=folder)
st.navigation(pages).run()
