// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {EnergyMarket} from "./EnergyMarket.sol";
import {MarketSlots} from "./MarketSlots.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title IslandBooks — one uniform-price book per electrical island (twin/faults), on
/// EnergyMarket's storage: ProvisionalSettlement.clearBooks (behind the market's fallback)
/// runs ``clear`` here. Mirrors the reference ledger's island clearing
/// (twin/market/reference_settlement.py: each book matched on its own by
/// twin/market/clearing.py, books in order, trade ids consecutive; the interval's price is the
/// price of the book with the largest volume, the first on ties).
/// @dev The operator sends every order of the interval in exactly one book: per book its
/// bids (price desc, id asc) and asks (price asc, id asc), ``nBids[b]`` / ``nAsks[b]`` ids
/// each, concatenated. Each id is checked (order of this interval and side, sorted within its
/// book, in no other book: a transient mark) and the counts must cover the whole book. Each
/// trade's price is stored (``tradePrice``): MarketSettlement pays settlement and curtailment
/// at a trade's own price when one is stored. Slots: EnergyMarket's storage layout (MarketSlots).
library IslandBooks {
    /// trade's storage slot => its island book's price + 1 (0: the interval's price).
    bytes32 internal constant PRICE_NS = keccak256("gridtwin.IslandBooks.price.v1");
    uint256 internal constant WH_PER_MWH = 1e6;
    uint8 internal constant OPEN = 0;
    uint8 internal constant CLEARED = 1;

    event ClearingStarted(uint256 indexed interval, uint256 bids, uint256 asks);
    event EscrowReleased(uint256 indexed orderId, address indexed owner, uint256 amount);
    event TradeMatched(
        uint256 indexed tradeId,
        uint256 indexed interval,
        uint256 buyOrder,
        uint256 sellOrder,
        uint256 buyerDevice,
        uint256 sellerDevice,
        uint256 energyWh,
        uint256 price
    );
    event Cleared(uint256 indexed interval, uint256 price, uint256 volumeWh, uint256 firstTrade, uint256 tradeCount);
    /// One island book cleared: its trades ``firstTrade`` .. + ``trades`` - 1 at ``price``.
    event BookCleared(uint256 indexed interval, uint256 book, uint256 price, uint256 volumeWh,
                      uint256 firstTrade, uint256 trades);

    error BadOrderList(uint256 side, uint256 position, uint256 order);
    error AlreadyCleared(uint256 interval);
    error GateOpen(uint256 interval, uint256 gate, uint256 time);
    error ClearingInProgress(uint256 interval);
    error WrongMechanism(uint256 mechanism);

    /// A stored trade's own price (the slot of ``trades[id]``); ``found`` false: none stored.
    function tradePrice(uint256 tradeSlot) internal view returns (uint256 price, bool found) {
        bytes32 k = keccak256(abi.encode(tradeSlot, PRICE_NS));
        uint256 v;
        assembly ("memory-safe") {
            v := sload(k)
        }
        return (v == 0 ? 0 : v - 1, v != 0);
    }

    struct Walk {
        uint256 tid; // last trade id
        uint256 volume;
        uint256 traded; // devices with a first position this interval
        uint256 price; // interval price: the largest book's
        int256 best; // its volume (-1: none yet)
    }

    function clear(
        uint64 interval,
        uint32[] calldata nBids,
        uint32[] calldata nAsks,
        uint64[] calldata bidIds,
        uint64[] calldata askIds
    ) internal {
        uint256 mech = MarketSlots.load(MarketSlots.MECHANISM_SLOT) & 0xff;
        if (mech != 0) revert WrongMechanism(mech);
        EnergyMarket.IntervalState storage st = MarketSlots.interval(interval);
        if (st.status != OPEN) revert AlreadyCleared(interval);
        uint256 gate = MarketSlots.gateTime(interval);
        if (block.timestamp <= gate) revert GateOpen(interval, gate, block.timestamp);
        uint256 busy = MarketSlots.load(MarketSlots.CLEARING_INTERVAL_SLOT);
        if (busy != 0) revert ClearingInProgress(busy - 1);
        if (bidIds.length != st.buyCount) revert BadOrderList(0, bidIds.length, 0);
        if (askIds.length != st.sellCount) revert BadOrderList(1, askIds.length, 0);
        if (nBids.length != nAsks.length) revert BadOrderList(2, nAsks.length, 0);
        emit ClearingStarted(interval, st.buyCount, st.sellCount);
        Walk memory w = Walk(MarketSlots.load(MarketSlots.TRADE_COUNT_SLOT), 0, 0, 0, -1);
        uint256 first = w.tid + 1;
        uint256 bi;
        uint256 ai;
        for (uint256 b = 0; b < nBids.length; ++b) {
            uint256 be = bi + nBids[b];
            uint256 ae = ai + nAsks[b];
            if (be > bidIds.length) revert BadOrderList(0, bidIds.length, 0);
            if (ae > askIds.length) revert BadOrderList(1, askIds.length, 0);
            _verify(interval, 0, bidIds, bi, be);
            _verify(interval, 1, askIds, ai, ae);
            _book(interval, b, bidIds[bi:be], askIds[ai:ae], w);
            bi = be;
            ai = ae;
        }
        if (bi != bidIds.length) revert BadOrderList(0, bi, 0);
        if (ai != askIds.length) revert BadOrderList(1, ai, 0);
        uint256 fills = w.tid + 1 - first;
        st.status = CLEARED;
        st.price = uint96(w.price);
        st.volumeWh = uint64(w.volume);
        st.firstTrade = uint64(first);
        st.tradeCount = uint32(fills);
        st.tradedDevices = uint32(w.traded);
        uint256 countSlot = MarketSlots.TRADE_COUNT_SLOT;
        assembly ("memory-safe") {
            sstore(countSlot, mload(w))
        }
        emit Cleared(interval, w.price, w.volume, first, fills);
    }

    /// Each id an order of ``interval`` and ``side`` (0 buy, 1 sell), strictly after the
    /// previous one in the side's sort order, and in no earlier book (a transient mark).
    function _verify(uint64 interval, uint256 side, uint64[] calldata ids, uint256 from, uint256 to) private {
        uint256 p0;
        uint256 id0;
        for (uint256 k = from; k < to; ++k) {
            uint256 id = ids[k];
            OrderWord o = OrderWords.at(id);
            if (o.price() == 0 || o.interval() != interval || o.sideNo() != side) {
                revert BadOrderList(side, k, id);
            }
            uint256 p = o.price();
            if (k > from) {
                bool better = side == 0 ? p < p0 : p > p0;
                if (!(better || (p == p0 && id > id0))) revert BadOrderList(side, k, id);
            }
            bytes32 mark = keccak256(abi.encode(id, PRICE_NS));
            uint256 seen;
            assembly ("memory-safe") {
                seen := tload(mark)
                tstore(mark, 1)
            }
            if (seen != 0) revert BadOrderList(side, k, id);
            p0 = p;
            id0 = id;
        }
    }

    /// Match one book (the walk of twin/market/clearing.py), then price, announce and release.
    function _book(uint64 interval, uint256 book, uint64[] calldata bids, uint64[] calldata asks, Walk memory w)
        private
    {
        mapping(uint256 => EnergyMarket.Trade) storage trades = MarketSlots.trades();
        uint256 start = w.tid + 1;
        uint256 i;
        uint256 j;
        uint256 remB;
        uint256 remA;
        uint256 bp;
        uint256 ap;
        uint256 mb;
        uint256 ma;
        uint256 volume;
        OrderWord bo;
        OrderWord ao;
        while (true) {
            if (remB == 0) {
                if (i == bids.length) break;
                bo = OrderWords.at(bids[i++]);
                remB = bo.energyWh();
                bp = bo.price();
            }
            if (remA == 0) {
                if (j == asks.length) break;
                ao = OrderWords.at(asks[j++]);
                remA = ao.energyWh();
                ap = ao.price();
            }
            if (bp < ap) break;
            uint256 q = remB < remA ? remB : remA;
            w.tid += 1;
            trades[w.tid] = EnergyMarket.Trade(bids[i - 1], asks[j - 1], uint64(q), uint64(q));
            w.traded += _addPosition(interval, bo.device(), int256(q)) + _addPosition(interval, ao.device(), -int256(q));
            volume += q;
            mb = bp;
            ma = ap;
            remB -= q;
            remA -= q;
        }
        uint256 price = w.tid >= start ? (mb + ma) / 2 : 0;
        uint256 kept;
        uint256 released; // bids released so far (a prefix of ``bids``)
        for (uint256 t = start; t <= w.tid; ++t) {
            EnergyMarket.Trade storage tr = trades[t];
            uint256 buyId = tr.buyOrder;
            kept += (uint256(tr.clearedWh) * price) / WH_PER_MWH;
            uint256 slot;
            assembly ("memory-safe") {
                slot := tr.slot
            }
            bytes32 k = keccak256(abi.encode(slot, PRICE_NS));
            assembly ("memory-safe") {
                sstore(k, add(price, 1))
            }
            emit TradeMatched(t, interval, buyId, tr.sellOrder, OrderWords.at(buyId).device(),
                              OrderWords.at(tr.sellOrder).device(), tr.clearedWh, price);
            if (t == w.tid || trades[t + 1].buyOrder != buyId) {
                _release(buyId, kept);
                kept = 0;
                released += 1;
            }
        }
        for (; released < bids.length; ++released) _release(bids[released], 0);
        if (int256(volume) > w.best) {
            w.best = int256(volume);
            w.price = price;
        }
        w.volume += volume;
        emit BookCleared(interval, book, price, volume, start, w.tid + 1 - start);
    }

    function _release(uint256 id, uint256 kept) private {
        OrderWord o = OrderWords.at(id);
        uint256 release = (uint256(o.energyWh()) * o.price()) / WH_PER_MWH - kept;
        if (release > 0) {
            address owner = MarketSlots.owner(o.device());
            EnergyMarket.Account storage a = MarketSlots.accounts()[owner];
            a.locked -= uint128(release);
            a.free += uint128(release);
            emit EscrowReleased(id, owner, release);
        }
    }

    function _addPosition(uint64 interval, uint256 device, int256 wh) private returns (uint256) {
        EnergyMarket.Position storage p = MarketSlots.positions(interval)[device];
        p.netWh += int96(wh);
        if (!p.traded) {
            p.traded = true;
            return 1;
        }
        return 0;
    }
}
