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
