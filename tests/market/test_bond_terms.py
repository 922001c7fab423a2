"""The imbalance bond's terms (twin.market.bond): sized by the device's rating with a floor,
the one-word on-chain form, and bad terms named."""

from __future__ import annotations

import pytest

from twin.market.bond import BondTerms
from twin.market.units import payment

RETAIL = 300_000_000


def test_bond_is_intervals_at_rating_with_a_floor_and_packs_losslessly() -> None:
    t = BondTerms(floor=payment(1500, RETAIL), intervals=2, true_up_expiry_s=86_400)
    assert t.bond_of(cap_wh=2750, retail_price_per_mwh=RETAIL) == payment(5500, RETAIL)  # 11 kW
    assert t.bond_of(cap_wh=500, retail_price_per_mwh=RETAIL) == payment(1500, RETAIL)  # 2 kW: floor
    word = t.packed(retail_price_per_mwh=RETAIL)
    assert BondTerms.unpack(word, retail_price_per_mwh=RETAIL) == t
    assert word >> 128 & (2**64 - 1) == 2 * RETAIL  # the contract's rate: a cap at it is 2 caps at retail
    assert t.deadline_s(interval=3, interval_s=900) == 4 * 900 + 86_400
    assert BondTerms().deadline_s(interval=3, interval_s=900) is None and not BondTerms().any_bond


@pytest.mark.parametrize(("kw", "field"), [({"floor": -1}, "floor"), ({"intervals": 2**64}, "intervals"),
                                           ({"true_up_expiry_s": -5}, "true_up_expiry_s")])
def test_bad_terms_name_the_field(kw: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=f"bond terms: {field} must be"):
        BondTerms(**kw)


def test_a_rate_beyond_the_word_is_refused() -> None:
    with pytest.raises(ValueError, match="intervals \\* retail price"):
        BondTerms(intervals=2**40).packed(retail_price_per_mwh=2**30)
