"""The hand encoder of static words and arrays (twin/chain/abi.py ``encode_call``) gives
eth_abi's bytes for every function of the compiled contracts it takes, with random and
boundary values; a value outside its type falls back to eth_abi and raises its error."""

from __future__ import annotations

import random

import pytest
from eth_abi import encode as abi_encode
from eth_abi.exceptions import EncodingError

from twin.chain.abi import _encode_fast, _plan, encode_call, function_spec
from twin.chain.compile import compile_contracts


def _value(t: str, rng: random.Random) -> object:
    if t == "bytes32":
        return rng.randbytes(32)
    if t == "bool":
        return rng.random() < 0.5
    bits = int(t.lstrip("uint") or 256)
    if t.startswith("u"):
        return rng.choice([0, (1 << bits) - 1, rng.randrange(1 << bits)])
    half = 1 << (bits - 1)
    return rng.choice([-half, half - 1, -1, rng.randrange(-half, half)])


def _args(plan: list[tuple[bool, list[str]]], rng: random.Random) -> list[object]:
    out: list[object] = []
    for is_array, parts in plan:
        if not is_array:
            out.append(_value(parts[0], rng))
            continue
        n = rng.choice([0, 1, 5])
        out.append([_value(parts[0], rng) if len(parts) == 1
                    else tuple(_value(p, rng) for p in parts) for _ in range(n)])
    return out


def test_fast_encoding_equals_eth_abi_for_every_function_it_takes() -> None:
    rng = random.Random(24)
    compiled = compile_contracts()
    taken = 0
    for name in compiled.artifacts:
        abi = compiled[name].abi
        for item in abi:
            if item.get("type") != "function" or not item["inputs"]:
                continue
            if sum(i.get("type") == "function" and i["name"] == item["name"] for i in abi) > 1:
                continue  # overloads: function_spec takes one
            spec = function_spec(abi, item["name"])
            plan = _plan(spec[1])
            if plan is None:
                continue
            taken += 1
            for _ in range(3):
                args = _args(plan, rng)
                want = "0x" + (spec[0] + abi_encode(spec[1], args)).hex()
                assert _encode_fast(spec[1], args) is not None
                assert encode_call(spec, args) == want, (name, item["name"], args)
    assert taken > 50  # the market's, registry's and token's calls
    spec = (b"\0" * 4, ["uint64", "(uint64,int256,bytes32)[]"])
    for bad in ([1 << 64, []], [-1, []], [1, [(1, 1 << 255, b"\0" * 32)]], [1, [(1, 2)]],
                [True, []]):
        assert _encode_fast(spec[1], bad) is None
        with pytest.raises(EncodingError):
            encode_call(spec, bad)
    short = [1, [(1, 2, b"\1" * 31)]]  # eth_abi pads a short bytes32: the fallback does
    assert _encode_fast(spec[1], short) is None
    assert encode_call(spec, short) == "0x" + (spec[0] + abi_encode(spec[1], short)).hex()


def _event_value(t: str, rng: random.Random) -> object:
    if t == "address":
        return "0x" + rng.randbytes(20).hex()
    if t == "bytes":
        return rng.randbytes(rng.choice([0, 4, 36, 68]))
    return _value(t, rng)


def test_event_codec_equals_eth_abi() -> None:
    """EventCodec's hand-sliced words decode every event of the market's ABI (the
    ProvisionalSettlement events it also reads included) as eth_abi does, with random and
    boundary values; logs of other contracts and unknown topics are skipped."""
    from types import SimpleNamespace

    from eth_utils import keccak

    from twin.chain.abi import EventCodec, abi_type, decode_event_logs

    compiled = compile_contracts()
    abi = compiled["EnergyMarket"].abi + [
        i for i in compiled["ProvisionalSettlement"].abi if i["type"] == "event"]
    market = "0x" + "ab" * 20
    codec = EventCodec(abi, address=market)
    rng = random.Random(19)
    events = [i for i in abi if i["type"] == "event"]
    assert len(events) > 10
    for item in events:
        types = [abi_type(i) for i in item["inputs"]]
        topic0 = "0x" + keccak(text=f"{item['name']}({','.join(types)})").hex()
        for _ in range(4):
            values = [_event_value(t, rng) for t in types]
            idx = [(t, v) for i, t, v in zip(item["inputs"], types, values, strict=True) if i["indexed"]]
            plain = [(t, v) for i, t, v in zip(item["inputs"], types, values, strict=True)
                     if not i["indexed"]]
            log = {"address": market.upper().replace("0X", "0x"),
                   "topics": [topic0] + ["0x" + abi_encode([t], [v]).hex() for t, v in idx],
                   "data": "0x" + abi_encode([t for t, _ in plain], [v for _, v in plain]).hex()}
            other = {**log, "address": "0x" + "cd" * 20}
            unknown = {**log, "topics": ["0x" + "00" * 32, *log["topics"][1:]]}
            ((name, got),) = codec.decode([other, log, unknown], lambda a: a.lower())
            want = decode_event_logs(SimpleNamespace(abi=[item], address=market), [log], item["name"],
                                     account_of=lambda a: a.lower())
            assert name == item["name"] and [got] == want, item["name"]
