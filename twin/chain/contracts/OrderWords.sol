// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// One placed order of EnergyMarket in 128 bits (two orders share a storage slot), from the
/// low bits: device (30), interval (28), side (1: 0 buy, 1 sell), energyWh (32), price (37).
/// A placed order has a price > 0 (<= PRICE_MAX = 1e11 < 2**37); 0 is "no order".
type OrderWord is uint256;

using OrderWords for OrderWord global;

/// @title OrderWords — EnergyMarket's order book storage: order ``id`` is the half
/// ``id & 1`` (low, high) of slot ``orderPairs[id >> 1]`` (EnergyMarket's mapping at
/// MarketSlots.ORDERS_SLOT). The second order of a pair writes an already written slot, which
/// costs ~3k gas instead of a new slot's 20k (the first write of the transaction; ~100 after).
/// The market refuses what does not fit: energy above ENERGY_MAX_WH (BadEnergy), an interval
/// from INTERVAL_LIMIT (IntervalClosed); the registry numbers devices below DEVICE_LIMIT.
library OrderWords {
    uint256 internal constant ORDERS_SLOT = 4; // MarketSlots.ORDERS_SLOT
    uint256 internal constant DEVICE_LIMIT = 1 << 30; // DeviceRegistry refuses larger ids
    uint256 internal constant INTERVAL_LIMIT = 1 << 28;
    uint256 internal constant ENERGY_MAX_WH = (1 << 32) - 1;
    uint256 private constant HALF = (1 << 128) - 1;

    /// The storage slot holding order ``id`` and its half's bit offset (0 or 128).
    function slotOf(uint256 id) internal pure returns (uint256 s, uint256 shift) {
        assembly ("memory-safe") {
            mstore(0, shr(1, id))
            mstore(32, ORDERS_SLOT)
            s := keccak256(0, 64)
            shift := shl(7, and(id, 1))
        }
    }

    /// Order ``id`` (0: none, or freed).
    function at(uint256 id) internal view returns (OrderWord w) {
        (uint256 s, uint256 shift) = slotOf(id);
        assembly ("memory-safe") {
            w := and(shr(shift, sload(s)), HALF)
        }
    }

    /// Write a new order ``id`` into its (empty) half. The caller checked every range.
    function place(uint256 id, uint256 device_, uint256 interval_, uint256 sell, uint256 energyWh_, uint256 price_)
        internal
    {
        (uint256 s, uint256 shift) = slotOf(id);
        uint256 w = device_ | (interval_ << 30) | (sell << 58) | (energyWh_ << 59) | (price_ << 91);
        assembly ("memory-safe") {
            sstore(s, or(sload(s), shl(shift, w)))
        }
    }

    /// Zero order ``id``'s energy (a reclaimed bid), keeping the rest.
    function clearEnergy(uint256 id) internal {
        (uint256 s, uint256 shift) = slotOf(id);
        uint256 mask = ENERGY_MAX_WH << (59 + shift);
        assembly ("memory-safe") {
            sstore(s, and(sload(s), not(mask)))
        }
    }

    /// Free order ``id``'s half (IntervalPruning); the slot is reset once both halves are.
    function free(uint256 id) internal {
        (uint256 s, uint256 shift) = slotOf(id);
        assembly ("memory-safe") {
            let v := sload(s)
            if and(v, shl(shift, HALF)) { sstore(s, and(v, not(shl(shift, HALF)))) }
        }
    }

    function device(OrderWord w) internal pure returns (uint64) {
        return uint64(OrderWord.unwrap(w) & (DEVICE_LIMIT - 1));
    }

    function interval(OrderWord w) internal pure returns (uint64) {
        return uint64((OrderWord.unwrap(w) >> 30) & (INTERVAL_LIMIT - 1));
    }

    /// 0: buy, 1: sell (EnergyMarket.Side).
    function sideNo(OrderWord w) internal pure returns (uint256) {
        return (OrderWord.unwrap(w) >> 58) & 1;
    }

    function isBuy(OrderWord w) internal pure returns (bool) {
        return (OrderWord.unwrap(w) >> 58) & 1 == 0;
    }

    function energyWh(OrderWord w) internal pure returns (uint64) {
        return uint64((OrderWord.unwrap(w) >> 59) & ENERGY_MAX_WH);
    }

    function price(OrderWord w) internal pure returns (uint56) {
        return uint56(OrderWord.unwrap(w) >> 91);
    }
}

/// EnergyMarket's ``orders(id)`` read-out (ProvisionalSettlement.orders, behind its fallback).
interface MarketOrders {
    function orders(uint256 id)
        external
        view
        returns (uint64 device, uint64 interval, uint8 side, uint64 energyWh, uint56 price);
}
