"""The meter-data state a resume checks (twin/faults/data_state.py): two runs of the same
head-end and desk have the same digest at every step, any difference in the open estimates,
the pending late readings or the random stream is caught at the checkpoint's step."""

from __future__ import annotations

import pytest

from twin.faults.comm_spec import DataFaultsSpec
from twin.faults.data_state import DataFaultsState, DataStateMismatch
from twin.faults.meter_data import MeterDataFaults
from twin.market.provisional import MeterDesk


def _path(steps: int) -> tuple[DataFaultsState, list[str]]:
    state = DataFaultsState(MeterDesk())
    state.meters = MeterDataFaults(DataFaultsSpec(loss_rate=0.3, delay_rate=0.2, delay_s=1200,
                                                  duplicate_rate=0.2), seed=7, interval_s=900)
    digests = []
    for k in range(steps):
        digests.append(state.digest())
        state.before_step(k)
        msg, _ = state.meters.deliver(k, {d: 100 * d + k for d in range(6)})
        fresh = state.desk.take(interval=k, readings=msg["metered_wh"])
        state.desk.settled_on(interval=k, estimates={d: 0 for d in msg["expected"] if d not in fresh})
        state.desk.late(msg["late"])
    return state, digests


def test_the_replayed_state_meets_the_checkpoint_and_a_changed_one_does_not() -> None:
    _, digests = _path(8)
    assert len(set(digests)) == 8  # the state moves every step
    again, _ = _path(0)
    again.expect(5, digests[5], where="run")
    for k in range(6):  # the replay reaches step 5 in the same state: no error
        again.before_step(k)
        msg, _ = again.meters.deliver(k, {d: 100 * d + k for d in range(6)})
        fresh = again.desk.take(interval=k, readings=msg["metered_wh"])
        again.desk.settled_on(interval=k, estimates={d: 0 for d in msg["expected"] if d not in fresh})
        again.desk.late(msg["late"])
    other, _ = _path(5)
    other.desk.open_estimates[(0, 99)] = 1  # an estimate the checkpoint did not have
    other.expect(5, digests[5], where="run")
    with pytest.raises(DataStateMismatch, match="market step 5"):
        other.before_step(5)
    with pytest.raises(DataStateMismatch, match="open provisional settlements"):
        other.check_open_estimates({k: v for k, v in other.desk.open_estimates.items() if k != (0, 99)},
                                   step=5)
    del other.desk.open_estimates[(0, 99)]
    assert other.desk.open_estimates  # estimates awaiting a true-up at step 5
    other.check_open_estimates(dict(other.desk.open_estimates), step=5)
