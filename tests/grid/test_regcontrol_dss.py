"""The IEEE 13-bus deck's three regulators as OpenDSS holds them (DSS-Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.grid.regcontrol_dss import read_regcontrols

DECK = Path(__file__).parent / "data" / "opendss" / "13Bus" / "IEEE13Nodeckt.dss"


def test_ieee13_regcontrols() -> None:
    regs = read_regcontrols(DECK)
    assert [r.name for r in regs] == ["reg1", "reg2", "reg3"]
    for r in regs:  # the deck: vreg=122 band=2 ptratio=20 ctprim=700 R=3 X=9, 32 taps 0.9..1.1
        assert (r.vreg_v, r.band_v, r.pt_ratio, r.ct_primary_a, r.r_v, r.x_v) == (122, 2, 20, 700, 3, 9)
        assert (r.n_taps, r.min_tap_pu, r.max_tap_pu, r.winding_kv) == (32, 0.9, 1.1, 2.4)
        assert r.v_set_pu() == pytest.approx(122 * 20 / 2400)
        assert r.band_pu() == pytest.approx(40 / 2400) and r.tap_step_pu() == pytest.approx(0.00625)
        assert r.band_pu() > r.tap_step_pu()  # a band narrower than one step would hunt
    assert [r.tap for r in regs] == [9, 6, 9]  # the deck's solved state (OpenDSS's own control)
