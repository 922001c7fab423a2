"""Helpers of the chain tests that compare a contract with its pure-Python reference: the
market parameters, a ledger deployed once per module, one snapshot per hypothesis example,
one operation run on both sides, device tables, and readers of a contract's raw storage (for
the libraries that reach EnergyMarket's storage by slot number).

A module-scoped ``base`` fixture is ``yield from module_ledger(anvil, compiled, setup=...)``;
conftest's ``snap`` fixture gives that ledger to a plain test, reverted afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from eth_utils import keccak
from hypothesis import event

from twin.chain.anvil import AnvilNode
from twin.chain.compile import CONTRACTS_DIR, CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.errors import MarketError
from twin.market.types import Device, DeviceKind

T = TypeVar("T")

INTERVAL_S = 900
RETAIL = 250_000_000
FEED_IN = 80_000_000
#: The market of every chain test (``ChainLedger.deploy`` / ``ReferenceLedger`` keywords).
PARAMS = {
    "interval_s": INTERVAL_S,
    "retail_price_per_mwh": RETAIL,
    "feed_in_price_per_mwh": FEED_IN,
}


def module_ledger(
    anvil: AnvilNode, compiled: CompiledContracts, *, setup: Callable[[ChainLedger], None],
    **deploy: Any,
) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    """A ledger deployed (PARAMS, and ``deploy``'s further arguments) and ``setup`` once per
    module, inside a snapshot reverted at the end (the body of a module-scoped ``base``
    fixture)."""
    outer = anvil.rpc("evm_snapshot")
    led = ChainLedger.deploy(anvil.web3(), compiled=compiled, **PARAMS, **deploy)
    setup(led)
    yield anvil, led
    anvil.rpc("evm_revert", outer)


@contextmanager
def reverted(anvil: AnvilNode) -> Iterator[None]:
    """Everything sent to the node inside the block is reverted at its end (one example)."""
    snap = anvil.rpc("evm_snapshot")
    try:
        yield
    finally:
        anvil.rpc("evm_revert", snap)


def both(ref: Callable[[], T], chain: Callable[[], T]) -> T | None:
    """Run one operation on the reference and on chain: the same result, or the same error
    (named in a hypothesis ``event``). The result; None after an error."""
    try:
        expected = ref()
    except MarketError as exc:
        with pytest.raises(type(exc)) as info:
            chain()
        assert info.value == exc, (str(info.value), str(exc))
        event(f"error {exc.name}")
        return None
    got = chain()
    assert got == expected, (got, expected)
    return expected


def both_call(
    ref: object,
    chain: object,
    method: str,
    *args: Any,
    chain_kw: Mapping[str, Any] | None = None,
    **kw: Any,
) -> Any:
    """:func:`both` for the common case: the same method, the same arguments on each side
    (``chain_kw``: keywords only the chain side takes, such as ``chunk``)."""
    return both(
        lambda: getattr(ref, method)(*args, **kw),
        lambda: getattr(chain, method)(*args, **kw, **(chain_kw or {})),
    )


def devices(
    table: Mapping[int, tuple[int, DeviceKind]], *, bus: int | None = None
) -> dict[int, Device]:
    """The 11 kW devices of ``table`` (device -> (owner, kind)) on bus ``bus`` (None: the
    bus numbered like the device)."""
    return {
        d: Device(device_id=d, owner=o, kind=k, bus=d if bus is None else bus, capacity_w=11_000)
        for d, (o, k) in table.items()
    }


def storage_word(w3: Any, address: str, slot: int) -> int:
    """The 32-byte word at storage ``slot`` of the contract at ``address``, as an integer."""
    return int.from_bytes(w3.eth.get_storage_at(address, slot), "big")


def mapping_slot(key: int, slot: int) -> int:
    """The storage slot of ``mapping[key]`` for a mapping declared at ``slot`` (Solidity's
    ``keccak256(key . slot)``); nest it for a mapping of mappings."""
    return int.from_bytes(keccak(key.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


def slot_constants(sol_file: str) -> dict[str, int]:
    """The ``NAME_SLOT = n`` constants of contract source ``sol_file`` (in the contracts
    folder) as ``{"NAME": n}``."""
    src = (CONTRACTS_DIR / sol_file).read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"constant (\w+)_SLOT = (\d+);", src)}
