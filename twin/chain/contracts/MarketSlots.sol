// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CdaMatching} from "./CdaMatching.sol";
import {EnergyMarket} from "./EnergyMarket.sol";

/// @title MarketSlots — EnergyMarket's storage layout (solc storageLayout), the one place the
/// libraries that work on the market's storage by slot number (CdaMatching, MarketSettlement,
/// IslandBooks, ProvisionalSettlement) take it from. A variable added to EnergyMarket above
/// one of these moves it: edit it here (tests/chain/test_provisional_chain.py and
/// test_island_books_chain.py check every constant against live storage).
library MarketSlots {
    uint256 internal constant OPERATOR_SLOT = 0;
    uint256 internal constant ACCOUNTS_SLOT = 2;
    /// ``orderPairs``: two orders a slot (library OrderWords, whose ORDERS_SLOT is this).
    uint256 internal constant ORDERS_SLOT = 4;
    uint256 internal constant TRADES_SLOT = 6;
    uint256 internal constant TRADE_COUNT_SLOT = 7;
    uint256 internal constant INTERVALS_SLOT = 8;
    uint256 internal constant USAGE_SLOT = 9;
    uint256 internal constant POSITIONS_SLOT = 10;
    uint256 internal constant INJECTED_SLOT = 11;
    uint256 internal constant CURSORS_SLOT = 12;
    uint256 internal constant CLEARING_INTERVAL_SLOT = 13;
    uint256 internal constant MECHANISM_SLOT = 14;
    uint256 internal constant CDA_NODES_SLOT = 15;
    uint256 internal constant CDA_CURSORS_SLOT = 16;
    uint256 internal constant SETTLE_CURSORS_SLOT = 17;
    /// ``deviceOwner``: the owner of a device's orders, written at its first order.
    uint256 internal constant DEVICE_OWNERS_SLOT = 18;

    /// EnergyMarket's gate time of ``interval`` read through its getters, for code that runs
    /// in its storage (last chain time at which orders for it are accepted, 0: never).
    function gateTime(uint256 interval) internal view returns (uint256) {
        EnergyMarket m = EnergyMarket(address(this));
        uint256 start = m.marketStart() + interval * m.intervalS();
        uint256 lead = m.gateLeadS();
        return start > lead ? start - lead : 0;
    }

    /// The slot of ``mapping(key => ...)`` at ``slot``.
    function at(uint256 key, uint256 slot) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(key, slot)));
    }

    function load(uint256 slot) internal view returns (uint256 v) {
        assembly ("memory-safe") {
            v := sload(slot)
        }
    }

    /// A device's owner (``deviceOwner[device]``; 0 before its first order).
    function owner(uint256 device) internal view returns (address) {
        return address(uint160(load(at(device, DEVICE_OWNERS_SLOT))));
    }
    /// EnergyMarket's variables, typed, on the market's storage (for libraries it DELEGATECALLs).
    function trades() internal pure returns (mapping(uint256 => EnergyMarket.Trade) storage m) {
        assembly ("memory-safe") {
            m.slot := TRADES_SLOT
        }
    }

    function accounts() internal pure returns (mapping(address => EnergyMarket.Account) storage m) {
        assembly ("memory-safe") {
            m.slot := ACCOUNTS_SLOT
        }
    }

    function intervals() internal pure returns (mapping(uint256 => EnergyMarket.IntervalState) storage m) {
        assembly ("memory-safe") {
            m.slot := INTERVALS_SLOT
        }
    }

    function interval(uint64 k) internal pure returns (EnergyMarket.IntervalState storage st) {
        uint256 slot = at(k, INTERVALS_SLOT);
        assembly ("memory-safe") {
            st.slot := slot
        }
    }

    function positions(uint64 k) internal pure returns (mapping(uint256 => EnergyMarket.Position) storage m) {
        uint256 slot = at(k, POSITIONS_SLOT);
        assembly ("memory-safe") {
            m.slot := slot
        }
    }

    function deviceInfos() internal pure returns (mapping(uint256 => EnergyMarket.DeviceInfo) storage m) {
        assembly ("memory-safe") {
            m.slot := DEVICE_OWNERS_SLOT
        }
    }

    function cursors() internal pure returns (mapping(uint256 => EnergyMarket.Cursor) storage m) {
        assembly ("memory-safe") {
            m.slot := CURSORS_SLOT
        }
    }

    function cdaNodes() internal pure returns (mapping(uint256 => CdaMatching.Node) storage m) {
        assembly ("memory-safe") {
            m.slot := CDA_NODES_SLOT
        }
    }

    function cdaCursors() internal pure returns (mapping(uint256 => CdaMatching.Cursor) storage m) {
        assembly ("memory-safe") {
            m.slot := CDA_CURSORS_SLOT
        }
    }

    function settleCursor(uint64 k) internal pure returns (EnergyMarket.SettleCursor storage c) {
        uint256 slot = at(k, SETTLE_CURSORS_SLOT);
        assembly ("memory-safe") {
            c.slot := slot
        }
    }

    function injected(uint64 k) internal pure returns (mapping(uint256 => uint256) storage m) {
        uint256 slot = at(k, INJECTED_SLOT);
        assembly ("memory-safe") {
            m.slot := slot
        }
    }
}
