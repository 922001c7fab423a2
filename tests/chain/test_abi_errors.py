"""Every custom error of every compiled contract is a reference error of the same name and
fields in the same order (twin/market/errors.py), or a named chain-only error; and every
reference error is raised by some contract."""

from __future__ import annotations

from twin.chain.compile import compile_contracts
from twin.market import errors as e
from twin.market import signing_daily  # noqa: F401  (registers the daily-signing errors in e.ERRORS)


def _abi_errors() -> dict[str, tuple[str, tuple[str, ...]]]:
    compiled = compile_contracts()
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for contract in compiled.artifacts:
        for item in compiled[contract].abi:
            if item["type"] == "error":
                fields = tuple(i["name"] for i in item["inputs"])
                seen = out.setdefault(item["name"], (contract, fields))
                assert seen[1] == fields, (f"{item['name']}: {seen[0]} has fields {seen[1]}, "
                                           f"{contract} {fields}")
    return out


def test_abi_errors_match_the_reference() -> None:
    abi = _abi_errors()
    wrong = {name: (contract, fields, e.ERRORS[name].fields)
             for name, (contract, fields) in abi.items()
             if name in e.ERRORS and e.ERRORS[name].fields != fields}
    assert not wrong, f"fields differ (contract, ABI, reference): {wrong}"
    unknown = sorted(n for n in abi if n not in e.ERRORS and n not in e.CHAIN_ONLY_ERRORS)
    assert not unknown, f"custom errors with no reference class nor chain-only entry: {unknown}"
    never = sorted(set(e.ERRORS) - set(abi))
    assert not never, f"reference errors no contract raises: {never}"
    stale = sorted(set(e.CHAIN_ONLY_ERRORS) - set(abi))
    assert not stale, f"chain-only errors no contract has: {stale}"
