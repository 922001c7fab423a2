"""The checked-in contract artifacts match their sources and the pinned solc (a hash compare,
no compile): a fresh clone deploys them without running solc."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from twin.chain.compile import (
    ARTIFACT_FILE,
    CONTRACTS_DIR,
    compile_contracts,
    stale_artifact,
)

TEST_CONTRACTS = Path(__file__).parent / "contracts"


@pytest.mark.parametrize("contracts_dir", [CONTRACTS_DIR, TEST_CONTRACTS], ids=["twin", "tests"])
def test_checked_in_artifact_matches_its_sources(contracts_dir: Path) -> None:
    why = stale_artifact(contracts_dir)
    assert why is None, why


def test_the_build_uses_a_matching_artifact_and_names_the_fix_for_a_stale_one(
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    shutil.copytree(TEST_CONTRACTS, src)
    cache = tmp_path / "cache"
    used = compile_contracts(contracts_dir=src, cache_dir=cache, required=("ClaimAttacker",))
    assert used.path == src / ARTIFACT_FILE and not cache.exists()  # no solc run
    sol = src / "ClaimAttacker.sol"
    sol.write_text(sol.read_text() + "\n// edited\n")
    why = stale_artifact(src)
    assert why is not None and "stale" in why and "run `make contracts`" in why
    (src / ARTIFACT_FILE).unlink()
    assert "no checked-in contract artifact" in str(stale_artifact(src))
