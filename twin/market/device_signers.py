"""The devices' own keys in a run: every device signs its orders and meter readings
(EIP-712, :mod:`twin.market.signing`) and the operator only relays them
(``place_signed_orders`` / ``settle_signed``), so the operator can neither trade on a device
nor forge its reading. Keys are made from the run's seed and the device id; the DSO binds
each device's key at registration (``set_device_signer``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from twin.market.signing import DeviceKey, Domain, SignedOrder, SignedReading
from twin.market.types import OrderIntent

__all__ = ["DeviceSigners"]


class DeviceSigners:
    """One key per device of a run; signs under the ledger's domain."""

    def __init__(self, *, seed: int | str, device_ids: Iterable[int]) -> None:
        self.keys = {d: DeviceKey.from_seed(f"{seed}/device/{d}") for d in device_ids}
        self._nonce: dict[tuple[int, int], int] = defaultdict(int)

    def bind(self, ledger: object) -> None:
        """The DSO registers every device's key (``set_device_signer``)."""
        if hasattr(ledger, "set_device_signers"):  # the chain: in batch transactions
            ledger.set_device_signers({d: k.address for d, k in self.keys.items()})
            return
        for d, key in self.keys.items():
            ledger.set_device_signer(d, key.address)  # type: ignore[attr-defined]

    def key(self, device_id: int) -> DeviceKey:
        try:
            return self.keys[device_id]
        except KeyError:
            raise KeyError(f"device {device_id} has no key in this run") from None

    def sign_orders(self, intents: Sequence[OrderIntent], *, domain: Domain) -> list[SignedOrder]:
        """Each intent signed by its own device, nonces rising per device and interval."""
        out = []
        for it in intents:
            self._nonce[it.device_id, it.interval] += 1
            out.append(self.key(it.device_id).sign_order(
                it, nonce=self._nonce[it.device_id, it.interval], domain=domain))
        return out

    def sign_readings(self, *, interval: int, metered_wh: Mapping[int, int],
                      domain: Domain) -> list[SignedReading]:
        """Each meter reading signed by its device (ascending device id)."""
        return [self.key(d).sign_reading(device_id=d, interval=interval, metered_wh=int(w),
                                         domain=domain)
                for d, w in sorted(metered_wh.items())]
