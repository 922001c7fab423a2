"""Every dashboard page renders with Streamlit's AppTest on fixture folders: a full run, a
plain run, a sweep, a comparison, and missing or partial folders (a message, never a
traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from axis_audit import chart_problems
from streamlit.testing.v1 import AppTest

from twin.results import write_json_atomic

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")
RUN_PAGES = ["overview", "feeder", "market", "ledger", "resilience", "hil", "game"]
ALL_PAGES = [*RUN_PAGES, "sweep", "compare"]
MARKET_TABS = ["Price and volume", "Supply and demand of one interval", "DSO curtailments",
               "Revenue and cost per agent"]
LEDGER_TABS = ["Transactions and gas", "Token balances", "Certificates", "Demand response",
               "Tokenized assets", "Frequency regulation", "Other services", "Look up a hash"]


def _app(folder: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("TWIN_RUN_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    _audit(at, "first page")
    return at


def _audit(at: AppTest, where: str) -> None:
    """Every chart on the page has axis titles in words with units (``axis_audit``)."""
    problems = chart_problems(at, where)
    assert not problems, problems


def _page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, f"{name}: {[e.value for e in at.exception]}"
    _audit(at, name)
    return at


def _charts(at: AppTest) -> int:
    """Charts on the page: Vega-Lite (dashboards/charts.py) and plotly; every one of them has
    axis titles in words with units (``axis_audit``)."""
    _audit(at, "page")
    return len(at.get("vega_lite_chart")) + len(at.get("plotly_chart"))


def _tab(at: AppTest, key: str, label: str) -> AppTest:
    """Open a lazy tab (st.tabs(on_change="rerun")) by its label."""
    at.session_state[key] = label
    at.run()
    assert not at.exception, f"{label}: {[e.value for e in at.exception]}"
    _audit(at, label)
    return at


def _frame(at: AppTest, *columns: str):
    """The first dataframe on the page with these columns (AppTest keeps no dataframe keys)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def _infos(at: AppTest) -> str:
    return " | ".join(i.value for i in at.info)


# (page, title, plotly charts at least, dataframes at least) on the full fixture run
FULL_EXPECT = {
    "overview": ("Run overview", 1, 0),
    "feeder": ("Feeder", 3, 0),
    "market": ("Market", 1, 0),  # the first tab only: the others run when opened
    "ledger": ("Ledger", 1, 2),  # the first tab only: the others run when opened
    "resilience": ("Resilience", 3, 1),
    "hil": ("Hardware in the loop", 3, 3),
    "game": ("Cooperative game", 0, 0),  # a feeder run: the page says it holds no game
}


@pytest.mark.parametrize("name", RUN_PAGES)
def test_every_run_page_renders_on_a_full_run(full_run, monkeypatch, name):
    at = _page(_app(full_run, monkeypatch), name)
    title, charts, frames = FULL_EXPECT[name]
    assert [t.value for t in at.title] == [title]
    assert _charts(at) >= charts
    assert len(at.dataframe) >= frames
    assert not at.error


def test_overview_shows_the_kpi_cards_and_the_scenario(full_run, monkeypatch):
    at = _app(full_run, monkeypatch)
    cards = {m.label: m.value for m in at.metric}
    for label in ("Energy traded", "Mean clearing price", "Self-sufficiency", "Curtailed by DSO",
                  "Min voltage", "Max voltage", "Max line loading", "Energy not served", "Tokens"):
        assert label in cards
    assert cards["Tokens"] == "conserved"
    assert cards["Self-sufficiency"] == "75.0 %"  # kpis.json self_sufficiency, not recomputed
    assert cards["Energy not served"] == "12.5 kWh"
    assert any("households" in m.value and "cigre_lv" in m.value for m in at.markdown)
    assert any("complete" in s.value for s in at.success)


def test_feeder_time_slider_redraws_the_network(full_run, monkeypatch):
    at = _page(_app(full_run, monkeypatch), "feeder")
    slider = at.select_slider(key="feeder_time")
    before = {m.label: m.value for m in at.metric}
    slider.set_value(0.75).run()  # 3rd interval: the fixture's lines are loaded more
    assert not at.exception
    after = {m.label: m.value for m in at.metric}
    assert before["Highest line loading"] != after["Highest line loading"]


def test_market_interval_choice_shows_its_orders_and_trades(full_run, monkeypatch):
    at = _page(_app(full_run, monkeypatch), "market")
    assert [t.label for t in at.tabs] == MARKET_TABS
    _tab(at, "market_tab", "Supply and demand of one interval")
    assert _charts(at) == 1  # the supply and demand curves
    at.selectbox(key="market_interval").set_value(4).run()
    assert not at.exception
    assert any("Trades of interval 4" in m.value for m in at.markdown)
    assert set(_frame(at, "trade_id", "price")["interval"]) == {4}
    _tab(at, "market_tab", "DSO curtailments")
    assert (_frame(at, "trade_id", "curtailed_wh")["curtailed_wh"] > 0).all()  # DSO curtailments
    _tab(at, "market_tab", "Revenue and cost per agent")
    agents = _frame(at, "agent", "net")
    assert len(agents) == 6 and _charts(at) == 1


@pytest.mark.parametrize("name,message", [
    ("resilience", "No resilience study (cases.parquet) in this folder"),
    ("hil", "No hardware-in-the-loop data"),
    ("sweep", "is a single run folder, not a sweep"),
])
def test_absent_tables_give_a_clear_message(plain_run, monkeypatch, name, message):
    at = _page(_app(plain_run, monkeypatch), name)
    assert message in _infos(at)
    assert _charts(at) == 0


def test_ledger_lists_missing_extras_and_traces_transactions(plain_run, monkeypatch):
    at = _page(_app(plain_run, monkeypatch), "ledger")
    assert [t.label for t in at.tabs] == LEDGER_TABS
    tx = _frame(at, "tx_hash", "block")
    assert tx["tx_hash"].str.startswith("0x").all()
    at.selectbox(key="ledger_interval").set_value(3).run()
    tx = _frame(at, "tx_hash", "block")
    assert set(tx["interval"]) == {3}
    for label, message in (("Certificates", "No green certificates"),
                           ("Demand response", "No demand-response events"),
                           ("Tokenized assets", "No tokenized-asset revenue distributions"),
                           ("Frequency regulation", "No frequency regulation"),
                           ("Other services", "No green-exchange trades")):
        _tab(at, "ledger_tab", label)
        assert message in _infos(at) and "Not in this run" in _infos(at)
        assert not at.error


def test_ledger_tabs_show_value_services_each_traced_to_its_transaction(full_run, monkeypatch):
    at = _page(_app(full_run, monkeypatch), "ledger")
    assert _charts(at) == 1 and not at.get("text_input")  # lazy: only the first tab ran
    at.session_state["ledger_contracts"] = True  # open the lazy contracts expander
    at.run()
    assert set(_frame(at, "contract", "address")["contract"]) == {"EnergyMarket", "SettlementToken"}
    _tab(at, "ledger_tab", "Token balances")
    assert _charts(at) == 1
    moves = _frame(at, "change", "balance", "settlement tx_hash")
    assert moves["settlement tx_hash"].str.startswith("0x").all()  # each change -> its settle tx

    _tab(at, "ledger_tab", "Certificates")
    cards = {m.label: m.value for m in at.metric}
    # fixture: 2 issued in each of 7 intervals, 1 retired in intervals 3 and 6
    assert cards["Certificates issued"] == "14" and cards["Retired"] == "2"
    assert cards["Outstanding"] == "12"
    assert _frame(at, "action", "vintage")["tx_hash"].str.startswith("0x").all()
    assert _charts(at) == 1

    _tab(at, "ledger_tab", "Demand response")
    cards = {m.label: m.value for m in at.metric}
    assert cards["Events posted"] == "2" and cards["Paid out"] == "0.25"  # 0.12 + 0.13
    payouts = _frame(at, "event_id", "device_id", "amount")
    assert len(payouts) == 4 and payouts["amount"].sum() == pytest.approx(0.25)
    assert _charts(at) == 1

    _tab(at, "ledger_tab", "Tokenized assets")
    cards = {m.label: m.value for m in at.metric}
    assert cards["Tokenized assets"] == "1"
    assert _frame(at, "holder", "shares")["tx_hash"].nunique() == 3

    _tab(at, "ledger_tab", "Frequency regulation")
    cards = {m.label: m.value for m in at.metric}
    assert cards["Paid"] == "2.25" and cards["Mean precision score"] == "1.000"  # 3 x 0.75
    assert _charts(at) == 2  # capacity (kW) per hour, pay per interval
    assert _frame(at, "device_id", "mileage_w")["tx_hash"].nunique() == 3

    _tab(at, "ledger_tab", "Look up a hash")
    wanted = "0x" + f"{1200 + 2:064x}"  # the distribution of interval 2
    at.text_input(key="ledger_hash").input(wanted).run()
    assert any("asset_distributions" in m.value for m in at.markdown)
    assert _frame(at, "asset", "revenue")["interval"].tolist() == [2]
    at.text_input(key="ledger_hash").input("0x" + "0" * 64).run()
    assert "No row of this run's ledger tables" in at.warning[0].value


def test_sweep_page_comes_first_and_plots_parameters_against_kpis(sweep, monkeypatch):
    at = _app(sweep, monkeypatch)  # default page of a sweep folder
    assert [t.value for t in at.title] == ["Sweep"]
    cards = {m.label: m.value for m in at.metric}
    assert cards["Runs"] == "12" and cards["Failed or incomplete"] == "2"
    assert cards["Parameters"] == "2"
    assert _charts(at) == 3  # scatter, parallel coordinates, heat map
    assert len(at.get("plotly_chart")) == 1  # only the parallel coordinates need plotly
    runs = _frame(at, "pages", "run_id")
    assert runs["pages"].iloc[0] == "./overview?run=r0000"
    at.multiselect(key="sw_status").set_value(["failed"]).run()
    assert not at.exception
    assert "2 of 12 runs" in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("name", ALL_PAGES)
def test_every_page_renders_on_a_sweep(sweep, monkeypatch, name):
    at = _page(_app(sweep, monkeypatch), name)
    assert not at.error


def test_sweep_run_picker_switches_the_run_pages(sweep, monkeypatch):
    at = _app(sweep, monkeypatch)
    at.selectbox(key="twin_selected_run").set_value("r0004").run()
    _page(at, "overview")
    assert any("run r0004 of sweep" in c.value for c in at.caption)
    # r0009 failed before writing a run folder: a message, not a traceback
    at.selectbox(key="twin_selected_run").set_value("r0009").run()
    assert not at.exception
    assert "has no results folder yet" in at.warning[0].value


def test_run_link_opens_that_run(sweep, monkeypatch):
    monkeypatch.setenv("TWIN_RUN_DIR", str(sweep))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "r0003"
    at.run()
    _page(at, "overview")
    assert any("run r0003 of sweep" in c.value for c in at.caption)


@pytest.mark.parametrize("state", ["missing", "interrupted", "running", "empty_sweep"])
def test_missing_or_partial_folders_give_a_message(tmp_path, monkeypatch, state):
    if state in ("interrupted", "running"):
        write_json_atomic({"status": state, "error": "Ctrl-C" if state == "interrupted" else None,
                           "stopped_at_time_s": 900}, tmp_path / "manifest.json")
    if state == "empty_sweep":
        (tmp_path / "runs").mkdir()
    at = _app(tmp_path, monkeypatch)
    for name in ALL_PAGES:
        _page(at, name)
        text = " | ".join(e.value for e in [*at.error, *at.warning, *at.info])
        if state == "missing":
            assert ("manifest.json missing" in text or "not a sweep" in text
                    or "not a comparison folder" in text)
        elif state == "interrupted" and name == "overview":
            assert "Run interrupted: Ctrl-C" in text
        elif state == "running" and name == "overview":
            assert "still running" in text
        elif state == "empty_sweep":
            assert "no runs yet" in text or "kpis.parquet" in text or "not a comparison" in text
        else:
            assert text, f"{state}/{name}: the page says nothing"


def test_a_resilience_study_folder_opens_on_its_cases_map_and_storage(study, monkeypatch):
    at = _app(study, monkeypatch)
    assert "Resilience" in at.title[0].value  # opens on its own page
    _page(at, "overview")
    assert any("resilience study" in i.value for i in at.info)  # the overview says what it is
    at = _page(at, "resilience")
    cards = {m.label: m.value for m in at.metric}
    assert cards["Cases"] == "7" and cards["ENS, all cases"] == "63.0 kWh"
    assert _charts(at) == 4  # ranking, map, SOC, unserved load
    assert _frame(at, "case", "ens_kwh")["lines_out"].iloc[1] == "0"
    at.selectbox(key="res_case").set_value("upstream_6h").run()
    assert not at.exception
    assert "transformers [0]" in " ".join(c.value for c in at.caption)
    for name in ("feeder", "market", "ledger", "hil"):  # the other pages explain what is missing
        _page(at, name)
        assert not at.error and (at.info or at.warning)


def test_compare_page_comes_first_with_kpis_side_by_side(compare, monkeypatch):
    at = _app(compare, monkeypatch)  # default page of a comparison folder
    assert [t.value for t in at.title] == ["Compare"]
    cards = {m.label: m.value for m in at.metric}
    assert cards["Scenarios"] == "3" and cards["Failed"] == "1" and cards["KPIs"] == "16"
    assert "broken: failed — ScenarioError" in at.error[0].value  # the failure, said plainly
    scen = _frame(at, "pages", "ledger")
    assert scen["pages"].tolist() == ["./overview?run=baseline", "./overview?run=cda%20market",
                                      "./overview?run=broken"]
    kpis = _frame(at, "meaning, unit", "baseline", "cda market")
    assert kpis.loc["self_sufficiency", "baseline"] == "10"  # formatted for reading
    assert kpis.loc["self_sufficiency", "cda market"] == "13"  # the fixture's value, column order kept
    assert (kpis["broken"] == "n/a").all()  # not applicable, said in words
    assert _charts(at) == 1  # one faceted bar chart: a panel per KPI
    at.multiselect(key="cmp_chosen").set_value(["gas_per_kwh"]).run()
    assert not at.exception and _charts(at) == 1


def test_compare_run_pages_follow_the_scenario_picked(compare, monkeypatch):
    monkeypatch.setenv("TWIN_RUN_DIR", str(compare))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = "cda market"
    at.run()
    _page(at, "overview")
    assert any("run cda market of comparison" in c.value for c in at.caption)
    at.selectbox(key="twin_selected_run").set_value("broken").run()  # failed: no run folder
    assert not at.exception
    assert "has no results folder yet" in at.warning[0].value
    _page(at, "sweep")
    assert "not a sweep: the Compare page" in _infos(at)


@pytest.mark.parametrize("name", ALL_PAGES)
def test_every_page_renders_on_a_comparison(compare, monkeypatch, name):
    at = _page(_app(compare, monkeypatch), name)
    assert not at.exception


def test_a_comparison_without_its_json_or_rows_gives_a_message(tmp_path, monkeypatch):
    import pyarrow as pa

    from twin.results import write_table_atomic

    write_table_atomic(pa.table({"scenario": pa.array([], pa.string())}), tmp_path / "compare.parquet")
    at = _app(tmp_path, monkeypatch)
    assert "No comparison rows" in _infos(at)
    for name in RUN_PAGES:
        _page(at, name)
        assert at.info or at.warning


def test_a_game_run_opens_on_its_page_with_the_shapley_split(tmp_path, monkeypatch):
    from twin.run import run_scenario
    from twin.scenario import load_scenario

    root = Path(APP).parents[1]
    out = tmp_path / "game"
    run_scenario(load_scenario(root / "scenarios" / "consortium_generators.yaml"), out_dir=out)
    at = _app(out, monkeypatch)
    cards = {m.label: m.value for m in at.metric}
    assert "Grand coalition value" in cards and cards["Coalitions"] != "0"
    assert _charts(at) == 1  # the Shapley split
    units = _frame(at, "unit", "Shapley value (currency)")
    assert len(units) >= 2
