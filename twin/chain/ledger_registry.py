"""The chain ledger's device registry: registering, revoking and reading devices and their
signing keys (``DeviceRegistry.sol``), and the malformed-order check that needs them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from eth_utils import to_checksum_address

from twin.chain.ledger_base import UINT64, LedgerBase, _memo
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind, OrderIntent
from twin.market.validation import reject_malformed

__all__ = ["RegistryLedger"]


class RegistryLedger(LedgerBase):
    """Devices on the chain's registry (see the module docstring)."""

    # --- devices ----------------------------------------------------------------------
    def register_device(self, device: Device, *, sender: int | None = None) -> None:
        if not 0 <= device.device_id < UINT64:
            raise ValueError(f"device_id {device.device_id} does not fit uint64")
        if not 0 <= device.capacity_w < 2**48 or not 0 <= device.bus < 2**32:
            raise ValueError(
                f"device {device.device_id}: capacity_w must fit uint48 and bus uint32"
            )
        owner = self.address_of(device.owner)
        self._prepare(device.owner)
        self._transact(
            self.registry,
            "register",
            [device.device_id, owner, int(device.kind), device.bus, device.capacity_w],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"register_device: device {device.device_id}",
        )
        self._devices[device.device_id] = device

    def revoke_device(self, device_id: int, *, sender: int | None = None) -> None:
        if not 0 <= device_id < UINT64:
            raise e.UnknownDevice(device_id, purpose="revoke_device")
        self._transact(
            self.registry,
            "revoke",
            [device_id],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"revoke_device: device {device_id}",
        )

    def set_device_signer(self, device_id: int, signer: str, *, sender: int | None = None) -> None:
        """DSO binds the device's signing key (its address); ZERO_ADDRESS unbinds."""
        if not 0 <= device_id < UINT64:
            raise e.UnknownDevice(device_id, purpose="set_device_signer")
        self._transact(
            self.registry, "setSigner", [device_id, to_checksum_address(signer)],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"set_device_signer: device {device_id}",
        )  # fmt: skip

    def device_signer(self, device_id: int) -> str:
        self.device(device_id)
        return to_checksum_address(self.registry.functions.signerOf(device_id).call())

    def _is_registered(self, device_id: int) -> bool:
        try:
            self.device(device_id)
        except e.UnknownDevice:
            return False
        return True

    def _reject_malformed(self, intents: Sequence[OrderIntent], action: str) -> None:
        reject_malformed(
            intents, is_registered=self._is_registered, is_closed=_memo(self._is_closed),
            action=action,
        )  # fmt: skip

    def _is_closed(self, interval: int) -> bool:
        return self.interval_status(interval) != "open"

    def _device_record(self, device_id: int) -> tuple[Device | None, int]:
        if not 0 <= device_id < UINT64:
            return None, 0
        owner, kind, status, bus, cap = self.registry.functions.get(device_id).call()
        if status == 0:
            return None, 0
        dev = Device(
            device_id=device_id,
            owner=cast(int, self.account_of(owner)),
            kind=DeviceKind(kind),
            bus=bus,
            capacity_w=cap,
        )
        return dev, int(status)

    def device(self, device_id: int) -> Device:
        if device_id in self._devices:
            return self._devices[device_id]
        dev, _ = self._device_record(device_id)
        if dev is None:
            raise e.UnknownDevice(device_id)
        self._devices[device_id] = dev
        return dev

    def is_revoked(self, device_id: int) -> bool:
        dev, status = self._device_record(device_id)
        if dev is None:
            raise e.UnknownDevice(device_id)
        return status == 2
