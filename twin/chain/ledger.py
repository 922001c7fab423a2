"""``ChainLedger``: the :class:`~twin.market.ledger.Ledger` protocol over the Solidity
contracts, through web3.py.

Same method semantics and return types as :class:`~twin.market.reference.ReferenceLedger`;
results are read back from the transactions' event logs. Account index ``i`` is the node's
``i``-th unlocked account (Anvil's). Each participant, when its first device is registered
or it first deposits, approves the market for its tokens and the operator as its order
agent (``EnergyMarket.setAgent``), so one ``placeOrders`` transaction carries a whole
interval's orders while every order keeps its device owner as owner and escrow payer.

A revert raises the same :class:`~twin.market.errors.MarketError` subclass the reference
raises, decoded from the custom error, with the transaction's purpose in the message; other
reverts (token errors, panics, out of gas) raise :class:`ChainRevert`. Every transaction is
recorded in :attr:`ChainLedger.transactions` (hash, block, gas, function, interval).

Clock and gate closure: the market's clock is block time. ``EnergyMarket.marketStart`` is the
chain time at which interval 0's delivery starts; ``now_s`` = block time - marketStart, the
same clock as :class:`~twin.market.reference.ReferenceLedger` (gate rule there). ``deploy``
freezes the node's block clock (``anvil_setBlockTimestampInterval 0``: blocks no longer
follow the wall clock) and puts marketStart one interval plus the gate lead after the
latest block, so the clock starts where the reference's does; from then on only
:meth:`ChainLedger.set_time` moves it (``evm_setNextBlockTimestamp``), e.g. once per
simulated interval, so a run of simulated days needs no wall-clock waiting and every block
of a step carries that step's time. A ``GateClosed`` revert's block times are converted to
seconds since the market's start.

The class is layered by concern: :mod:`twin.chain.ledger_base` (transport, registry,
clock, views), :mod:`twin.chain.ledger_orders`, :mod:`twin.chain.ledger_clearing`,
:mod:`twin.chain.ledger_settlement`; this module adds the deployment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from twin.chain.abi import link
from twin.chain.compile import CompiledContracts, compile_contracts
from twin.chain.keys import TxKey
from twin.chain.ledger_base import (
    CLEAR_CHUNK_ORDERS,
    CLEAR_CHUNK_TRADES,
    SETTLE_CHUNK_DEVICES,
    SETTLE_CHUNK_TRADES,
    freeze_clock,
)
from twin.chain.ledger_daily import DailyLedger
from twin.chain.ledger_orders import SIGNED_ORDER_CHUNK, PendingOrders
from twin.chain.tx import ChainRevert, ChainUnavailable, TxClient, TxRecord
from twin.market.bond import BondTerms
from twin.market.mechanisms import CHAIN_CODE, Mechanism, check_mechanism
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT

__all__ = [
    "CLEAR_CHUNK_ORDERS",
    "CLEAR_CHUNK_TRADES",
    "SETTLE_CHUNK_DEVICES",
    "SETTLE_CHUNK_TRADES",
    "SIGNED_ORDER_CHUNK",
    "ChainLedger",
    "ChainRevert",
    "ChainUnavailable",
    "PendingOrders",
    "TxRecord",
]


class ChainLedger(DailyLedger):
    """The market on chain (see the module docstring)."""

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        *,
        interval_s: int,
        retail_price_per_mwh: int,
        feed_in_price_per_mwh: int,
        compiled: CompiledContracts | None = None,
        accounts: Sequence[str] | None = None,
        tx_gas: int = 30_000_000,
        gas_price: int = 0,
        keys: Sequence[TxKey] | None = None,
        funder: TxKey | None = None,
        fund_wei: int = 10 * 10**18,
        gate_lead_s: int | None = None,
        market_start_s: int | None = None,
        mechanism: Mechanism = "uniform",
        salt: bytes | None = None,
        min_order_wh: int = 1,
        imbalance_bond: int = 0,
        bond_intervals: int = 0,
        true_up_expiry_s: int = 0,
    ) -> ChainLedger:
        """Deploy SettlementToken, DeviceRegistry and EnergyMarket (operator = account 0,
        DSO = account 1) and return a ledger over them.

        ``gate_lead_s`` (default: one interval) and ``market_start_s`` (chain time of interval
        0's delivery start; default: latest block time + one interval + the lead) set the gate
        rule (module docstring). The node's block clock is frozen (only ``set_time`` moves it).
        ``mechanism`` (:mod:`twin.market.mechanisms`) is set by the operator right after
        deployment (``setMechanism``); ``keys``: the run's own account keys (every
        transaction is signed with them), ``funder``: the key that pays each ``fund_wei``; the CDA's matching runs in the linked library
        ``CdaMatching``, settlement in ``MarketSettlement`` and settlement on estimates with
        true-ups in ``ProvisionalSettlement`` (reached through EnergyMarket's fallback; all
        deployed first), which keeps EnergyMarket under the EIP-170 limit. ``salt``: the EIP-712
        domain salt (default: 32 random bytes, so no signature of one deployment is valid in
        another). ``min_order_wh``: the smallest order energy (OrderTooSmall below it);
        ``imbalance_bond``, ``bond_intervals``, ``true_up_expiry_s``: the imbalance bond's
        terms (:class:`~twin.market.bond.BondTerms`: each device posts ``bond_intervals``
        intervals at its rating at the retail price, at least ``imbalance_bond`` money, with
        its first order; topped up at settlement, released by releaseBond; an estimate not
        trued up within ``true_up_expiry_s`` of its interval's end can be made final;
        EnergyMarket.bondTerms, MarketSettlement)."""
        check_mechanism(mechanism)
        if interval_s <= 0 or retail_price_per_mwh < 0 or feed_in_price_per_mwh < 0:
            raise ValueError("interval_s must be > 0 and tariffs >= 0")
        lead = interval_s if gate_lead_s is None else gate_lead_s
        if lead < 0:
            raise ValueError(f"gate_lead_s must be >= 0, got {gate_lead_s}")
        if not 1 <= min_order_wh < 2**64:
            raise ValueError(f"min_order_wh must be in 1..2**64-1, got {min_order_wh}")
        if imbalance_bond < 0:
            raise ValueError(f"imbalance_bond must be >= 0, got {imbalance_bond}")
        terms = BondTerms(floor=imbalance_bond, intervals=bond_intervals,
                          true_up_expiry_s=true_up_expiry_s).packed(retail_price_per_mwh=retail_price_per_mwh)
        freeze_clock(w3)
        latest = int(w3.eth.get_block("latest")["timestamp"])
        start = latest + interval_s + lead if market_start_s is None else market_start_s
        if start < 0:
            raise ValueError(f"market_start_s must be >= 0, got {market_start_s}")
        compiled = compiled or compile_contracts()
        if keys:
            accts = [k.address for k in keys]
        else:
            accts = [to_checksum_address(a) for a in (accounts or w3.eth.accounts)]
        if len(accts) < 2:
            raise ValueError("the chain needs at least 2 accounts (operator, DSO)")
        operator, dso = accts[OPERATOR_ACCOUNT], accts[DSO_ACCOUNT]

        tx = TxClient(w3, compiled=compiled, accounts=accts, tx_gas=tx_gas, gas_price=gas_price,
                      keys=keys)
        if funder is not None:  # gas money for the run's own keys, from one funded key
            tx.fund(funder, accts, value_wei=fund_wei)

        def _deploy(name: str, *args: Any, bytecode: str | None = None) -> Contract:
            art = compiled[name]
            return tx.deploy(name, art.abi, bytecode or art.bytecode, list(args),
                             sender=OPERATOR_ACCOUNT)

        token = _deploy("SettlementToken", operator)
        first_block = tx.transactions[-1].block
        registry = _deploy("DeviceRegistry", dso)
        library = _deploy("CdaMatching")
        settlement = _deploy("MarketSettlement")
        provisional = _deploy("ProvisionalSettlement", bytecode=link(
            compiled["ProvisionalSettlement"].bytecode, "MarketSettlement", settlement.address))
        daily = _deploy("DailySchedules")
        salt = os.urandom(32) if salt is None else salt
        if len(salt) != 32:
            raise ValueError(f"salt must be 32 bytes, got {len(salt)}")
        code = link(compiled["EnergyMarket"].bytecode, "CdaMatching", library.address)
        market = _deploy(
            "EnergyMarket",
            token.address,
            registry.address,
            operator,
            interval_s,
            retail_price_per_mwh,
            feed_in_price_per_mwh,
            start,
            lead,
            min_order_wh,
            terms,
            salt,
            bytecode=link(link(link(code, "MarketSettlement", settlement.address),
                               "ProvisionalSettlement", provisional.address),
                          "DailySchedules", daily.address),
        )
        if mechanism != "uniform":
            tx.receipt(tx.send(market, "setMechanism", [CHAIN_CODE[mechanism]],
                               sender=OPERATOR_ACCOUNT, purpose="deploy EnergyMarket: set mechanism"))
        ledger = cls(
            w3,
            addresses={
                "SettlementToken": token.address,
                "DeviceRegistry": registry.address,
                "EnergyMarket": market.address,
            },
            compiled=compiled,
            accounts=accts,
            deploy_block=first_block,
            tx=tx,
        )
        ledger.cda_library = to_checksum_address(library.address)
        return ledger
