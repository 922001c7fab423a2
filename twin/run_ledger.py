"""A run's ledger: open the reference ledger or a chain (Anvil or an external node, a
resumed checkpoint, a fault-injecting proxy), fund the accounts and register the devices,
and write the contracts' ABIs (used by :mod:`twin.run`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

from twin.market.types import DSO_ACCOUNT
from twin.market.units import MICRO, payment, price_from_per_mwh
from twin.results import write_json_atomic
from twin.scenario import Scenario

__all__ = ["FUND_WEI", "bond_manifest", "bond_terms", "chain_manifest", "fund_and_register", "open_ledger", "write_abis"]

#: Gas money each of a chain run's accounts gets from the funder key (wei).
FUND_WEI = 10 * 10**18


@contextlib.contextmanager
def open_ledger(scenario: Scenario, out_dir: Path, n_accounts: int,
                 rpc_url: str | None, resume: Any = None,
                 funder_key: str | None = None, skip_faults_before_s: int = -1,
                 ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Yield ``(ledger, chain_manifest)``; a chain ledger's Anvil is stopped on exit.
    ``skip_faults_before_s``: the flaky chain's scheduled faults up to then happened in the
    stopped run a fresh replay continues (not injected again)."""
    m = scenario.market
    chain_faults = scenario.faults.chain if scenario.faults is not None else None
    proxies: list[Any] = []
    via = None
    skip = int(resume.stopped_at_time_s) if resume is not None else skip_faults_before_s
    if chain_faults is not None:  # a flaky chain: the fault-injecting proxy before the node
        from twin.faults.chain_faults import faulty, proxied_web3

        def via(node: Any) -> Any:
            return proxied_web3(node, chain_faults, seed=scenario.seed, skip_before_s=skip,
                                holder=proxies)
    if resume is not None and getattr(resume, "kind", "chain") == "reference":
        from twin.market.reference import ReferenceLedger  # replayed from the start, checked

        with resume.open_reference(ReferenceLedger(
                interval_s=m.interval_s, retail_price_per_mwh=price_from_per_mwh(m.retail_price_per_mwh),
                feed_in_price_per_mwh=price_from_per_mwh(m.feed_in_price_per_mwh),
                mechanism=m.mechanism, min_order_wh=m.min_order_wh,
                **bond_terms(scenario)), n_accounts=n_accounts) as opened:
            yield opened
        return
    if resume is not None and getattr(resume, "kind", "chain") == "chain_fresh":
        # a chain run with market services: replayed from its start on a new chain, checked
        # at the checkpoint against the stopped run's fingerprint (twin/resume_reference.py)
        with open_ledger(scenario, out_dir, n_accounts, rpc_url, None,
                         funder_key=funder_key, skip_faults_before_s=skip) as (ledger, info):
            yield resume.wrap_chain(ledger, info, n_accounts=n_accounts)
        return
    if resume is not None:  # twin run --resume: the checkpointed chain, replayed (twin/resume.py)
        with resume.open_ledger(n_accounts=n_accounts, interval_s=m.interval_s,
                                seed=scenario.seed, via=via) as (ledger, info):
            yield (faulty(ledger, chain_faults, proxies[0]) if proxies and chain_faults else ledger), info
        return
    interval_s = m.interval_s
    retail = price_from_per_mwh(m.retail_price_per_mwh)
    feed_in = price_from_per_mwh(m.feed_in_price_per_mwh)
    mechanism = m.mechanism
    if m.ledger == "reference":
        from twin.market.reference import ReferenceLedger

        yield ReferenceLedger(interval_s=interval_s, retail_price_per_mwh=retail,
                              feed_in_price_per_mwh=feed_in, min_order_wh=m.min_order_wh,
                              **bond_terms(scenario),
                              mechanism=mechanism), {"ledger": "reference"}
        return

    from twin.chain.anvil import AnvilNode
    from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
    from twin.chain.ledger import ChainLedger

    url = rpc_url or scenario.chain.rpc_url
    # Every account of the run is its own key made from the seed; one funded key pays them gas
    keys = derive_keys(scenario.seed, n_accounts)
    key_hex = funder_key or os.environ.get("TWIN_FUNDER_KEY") or (None if url else ANVIL_DEV_KEY)
    if key_hex is None:
        from twin.rpc_check import NodeRequirementError

        raise NodeRequirementError(f"--rpc-url {url}: pass --funder-key HEX (or set "
                                   "TWIN_FUNDER_KEY): a funded key that pays the run's accounts")
    funder = TxKey.from_hex(key_hex)
    if url:
        from twin.rpc_check import check_rpc_node

        check_rpc_node(url, funder=funder.address, need_wei=FUND_WEI * n_accounts)
    state_file = None if url else out_dir / "chain_state.json.gz"
    # With an external URL the node only attaches; otherwise it starts (and always stops) Anvil,
    # mining on demand (one block per batch of sends; behind a fault proxy too).
    with AnvilNode(rpc_url=url, accounts=1, dump_state=state_file,
                   automine=False) as node, (
            via(node) if via is not None else contextlib.nullcontext(node.web3())) as w3:
        ledger = ChainLedger.deploy(w3, interval_s=interval_s, retail_price_per_mwh=retail,
                                    feed_in_price_per_mwh=feed_in, mechanism=mechanism,
                                    min_order_wh=m.min_order_wh, **bond_terms(scenario),
                                    keys=keys, funder=funder, fund_wei=FUND_WEI)
        ledger.operator_is_agent = False  # orders are device-signed: the operator only relays
        # settled intervals' storage freed: a flat cost per day (GRIDTWIN_CHAIN_PRUNE=0: kept,
        # for bench/horizon.py --no-prune)
        ledger.prune_settled = os.environ.get("GRIDTWIN_CHAIN_PRUNE", "1") != "0"
        if not url and ledger.prune_settled:  # our own Anvil (a fault proxy forwards to its URL)
            ledger.compact_node = node.compact  # restarted without the freed slots, same URL
        if not url:  # our own Anvil: event reads scan only the blocks whose logs it keeps
            ledger.tx.log_window_blocks = node.keep_tx_blocks
        info = chain_manifest(ledger, rpc_url=url, state_file=state_file.name if state_file else None)
        yield (faulty(ledger, chain_faults, proxies[0]) if proxies and chain_faults else ledger), info


class BondKeywords(TypedDict):
    imbalance_bond: int
    bond_intervals: int
    true_up_expiry_s: int


def bond_terms(scenario: Scenario) -> BondKeywords:
    """Both ledgers' imbalance-bond keywords (twin.market.bond.BondTerms): the floor
    ``market.imbalance_collateral_wh`` at the retail price, ``imbalance_collateral_intervals``
    intervals at each device's rating, ``true_up_expiry_intervals`` in seconds."""
    m = scenario.market
    return BondKeywords(
        imbalance_bond=payment(m.imbalance_collateral_wh, price_from_per_mwh(m.retail_price_per_mwh)),
        bond_intervals=m.imbalance_collateral_intervals,
        true_up_expiry_s=m.true_up_expiry_intervals * m.interval_s)


def bond_manifest(ledger: Any, devices: Any) -> dict[str, Any]:
    """The manifest's view of the imbalance bond: its terms and the bond (money) each device
    rating posts, e.g. ``{"11000": 1650000}`` (twin.market.bond)."""
    t = ledger.bond_terms
    return {"floor": t.floor, "intervals": t.intervals, "true_up_expiry_s": t.true_up_expiry_s,
            "by_capacity_w": {str(c): ledger.bond_of(d) for c, d in sorted(
                {d.capacity_w: d for d in devices}.items())}}


def chain_manifest(ledger: Any, *, rpc_url: str | None, state_file: str | None) -> dict[str, Any]:
    return {
        "ledger": "chain",
        "chain_id": ledger.chain_id,
        "contracts": ledger.addresses(),
        "rpc_url": rpc_url,
        "state_file": state_file,
    }


def fund_and_register(ledger: Any, scenario: Scenario, model: Any) -> int:
    """Fund the DSO and every participant, register every device; return the amount minted."""
    m = scenario.market
    funding = {DSO_ACCOUNT: round(m.dso_balance * MICRO)}
    funding |= {a: round(m.initial_balance * MICRO) for a in model.accounts}
    if hasattr(ledger, "deposit_many"):  # the chain: batched, pipelined transactions
        ledger.deposit_many(funding)
        ledger.register_devices(list(model.devices))
    else:
        for account, amount in funding.items():
            ledger.deposit(account, amount)
        for device in model.devices:
            ledger.register_device(device)
    return sum(funding.values())




def write_abis(ledger: Any, out_dir: Path) -> None:
    for name, abi in ledger.abis().items():
        write_json_atomic(abi, out_dir / "abi" / f"{name}.json")
