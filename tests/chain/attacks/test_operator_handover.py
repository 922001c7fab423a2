"""Issue #19: the operator role moves in two steps, on a real node and in the reference
alike. An outsider can neither name itself nor accept an offer made to someone else; a
mistyped successor never takes the role from the operator (it can be re-named); only the
accepted successor clears from then on, the former operator no longer can."""

from __future__ import annotations

import pytest

from tests.chain.conftest import Ledger
from twin.market import errors as e
from twin.market.types import OPERATOR_ACCOUNT

pytestmark = pytest.mark.chain

ATTACKER, TYPO, NEXT = 4, 5, 6


def test_operator_role_moves_only_in_two_steps(ledger: Ledger) -> None:
    with pytest.raises(e.NotOperator):
        ledger.transfer_operator(ATTACKER, sender=ATTACKER)  # an outsider names itself
    ledger.transfer_operator(TYPO, sender=OPERATOR_ACCOUNT)  # a mistyped successor
    with pytest.raises(e.NotOperator):
        ledger.accept_operator(sender=ATTACKER)  # an outsider takes an offer to someone else
    assert (ledger.operator, ledger.pending_operator) == (OPERATOR_ACCOUNT, TYPO)
    ledger.transfer_operator(NEXT, sender=OPERATOR_ACCOUNT)  # the typo is replaced
    with pytest.raises(e.NotOperator):
        ledger.accept_operator(sender=TYPO)
    ledger.accept_operator(sender=NEXT)
    assert (ledger.operator, ledger.pending_operator) == (NEXT, None)
    with pytest.raises(e.NotOperator):
        ledger.clear(0, sender=OPERATOR_ACCOUNT)  # the former operator lost the role
    assert ledger.clear(0, sender=NEXT).interval == 0
