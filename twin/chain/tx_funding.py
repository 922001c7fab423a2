"""Gas money for a run's accounts: the transaction client's (:class:`twin.chain.tx.TxClient`)
plain value transfers, from one funded key (``twin run --funder-key``) or a run account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twin.chain.keys import TxKey
from twin.chain.tx_types import ChainRevert, ChainUnavailable

__all__ = ["Funding"]


class _Host(Protocol):
    """What funding uses of the client it is mixed into."""

    _keys: dict[int, TxKey]
    _nonce_hint: dict[int, int]
    _url: str

    @property
    def batching(self) -> bool: ...
    def rpc(self, method: str, params: list[Any]) -> dict[str, Any]: ...
    def rpc_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]: ...
    def await_receipts(self, tx_hashes: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def sign(self, tx: dict[str, Any], *, sender: int, value: int = 0,
             nonce: int | None = None) -> tuple[str, str]: ...
    def _max_fee(self) -> int: ...
    def _wait(self, tx_hash: str, pending: Any = None) -> dict[str, Any]: ...
    def _pending_nonce(self, address: str) -> int: ...
    def _send_transfer(self, *, sender: int, to: str, value_wei: int, purpose: str,
                       nonce: int | None = None) -> tuple[str, str, str]: ...
    def _confirm_transfer(self, *, to: str, tx_hash: str, purpose: str) -> None: ...


class Funding:
    """Value transfers of the transaction client (mixed into TxClient)."""

    def fund(self: _Host, funder: TxKey, addresses: Sequence[str], *, value_wei: int) -> None:
        """Pay each address ``value_wei`` of gas money from ``funder`` (one funded key); an
        unfunded funder raises one clear line."""
        have = int(self.rpc("eth_getBalance", [funder.address, "latest"]).get("result", "0x0"), 16)
        need = value_wei * len(addresses) + 21_000 * len(addresses) * self._max_fee()
        if have < need:
            raise ChainRevert("FunderUnfunded", {"funder": funder.address, "balance_wei": have,
                                                 "needed_wei": need},
                              purpose=f"funding {len(addresses)} run accounts at {self._url}")
        # pipelined: every transfer signed with the funder's next nonce and sent, then all
        # confirmed together (one receipt wait per transfer, no round trip in between)
        self._keys[-1] = funder
        nonce = self._pending_nonce(funder.address)
        if self.batching:  # one JSON-RPC batch of sends, the receipts read in batches
            signed = [(a, *self.sign({"to": a, "data": "0x", "gas": hex(21_000)}, sender=-1,
                                     value=value_wei, nonce=nonce + i))
                      for i, a in enumerate(addresses)]
            answers = self.rpc_many([("eth_sendRawTransaction", [raw]) for _, raw, _ in signed])
            for (a, _, _), sent_ in zip(signed, answers, strict=True):
                if "error" in sent_:
                    self._nonce_hint.clear()
                    raise ChainRevert("TransferFailed", {"message": sent_["error"].get("message", "")},
                                      purpose=f"funding {a}")
            got = self.await_receipts([h for _, _, h in signed])
            for a, _, h in signed:
                if h in got and int(got[h]["status"], 16) == 1:
                    continue
                self._confirm_transfer(to=a, tx_hash=h, purpose=f"funding {a}")
            return
        sent = [self._send_transfer(sender=-1, to=a, value_wei=value_wei,
                                    purpose=f"funding {a}", nonce=nonce + i)
                for i, a in enumerate(addresses)]
        for to, tx_hash, purpose in sent:
            self._confirm_transfer(to=to, tx_hash=tx_hash, purpose=purpose)

    def _pending_nonce(self: _Host, address: str) -> int:
        r = self.rpc("eth_getTransactionCount", [address, "pending"])
        if "error" in r:
            raise ChainUnavailable(f"the chain node at {self._url} refused "
                                   f"eth_getTransactionCount: {r['error']}")
        return int(r["result"], 16)

    def transfer_eth(self: _Host, *, sender: int | TxKey, to: str, value_wei: int, purpose: str) -> None:
        """A plain value transfer (funding a run's accounts with gas money)."""
        if isinstance(sender, TxKey):
            self._keys[-1] = sender
            sender = -1
        _, tx_hash, _ = self._send_transfer(sender=sender, to=to, value_wei=value_wei,
                                            purpose=purpose)
        self._confirm_transfer(to=to, tx_hash=tx_hash, purpose=purpose)

    def _send_transfer(self: _Host, *, sender: int, to: str, value_wei: int, purpose: str,
                       nonce: int | None = None) -> tuple[str, str, str]:
        tx = {"to": to, "data": "0x", "gas": hex(21_000)}
        raw, tx_hash = self.sign(tx, sender=sender, value=value_wei, nonce=nonce)
        sent = self.rpc("eth_sendRawTransaction", [raw])
        if "error" in sent:
            self._nonce_hint.clear()
            raise ChainRevert("TransferFailed", {"message": sent["error"].get("message", "")},
                              purpose=purpose)
        return to, tx_hash, purpose

    def _confirm_transfer(self: _Host, *, to: str, tx_hash: str, purpose: str) -> None:
        receipt = self._wait(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise ChainRevert("TransferFailed", {"to": to}, purpose=purpose, tx_hash=tx_hash)
