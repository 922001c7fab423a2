"""Batched set-up of a population on the chain ledger: money for many accounts and many
devices registered (and their signing keys bound) in few, gas-bounded transactions.

The per-account transactions that only the account itself may send (``approve`` of the
market, ``setAgent``, ``deposit``) are pipelined: all sent, then all confirmed together. The
operator's mints and the DSO's registrations go in chunks (``mintBatch``, ``registerDevices``,
``setSigners``) far below a 30 M block. The result is the same chain state as the per-item
calls (``deposit``, ``register_device``, ``set_device_signer``), same checks, same events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eth_utils import to_checksum_address

from twin.chain.ledger_base import _MAX_UINT, UINT64
from twin.chain.ledger_registry import RegistryLedger
from twin.chain.tx import Pending
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, Device

__all__ = ["MINT_CHUNK", "REGISTER_CHUNK", "SIGNER_CHUNK", "SetupLedger"]

#: Entries per batch transaction (about 30-55 k gas each, so a chunk is < 14 M of a 30 M block).
REGISTER_CHUNK = 250
SIGNER_CHUNK = 250
MINT_CHUNK = 250


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


class SetupLedger(RegistryLedger):
    """:class:`RegistryLedger` plus the batched set-up calls."""

    def _confirm_all(self, pending: Sequence[Pending]) -> None:
        """Wait for every receipt (read in batches; in sending order, the first revert
        raises its error)."""
        self.tx.receipts(pending)

    def prepare_accounts(self, accounts: Sequence[int]) -> None:
        """``approve`` (and ``setAgent`` when the operator is everyone's agent) for every
        account not yet prepared, pipelined."""
        todo = [a for a in dict.fromkeys(accounts) if a not in self._prepared]
        self.tx.prefetch_nonces(todo)
        pending = [self._send(self.token, "approve", [self.market.address, _MAX_UINT], sender=a,
                              purpose=f"prepare account {a}: approve market") for a in todo]
        if self.operator_is_agent:
            operator = self.address_of(OPERATOR_ACCOUNT)
            pending += [self._send(self.market, "setAgent", [operator, True], sender=a,
                                   purpose=f"prepare account {a}: operator as order agent")
                        for a in todo if a != OPERATOR_ACCOUNT]
        self._confirm_all(pending)
        self._prepared.update(todo)

    def deposit_many(self, funding: Mapping[int, int]) -> None:
        """``deposit(account, amount)`` for every entry: the operator mints in ``mintBatch``
        chunks, then every account deposits its amount (pipelined)."""
        for account, amount in funding.items():
            if amount <= 0:
                raise e.BadAmount(amount, purpose=f"deposit: account {account}")
        accounts = list(funding)
        self.prepare_accounts(accounts)
        pending = []
        for rows in _chunks(len(accounts), MINT_CHUNK):
            acc = [accounts[i] for i in rows]
            pending.append(self._send(
                self.token, "mintBatch",
                [[self.address_of(a) for a in acc], [funding[a] for a in acc]],
                sender=OPERATOR_ACCOUNT,
                purpose=f"deposit: mint to accounts {acc[0]}..{acc[-1]} ({len(acc)})"))
        self._confirm_all(pending)
        self.tx.prefetch_nonces(accounts)
        self._confirm_all([self._send(self.market, "deposit", [funding[a]], sender=a,
                                      purpose=f"deposit: account {a} deposits {funding[a]}")
                           for a in accounts])

    def register_devices(self, devices: Sequence[Device], *, sender: int | None = None) -> None:
        """``register_device`` for every device, in ``registerDevices`` chunks; a bad entry
        reverts its chunk with the error naming the device (earlier chunks stay)."""
        for d in devices:
            if not 0 <= d.device_id < UINT64:
                raise ValueError(f"device_id {d.device_id} does not fit uint64")
            if not 0 <= d.capacity_w < 2**48 or not 0 <= d.bus < 2**32:
                raise ValueError(
                    f"device {d.device_id}: capacity_w must fit uint48 and bus uint32")
        self.prepare_accounts([d.owner for d in devices])
        who = DSO_ACCOUNT if sender is None else sender
        for rows in _chunks(len(devices), REGISTER_CHUNK):
            batch = [devices[i] for i in rows]
            self._finish(self._send(
                self.registry, "registerDevices",
                [[d.device_id for d in batch], [self.address_of(d.owner) for d in batch],
                 [int(d.kind) for d in batch], [d.bus for d in batch],
                 [d.capacity_w for d in batch]],
                sender=who,
                purpose=f"register_devices: devices {batch[0].device_id}..{batch[-1].device_id} "
                        f"({len(batch)})"))
            self._devices.update({d.device_id: d for d in batch})

    def set_device_signers(self, signers: Mapping[int, str], *, sender: int | None = None) -> None:
        """``set_device_signer`` for every device, in ``setSigners`` chunks."""
        items = list(signers.items())
        for device_id, _ in items:
            if not 0 <= device_id < UINT64:
                raise e.UnknownDevice(device_id, purpose="set_device_signers")
        who = DSO_ACCOUNT if sender is None else sender
        for rows in _chunks(len(items), SIGNER_CHUNK):
            batch = [items[i] for i in rows]
            self._finish(self._send(
                self.registry, "setSigners",
                [[d for d, _ in batch], [to_checksum_address(s) for _, s in batch]],
                sender=who,
                purpose=f"set_device_signers: devices {batch[0][0]}..{batch[-1][0]} "
                        f"({len(batch)})"))
