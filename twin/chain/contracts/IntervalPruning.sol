// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {MarketSlots} from "./MarketSlots.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title IntervalPruning — frees a settled interval's per-interval storage on EnergyMarket
/// (ProvisionalSettlement.pruneInterval, behind the market's fallback, runs ``prune`` here).
/// @notice Once an interval is settled its orders, usage (energy used, nonces, envelopes),
/// positions, metered injections, trades (and their island prices) and CDA nodes are read by
/// nothing on chain but GreenCertificate.issue (which the operator runs first) and a true-up
/// (which keeps its own copy of the traded energy, ProvisionalSettlement.Entry); the market's
/// events (OrdersPlaced, TradeMatched, Curtailed, Settled, ...) are their durable record. The
/// interval's own first slot (``intervals[k]``: status, price, volume, order counts) stays, so
/// it can never be reopened, cleared or settled again, and a true-up still finds it settled;
/// its trade range (the second slot) goes with its trades.
/// Without pruning the market grows by every order, trade and position ever placed, and
/// Anvil's work per block grows with the number of storage slots (issue #24).
/// A void interval (never cleared; owners reclaim their escrow) is freed the same way once
/// every buy order's escrow is reclaimed: a stopped CDA's reclaim reads its sells' prices, its
/// trades and its trade range, so until then nothing of it goes. Its trades stay (a uniform
/// walk's trade ids were reused, a CDA's are void), as does its trade range.
/// @dev The operator names the interval's order ids and devices (from the OrdersPlaced logs of
/// the interval); each order must be of the interval (else BadOrderList(2, k, id)). Trades
/// ``tradeFrom`` .. ``tradeTo`` - 1 must lie within the interval's trades. A slot already zero
/// is only read (a second call, a device without a position). Any cut into several calls
/// frees the same slots. A void interval goes in one call naming all its orders in ascending
/// id order (else BadOrderList(3, k, id)), every buy reclaimed (else BadOrderList(0, k, id)),
/// and no trades.
library IntervalPruning {
    uint8 internal constant SETTLED = 2;
    uint8 internal constant VOID = 5;
    bytes32 internal constant ISLAND_PRICE_NS = keccak256("gridtwin.IslandBooks.price.v1");

    event IntervalPruned(uint256 indexed interval, uint256 orders, uint256 devices, uint256 trades);

    error NotSettled(uint256 interval);
    error BadOrderList(uint256 side, uint256 position, uint256 order);
    error UnknownTrade(uint256 trade);
    error CursorMismatch(uint256 interval, uint256 expected, uint256 actual);

    function _free(uint256 slot) private {
        assembly ("memory-safe") {
            if sload(slot) { sstore(slot, 0) }
        }
    }

    function prune(
        uint64 interval,
        uint64[] calldata orderIds,
        uint64[] calldata devices,
        uint256 tradeFrom,
        uint256 tradeTo
    ) internal {
        uint256 ist = MarketSlots.at(interval, MarketSlots.INTERVALS_SLOT);
        uint256 head = MarketSlots.load(ist); // status | price | volume | buyCount | sellCount
        bool isVoid = head & 0xff == VOID;
        if (head & 0xff != SETTLED && !isVoid) revert NotSettled(interval);
        if (isVoid) {
            if (tradeFrom < tradeTo) revert UnknownTrade(tradeFrom);
            _checkVoidOrders(orderIds, ((head >> 168) & 0xffffffff) + ((head >> 200) & 0xffffffff));
        }
        uint256 range = MarketSlots.load(ist + 1); // firstTrade (64) | tradeCount (32) | tradedDevices
        uint256 first = range & 0xffffffffffffffff;
        uint256 end = first + ((range >> 64) & 0xffffffff);
        if (tradeFrom > tradeTo || (tradeFrom < tradeTo && tradeFrom < first)) revert UnknownTrade(tradeFrom);
        if (tradeTo > end && tradeFrom < tradeTo) revert UnknownTrade(tradeTo - 1);
        // parts free trades in order: one whose predecessor reverted (trade tradeFrom - 1 still
        // stored) stops, else the last part would free the range and strand the earlier trades
        if (tradeFrom > first && tradeFrom < tradeTo
            && MarketSlots.load(MarketSlots.at(tradeFrom - 1, MarketSlots.TRADES_SLOT)) != 0) {
            revert CursorMismatch(interval, tradeFrom, tradeFrom - 1);
        }
        bool cda = MarketSlots.load(MarketSlots.MECHANISM_SLOT) & 0xff == 1;
        for (uint256 k = 0; k < orderIds.length; ++k) {
            uint256 id = orderIds[k];
            OrderWord o = OrderWords.at(id); // its half of a two-order slot
            if (OrderWord.unwrap(o) != 0 && o.interval() != interval) revert BadOrderList(2, k, id);
            OrderWords.free(id);
            if (cda) _free(MarketSlots.at(id, MarketSlots.CDA_NODES_SLOT));
        }
        uint256 usage = MarketSlots.at(interval, MarketSlots.USAGE_SLOT);
        uint256 positions = MarketSlots.at(interval, MarketSlots.POSITIONS_SLOT);
        uint256 injected = MarketSlots.at(interval, MarketSlots.INJECTED_SLOT);
        for (uint256 k = 0; k < devices.length; ++k) {
            uint256 d = devices[k];
            _free(MarketSlots.at(d, usage));
            uint256 p = MarketSlots.at(d, positions);
            _free(p);
            _free(p + 1);
            _free(MarketSlots.at(d, injected));
        }
        for (uint256 t = tradeFrom; t < tradeTo; ++t) {
            uint256 slot = MarketSlots.at(t, MarketSlots.TRADES_SLOT);
            _free(slot);
            if (!cda) _free(uint256(keccak256(abi.encode(slot, ISLAND_PRICE_NS))));
        }
        // the call that reaches the interval's last trade also frees its trade range (firstTrade,
        // tradeCount, tradedDevices): one slot an interval stays (status, price, volume, counts)
        if (tradeTo == end && !isVoid) _free(ist + 1);
        emit IntervalPruned(interval, orderIds.length, devices.length, tradeTo - tradeFrom);
    }

    /// A void interval's orders: all ``count`` of them, ascending, every buy reclaimed (its
    /// energy zeroed by EnergyMarket.reclaim) or already freed.
    function _checkVoidOrders(uint64[] calldata orderIds, uint256 count) private view {
        if (orderIds.length != count) revert BadOrderList(3, orderIds.length, count);
        for (uint256 k = 0; k < orderIds.length; ++k) {
            uint256 id = orderIds[k];
            if (k > 0 && id <= orderIds[k - 1]) revert BadOrderList(3, k, id);
            OrderWord o = OrderWords.at(id);
            if (o.isBuy() && o.energyWh() != 0) {
                revert BadOrderList(0, k, id);
            }
        }
    }
}
