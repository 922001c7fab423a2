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
from twin.market.signing_batch import ORDER_LEN, READING_LEN, order_rows, reading_rows, sign_rows
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
        """Each intent signed by its own device, nonces rising per device and interval (the
        whole batch at once: :mod:`twin.market.signing_batch`, the same bytes)."""
        nonces = []
        for it in intents:
            key = (it.device_id, it.interval)
            self._nonce[key] += 1
            nonces.append(self._nonce[key])
        keys = [self.key(it.device_id) for it in intents]
        idx, rows = order_rows(intents, nonces)
        out: list[SignedOrder | None] = [None] * len(intents)
        if len(idx) < len(intents):  # a field beyond int64: the one-message path and its errors
            fast = set(idx)
            for k, it in enumerate(intents):
                if k not in fast:
                    out[k] = keys[k].sign_order(it, nonce=nonces[k], domain=domain)
        sigs = sign_rows(domain, rows, ORDER_LEN, b"".join(keys[k]._secret for k in idx))
        for k, sig in zip(idx, sigs, strict=True):
            out[k] = SignedOrder(intent=intents[k], nonce=nonces[k], signature=sig)
        return out  # type: ignore[return-value]

    def sign_readings(self, *, interval: int, metered_wh: Mapping[int, int],
                      domain: Domain) -> list[SignedReading]:
        """Each meter reading signed by its device (ascending device id)."""
        items = [(d, interval, int(w)) for d, w in sorted(metered_wh.items())]
        keys = [self.key(d) for d, _, _ in items]
        idx, rows = reading_rows(items)
        out: list[SignedReading | None] = [None] * len(items)
        if len(idx) < len(items):
            fast = set(idx)
            for k, (d, i, w) in enumerate(items):
                if k not in fast:
                    out[k] = keys[k].sign_reading(device_id=d, interval=i, metered_wh=w,
                                                  domain=domain)
        sigs = sign_rows(domain, rows, READING_LEN, b"".join(keys[k]._secret for k in idx))
        for k, sig in zip(idx, sigs, strict=True):
            d, i, w = items[k]
            out[k] = SignedReading(device_id=d, interval=i, metered_wh=w, signature=sig)
        return out  # type: ignore[return-value]
