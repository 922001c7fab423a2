// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {EnergyMarket} from "./EnergyMarket.sol";
import {MarketSlots} from "./MarketSlots.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title CdaMatching — continuous double auction (pay-as-bid, price–time priority) for
/// EnergyMarket, as an external library (DELEGATECALL: it works on the market's storage,
/// its events are the market's). Mirrors twin/market/cda.py exactly.
/// @notice Rules: the interval's orders are processed in id (= arrival) order; an incoming
/// order fills against the head of the other side's resting list while prices cross, each
/// fill at the resting order's price; its remainder rests. Resting lists are singly linked
/// and sorted (bids: price desc, id asc; asks: price asc, id asc). The operator supplies,
/// per order, the id of the resting order its remainder goes after (0: head) — the hint is
/// verified in O(1): the predecessor rests in the same list and does not come after the
/// order, and its successor comes strictly after it.
/// @dev A separate library keeps EnergyMarket under the EIP-170 code size limit. Bounded
/// chunks: each call brings the next ids (strictly ascending, each an order of the interval
/// — with the full count this proves the exact book in id order) and a budget of steps
/// (a step = one fill, or the release of one bid left resting at the end); it pauses when
/// the budget is used up, and every id it was given must have been taken by then.
library CdaMatching {
    /// A resting order (one slot): next in its list, unfilled energy, money a bid keeps.
    /// A bid filled while resting keeps its node, popped, with the money it kept: a stalled
    /// clearing's reclaim returns exactly that (MarketSettlement.reclaim).
    struct Node {
        uint64 next;
        uint64 remaining; // 0: not resting
        uint96 kept;
        bool popped;
    }

    /// Resumable state of one interval's CDA (3 slots).
    struct Cursor {
        uint32 taken; // orders taken so far
        uint64 lastId;
        uint64 bidHead;
        uint64 askHead;
        bool active; // the current incoming order (cur) is still matching
        uint64 cur;
        uint64 curRem;
        uint96 curKept;
        uint32 fills;
        uint64 curHint;
        uint64 volume;
        uint32 tradedDevices;
        uint160 notional; // sum of energy * price over fills
    }

    /// The current incoming order, read once per call.
    struct Incoming {
        address owner;
        uint64 device;
        bool isBuy;
        uint256 price;
        uint256 energy;
    }

    /// Per-call values.
    struct Env {
        uint64 interval;
        uint256 tid; // last trade id
        uint256 budget;
    }

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

    error BadOrderList(uint256 side, uint256 position, uint256 order);
    /// ``hint`` is not where order ``order``'s remainder belongs in its resting list.
    error BadHint(uint256 order, uint256 hint);
    error CursorMismatch(uint256 interval, uint256 expected, uint256 actual);

    uint256 internal constant WH_PER_MWH = 1e6;
    uint256 internal constant ANY_SIDE = 2; // BadOrderList side for the id-ordered list

    function _owner(uint256 device) private view returns (address) {
        return MarketSlots.owner(device);
    }

    function _pay(uint256 energyWh, uint256 pricePerMwh) private pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    /// Run one chunk; returns the new last trade id and whether the interval is done (then
    /// the volume-weighted mean price (floored), volume and counts are written to ``st``
    /// and Cleared is emitted; the caller marks it cleared).
    function run(
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(address => EnergyMarket.Account) storage accounts,
        mapping(uint256 => mapping(uint256 => EnergyMarket.Position)) storage positions,
        mapping(uint256 => Node) storage nodes,
        mapping(uint256 => Cursor) storage cursors,
        EnergyMarket.IntervalState storage st,
        uint64 interval,
        uint256 at,
        uint64[] calldata ids,
        uint64[] calldata hints,
        uint256 budget,
        uint256 tradeCount
    ) external returns (uint256, bool) {
        if (hints.length != ids.length) revert BadHint(ids.length, hints.length);
        Cursor memory c = cursors[interval];
        // the position the call follows (orders taken + fills): a call sent behind one that
        // reverted stops here instead of taking its ids after a gap
        if (uint256(c.taken) + c.fills != at) revert CursorMismatch(interval, at, uint256(c.taken) + c.fills);
        Env memory env = Env(interval, tradeCount, budget);
        uint256 total = uint256(st.buyCount) + st.sellCount;
        Incoming memory x;
        if (c.active) x = _load(OrderWords.at(c.cur));
        uint256 k;
        bool paused;
        while (true) {
            if (c.active) {
                if (_step(trades, accounts, positions[interval], nodes, c, x, env)) {
                    paused = true;
                    break;
                }
                continue;
            }
            if (c.taken == total) break;
            if (k == ids.length) {
                paused = true;
                break;
            }
            uint256 id = ids[k];
            OrderWord o = OrderWords.at(id);
            if (o.price() == 0 || o.interval() != interval || (c.taken > 0 && id <= c.lastId)) {
                revert BadOrderList(ANY_SIDE, c.taken, id);
            }
            x = _load(o);
            c.taken += 1;
            c.lastId = uint64(id);
            c.cur = uint64(id);
            c.curRem = uint64(x.energy);
            c.curKept = 0;
            c.curHint = hints[k];
            c.active = true;
            k += 1;
        }
        if (k < ids.length) revert BadOrderList(ANY_SIDE, c.taken, ids[k]);
        bool finished;
        if (!paused) {
            // every order processed: release the bids left resting, best first
            while (c.bidHead != 0) {
                if (env.budget == 0) break;
                env.budget -= 1;
                Node storage n = nodes[c.bidHead];
                _releaseBid(accounts, OrderWords.at(c.bidHead), n.kept);
                c.bidHead = n.next;
            }
            finished = c.bidHead == 0;
        }
        if (finished) {
            uint256 price = c.volume > 0 ? uint256(c.notional) / c.volume : 0;
            st.price = uint96(price);
            st.volumeWh = c.volume;
            st.tradeCount = c.fills;
            st.tradedDevices = c.tradedDevices;
            emit Cleared(interval, price, c.volume, st.firstTrade, c.fills);
            delete cursors[interval];
        } else {
            cursors[interval] = c;
        }
        return (env.tid, finished);
    }

    function _load(OrderWord o) private view returns (Incoming memory x) {
        x.owner = _owner(o.device());
        x.device = o.device();
        x.isBuy = o.isBuy();
        x.price = o.price();
        x.energy = o.energyWh();
    }

    /// One step of the incoming order: a fill, or resting its remainder. True: paused (a
    /// fill is due but the budget is used up).
    function _step(
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(address => EnergyMarket.Account) storage accounts,
        mapping(uint256 => EnergyMarket.Position) storage pos,
        mapping(uint256 => Node) storage nodes,
        Cursor memory c,
        Incoming memory x,
        Env memory env
    ) private returns (bool) {
        uint256 head = x.isBuy ? c.askHead : c.bidHead;
        if (head != 0) {
            uint256 rp = OrderWords.at(head).price();
            if (x.isBuy ? x.price >= rp : x.price <= rp) {
                if (env.budget == 0) return true;
                env.budget -= 1;
                _fill(trades, accounts, pos, nodes, c, x, env, head, rp);
                return false;
            }
        }
        _rest(nodes, c, x, env.interval);
        return false;
    }

    function _fill(
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(address => EnergyMarket.Account) storage accounts,
        mapping(uint256 => EnergyMarket.Position) storage pos,
        mapping(uint256 => Node) storage nodes,
        Cursor memory c,
        Incoming memory x,
        Env memory env,
        uint256 head,
        uint256 rp
    ) private {
        Node storage rn = nodes[head];
        uint64 rrem = rn.remaining;
        uint64 q = c.curRem < rrem ? c.curRem : rrem;
        uint256 pay = _pay(q, rp);
        uint256 tid = env.tid + 1;
        env.tid = tid;
        uint256 rDevice = OrderWords.at(head).device();
        (uint256 buyId, uint256 sellId, uint256 bDev, uint256 sDev) =
            x.isBuy ? (uint256(c.cur), head, uint256(x.device), rDevice) : (head, uint256(c.cur), rDevice, uint256(x.device));
        trades[tid] = EnergyMarket.Trade(uint64(buyId), uint64(sellId), q, q);
        c.tradedDevices += uint32(_addPosition(pos, bDev, int256(uint256(q))) + _addPosition(pos, sDev, -int256(uint256(q))));
        c.fills += 1;
        c.volume += q;
        c.notional += uint160(uint256(q) * rp);
        emit TradeMatched(tid, env.interval, buyId, sellId, bDev, sDev, q, rp);
        c.curRem -= q;
        rrem -= q;
        uint96 rKept = rn.kept;
        if (x.isBuy) c.curKept += uint96(pay);
        else rKept += uint96(pay);
        if (rrem == 0) {
            // the resting order is done: pop it (a bid gets its excess escrow back)
            if (x.isBuy) c.askHead = rn.next;
            else c.bidHead = rn.next;
            if (!x.isBuy) {
                _releaseBid(accounts, OrderWords.at(head), rKept);
                nodes[head] = Node(0, 0, rKept, true);
            } else {
                rn.remaining = 0;
            }
        } else {
            rn.remaining = rrem;
            rn.kept = rKept;
        }
        if (c.curRem == 0) {
            c.active = false;
            if (x.isBuy) _release(accounts, x.owner, _pay(x.energy, x.price) - c.curKept);
        }
    }

    /// Insert the incoming order's remainder after the hinted predecessor (verified).
    function _rest(
        mapping(uint256 => Node) storage nodes,
        Cursor memory c,
        Incoming memory x,
        uint64 interval
    ) private {
        uint256 prev = c.curHint;
        uint256 next;
        if (prev == 0) {
            next = x.isBuy ? c.bidHead : c.askHead;
        } else {
            OrderWord po = OrderWords.at(prev);
            uint256 pp = po.price();
            if (
                nodes[prev].remaining == 0 || po.interval() != interval || po.isBuy() != x.isBuy
                    || (x.isBuy ? pp < x.price : pp > x.price)
            ) revert BadHint(c.cur, prev);
            next = nodes[prev].next;
        }
        if (next != 0) {
            uint256 np = OrderWords.at(next).price();
            if (x.isBuy ? np >= x.price : np <= x.price) revert BadHint(c.cur, prev);
        }
        nodes[c.cur] = Node(uint64(next), c.curRem, c.curKept, false);
        if (prev != 0) nodes[prev].next = c.cur;
        else if (x.isBuy) c.bidHead = c.cur;
        else c.askHead = c.cur;
        c.active = false;
    }

    function _releaseBid(mapping(address => EnergyMarket.Account) storage accounts, OrderWord o, uint256 kept)
        private
    {
        _release(accounts, _owner(o.device()), _pay(o.energyWh(), o.price()) - kept);
    }

    function _release(mapping(address => EnergyMarket.Account) storage accounts, address owner, uint256 amount) private {
        if (amount > 0) {
            EnergyMarket.Account storage a = accounts[owner];
            a.locked -= uint128(amount);
            a.free += uint128(amount);
        }
    }

    function _addPosition(mapping(uint256 => EnergyMarket.Position) storage pos, uint256 device, int256 wh)
        private
        returns (uint256 newDevice)
    {
        EnergyMarket.Position storage p = pos[device];
        p.netWh += int96(wh);
        if (!p.traded) {
            p.traded = true;
            return 1;
        }
        return 0;
    }
}
