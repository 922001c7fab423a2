// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {DeviceRegistry} from "./DeviceRegistry.sol";
import {CdaMatching} from "./CdaMatching.sol";
import {IslandBooks} from "./IslandBooks.sol";
import {EnergyMarket} from "./EnergyMarket.sol";
import {MarketSlots} from "./MarketSlots.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title MarketSettlement — EnergyMarket's DSO curtailment (curtailBatch) and settlement on
/// metered energy, as an external library (DELEGATECALL: it works on the market's storage, its
/// events are the market's). Mirrors twin/market/reference_settlement.py exactly.
/// Curtailment at the trade price: the DSO pays a curtailed seller the curtailed energy at the
/// trade's price; a buyer pays at most the trade's price for curtailed energy it consumes
/// anyway (pro rata of its curtailed value, retail beyond); a seller is paid nothing for
/// curtailed energy it injects anyway. The DSO's balance never rises from a curtailment.
/// @dev A separate library keeps EnergyMarket under the EIP-170 code size limit. Trades are
/// paid first (trade id order), then each device's imbalance against the DSO at the fixed
/// tariffs; a payer short of free balance pays what it has and the remainder becomes debt.
/// Every credit to an indebted account (a seller's trade money, a feed-in payment) pays its
/// debt to the DSO first (DebtPaid).
library MarketSettlement {
    uint8 internal constant OPEN = 0;
    uint8 internal constant SETTLED = 2;
    uint8 internal constant CLEARING = 3;
    uint8 internal constant SETTLING = 4;
    uint8 internal constant VOID = 5;
    uint256 internal constant WH_PER_MWH = 1e6;
    uint256 internal constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    bytes32 internal constant READING_TYPEHASH = keccak256("MeterReading(uint64 device,uint64 interval,int256 meteredWh)");

    /// The market's storage the settlement works on, and its parameters.
    struct Ctx {
        DeviceRegistry registry;
        address dso;
        uint256 retail;
        uint256 feedIn;
        uint256 intervalS;
        bool cda;
        bytes32 domain;
    }

    event Settled(
        uint256 indexed interval,
        uint256 indexed device,
        address owner,
        int256 tradedWh,
        int256 meteredWh,
        int256 imbalanceWh,
        int256 tradeAmount,
        int256 imbalanceAmount,
        uint256 debt
    );
    event IntervalSettled(uint256 indexed interval, uint256 devices);
    event SettlementStarted(uint256 indexed interval, uint256 trades);
    event DebtPaid(address indexed account, uint256 amount);
    event Curtailed(uint256 indexed tradeId, uint256 indexed interval, uint256 oldWh, uint256 newWh, uint256 released);

    error NotCleared(uint256 interval);
    error AlreadySettled(uint256 interval);
    error UnknownDevice(uint256 device);
    error BadReadings(uint256 position);
    error BadSignature(uint256 device);
    error MeterOutOfRange(uint256 device, uint256 cap, int256 metered);
    error TradesUnpaid(uint256 interval, uint256 paid, uint256 total);
    error MissingMeterReading(uint256 device, uint256 interval);
    error UnknownTrade(uint256 trade);
    error BadEnergy(uint256 device, int256 energy);
    error BadAmount(uint256 amount);
    error CurtailIncrease(uint256 trade, uint256 current, int256 requested);
    error SettlementInProgress(uint256 interval);
    error CursorMismatch(uint256 interval, uint256 expected, uint256 actual);

    function _owner(uint256 device) private view returns (address) {
        return MarketSlots.owner(device);
    }

    function _payment(uint256 energyWh, uint256 price) private pure returns (uint256) {
        return (energyWh * price) / WH_PER_MWH;
    }

    function checkStatus(uint64 interval, uint8 status) internal pure {
        if (status == OPEN || status == CLEARING || status == VOID) revert NotCleared(interval);
        if (status == SETTLED) revert AlreadySettled(interval);
    }

    /// Signed readings: each recovers to its device's key and lies within its capacity.
    function checkSigned(
        Ctx memory x,
        uint64 interval,
        uint8 status,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        EnergyMarket.Sig[] calldata sigs
    ) external view {
        checkStatus(interval, status);
        if (devices.length != meteredWh.length || devices.length != sigs.length) revert BadReadings(devices.length);
        for (uint256 k = 0; k < devices.length; ++k) {
            if (k > 0 && devices[k] <= devices[k - 1]) revert BadReadings(k);
            (DeviceRegistry.Device memory d, address signer) = x.registry.getWithSigner(devices[k]);
            if (d.status == 0) revert UnknownDevice(devices[k]);
            bytes32 structHash = keccak256(abi.encode(READING_TYPEHASH, devices[k], interval, meteredWh[k]));
            if (signer == address(0) || _recover(x.domain, structHash, sigs[k]) != signer) {
                revert BadSignature(devices[k]);
            }
            uint256 cap = (uint256(d.capacityW) * x.intervalS) / 3600;
            int256 m = meteredWh[k];
            if (m > int256(cap) || m < -int256(cap)) revert MeterOutOfRange(devices[k], cap, m); // cap < 2**80
        }
    }

    function _recover(bytes32 domain, bytes32 structHash, EnergyMarket.Sig calldata sig) private pure returns (address) {
        if (uint256(sig.s) > HALF_N || (sig.v != 27 && sig.v != 28)) return address(0);
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", domain, structHash));
        return ecrecover(digest, sig.v, sig.r, sig.s);
    }

    /// A trade's price: its island book's price when one is stored (IslandBooks), the
    /// interval's uniform price, or (CDA) the resting order's price —
    /// the resting order is the one that arrived first, i.e. the lower order id.
    function _price(
        EnergyMarket.Trade storage t,
        uint256 intervalPrice,
        bool cda
    ) private view returns (uint256) {
        if (!cda) {
            uint256 slot;
            assembly ("memory-safe") {
                slot := t.slot
            }
            (uint256 own, bool found) = IslandBooks.tradePrice(slot); // an island book's trade
            return found ? own : intervalPrice;
        }
        return OrderWords.at(t.buyOrder < t.sellOrder ? t.buyOrder : t.sellOrder).price();
    }

    /// DSO curtailments (EnergyMarket.curtailBatch): each trade lowered, in the given order;
    /// the buyer's escrow for the curtailed energy is released now, and both devices'
    /// positions and curtailment records (settled by _settleDevice and the trade payments)
    /// move by the curtailed energy. Any failing entry reverts the whole batch.
    function curtail(
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(uint256 => EnergyMarket.IntervalState) storage intervals,
        mapping(uint256 => mapping(uint256 => EnergyMarket.Position)) storage positions,
        mapping(address => EnergyMarket.Account) storage accounts,
        uint256 tradeCount,
        bool cda,
        uint256[] calldata tradeIds,
        int256[] calldata energyWh
    ) external {
        if (tradeIds.length != energyWh.length) revert BadAmount(energyWh.length);
        for (uint256 k = 0; k < tradeIds.length; ++k) {
            uint256 tradeId = tradeIds[k];
            int256 e = energyWh[k];
            if (tradeId == 0 || tradeId > tradeCount) revert UnknownTrade(tradeId);
            EnergyMarket.Trade storage t = trades[tradeId];
            OrderWord b = OrderWords.at(t.buyOrder);
            uint64 interval = b.interval();
            EnergyMarket.IntervalState storage st = intervals[interval];
            if (st.status == SETTLED) revert AlreadySettled(interval);
            if (st.status == CLEARING) revert NotCleared(interval);
            if (st.status == SETTLING) revert SettlementInProgress(interval);
            if (e < 0) revert BadEnergy(b.device(), e);
            uint256 old = t.energyWh;
            if (uint256(e) > old) revert CurtailIncrease(tradeId, old, e);
            uint256 price = _price(t, st.price, cda);
            uint256 release = _payment(old, price) - _payment(uint256(e), price);
            EnergyMarket.Account storage a = accounts[_owner(b.device())];
            a.locked -= uint128(release);
            a.free += uint128(release);
            uint64 delta = uint64(old - uint256(e));
            EnergyMarket.Position storage pb = positions[interval][b.device()];
            pb.netWh -= int96(int64(delta));
            pb.curtailedWh += delta;
            pb.curtailedMoney += uint96(release);
            EnergyMarket.Position storage ps = positions[interval][OrderWords.at(t.sellOrder).device()];
            ps.netWh += int96(int64(delta));
            ps.curtailedWh += delta;
            ps.curtailedSell = true;
            t.energyWh = uint64(uint256(e));
            emit Curtailed(tradeId, interval, old, uint256(e), release);
        }
    }

    /// The dry run of a whole settlement (EnergyMarket.checkSettlement).
    function checkSettlement(
        Ctx memory x,
        EnergyMarket.IntervalState storage st,
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(uint256 => EnergyMarket.Position) storage positions,
        uint64 interval,
        uint64[] calldata devices,
        int256[] calldata meteredWh
    ) external view {
        checkStatus(interval, st.status);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        uint256 covered;
        for (uint256 k = 0; k < devices.length; ++k) {
            if (k > 0 && devices[k] <= devices[k - 1]) revert BadReadings(k);
            if (x.registry.get(devices[k]).status == 0) revert UnknownDevice(devices[k]);
            if (positions[devices[k]].traded) covered += 1;
        }
        if (covered != st.tradedDevices) {
            uint256 best = type(uint256).max;
            uint256 end = uint256(st.firstTrade) + st.tradeCount;
            for (uint256 tid = st.firstTrade; tid < end; ++tid) {
                EnergyMarket.Trade storage t = trades[tid];
                uint256 bd = OrderWords.at(t.buyOrder).device();
                uint256 sd = OrderWords.at(t.sellOrder).device();
                if (bd < best && !_contains(devices, bd)) best = bd;
                if (sd < best && !_contains(devices, sd)) best = sd;
            }
            revert MissingMeterReading(best, interval);
        }
    }

    function _contains(uint64[] calldata sorted, uint256 x) private pure returns (bool) {
        uint256 lo = 0;
        uint256 hi = sorted.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (sorted[mid] == x) return true;
            if (sorted[mid] < x) lo = mid + 1;
            else hi = mid;
        }
        return false;
    }

    /// One settlement chunk (EnergyMarket.settleChunk documents the rules).
    function settleChunk(
        Ctx memory x,
        EnergyMarket.IntervalState storage st,
        EnergyMarket.SettleCursor storage cursor,
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(address => EnergyMarket.Account) storage accounts,
        mapping(uint256 => EnergyMarket.Position) storage positions,
        mapping(uint256 => uint256) storage injectedWh,
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        bool last
    ) external returns (bool) {
        checkStatus(interval, st.status);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        EnergyMarket.SettleCursor memory c = cursor;
        uint256 pos = uint256(c.paid) + c.readings; // a chunk after one that reverted: stop
        if (pos != at) revert CursorMismatch(interval, at, pos);
        uint256 first = st.firstTrade;
        uint256 n = st.tradeCount;
        if (st.status != SETTLING) {
            st.status = SETTLING;
            emit SettlementStarted(interval, n);
        }
        if (c.paid < n) {
            uint256 price = st.price;
            uint256 end = first + n;
            uint256 t = first + c.paid;
            uint256 stop = maxTrades >= end - t ? end : t + maxTrades;
            for (; t < stop; ++t) {
                EnergyMarket.Trade storage tr = trades[t];
                uint256 bDev = OrderWords.at(tr.buyOrder).device();
                uint256 sDev = OrderWords.at(tr.sellOrder).device();
                uint256 p = _price(tr, price, x.cda);
                uint256 amount = _payment(tr.energyWh, p);
                accounts[_owner(bDev)].locked -= uint128(amount);
                _credit(accounts, x.dso, _owner(sDev), amount);
                // curtailed energy: the DSO pays the seller the trade's price for it
                uint256 comp = _payment(tr.clearedWh, p) - amount;
                if (comp > 0) pay(accounts, x.dso, _owner(sDev), false, comp);
                positions[bDev].money -= int96(int256(amount));
                positions[sDev].money += int96(int256(amount + comp));
            }
            c.paid = uint32(stop - first);
        }
        if ((devices.length > 0 || last) && c.paid != n) revert TradesUnpaid(interval, c.paid, n);
        for (uint256 k = 0; k < devices.length; ++k) {
            uint64 dev = devices[k];
            if (k > 0 ? dev <= devices[k - 1] : (c.anyReading && dev <= c.lastDevice)) revert BadReadings(k);
            DeviceRegistry.Device memory d = x.registry.get(dev);
            if (d.status == 0) revert UnknownDevice(dev);
            EnergyMarket.Position storage p = positions[dev];
            if (p.traded) {
                c.covered += 1;
                p.read = true;
            }
            _settleDevice(x, accounts, p, injectedWh, interval, dev, d.owner, meteredWh[k]);
        }
        if (devices.length > 0) {
            c.anyReading = true;
            c.lastDevice = devices[devices.length - 1];
            c.readings += uint32(devices.length);
        }
        if (!last) {
            cursor.paid = c.paid;
            cursor.covered = c.covered;
            cursor.readings = c.readings;
            cursor.anyReading = c.anyReading;
            cursor.lastDevice = c.lastDevice;
            return false;
        }
        if (c.covered != st.tradedDevices) _revertUnread(trades, positions, interval, first, first + n);
        delete cursor.paid;
        delete cursor.covered;
        delete cursor.readings;
        delete cursor.anyReading;
        delete cursor.lastDevice;
        st.status = SETTLED;
        emit IntervalSettled(interval, c.readings);
        return true;
    }

    /// MissingMeterReading for the lowest traded device without a settled reading.
    function _revertUnread(
        mapping(uint256 => EnergyMarket.Trade) storage trades,
        mapping(uint256 => EnergyMarket.Position) storage positions,
        uint64 interval,
        uint256 first,
        uint256 end
    ) private view {
        uint256 best = type(uint256).max;
        for (uint256 tid = first; tid < end; ++tid) {
            EnergyMarket.Trade storage t = trades[tid];
            uint256 bd = OrderWords.at(t.buyOrder).device();
            uint256 sd = OrderWords.at(t.sellOrder).device();
            if (bd < best && !positions[bd].read) best = bd;
            if (sd < best && !positions[sd].read) best = sd;
        }
        revert MissingMeterReading(best, interval);
    }

    function _settleDevice(
        Ctx memory x,
        mapping(address => EnergyMarket.Account) storage accounts,
        EnergyMarket.Position storage p,
        mapping(uint256 => uint256) storage injectedWh,
        uint64 interval,
        uint256 device,
        address owner,
        int256 metered
    ) private {
        int256 netWh = p.netWh;
        int256 imbalance = metered - netWh;
        uint256 cw = p.curtailedWh;
        uint256 due;
        if (imbalance > 0) {
            due = _payment(uint256(imbalance), x.retail);
            if (cw > 0 && !p.curtailedSell) { // curtailed energy consumed anyway: at most its trade price
                uint256 k = uint256(imbalance) < cw ? uint256(imbalance) : cw;
                due = (uint256(p.curtailedMoney) * k) / cw + _payment(uint256(imbalance) - k, x.retail);
            }
        } else if (imbalance < 0) {
            uint256 inj = uint256(-imbalance); // curtailed energy injected anyway earns nothing
            if (p.curtailedSell) inj = inj > cw ? inj - cw : 0;
            due = _payment(inj, x.feedIn);
        }
        // the owner pays the DSO for an import, the DSO pays the owner for an export
        (int256 moved, uint256 debt) = pay(accounts, x.dso, owner, imbalance > 0, due);
        topUp(accounts, owner); // a drawn bond refills from what the owner has left
        if (metered < 0 && netWh < 0) injectedWh[device] = uint256(-metered); // a seller's metered delivery (GreenCertificate)
        emit Settled(interval, device, owner, netWh, metered, imbalance, p.money, moved, debt);
    }

    /// The one payment between an owner and the DSO (settlement imbalance, true-up): if
    /// ``ownerPays`` the owner pays ``due`` to the DSO, else the DSO pays the owner. The payer
    /// pays from its free balance, then its bond, the rest becomes its debt (draw); the payee
    /// is credited (_credit: an indebted payee's debt is paid first). Returns what moved,
    /// signed for the owner (< 0: paid by it), and what became debt.
    function pay(
        mapping(address => EnergyMarket.Account) storage accounts,
        address dso,
        address owner,
        bool ownerPays,
        uint256 due
    ) internal returns (int256 moved, uint256 unpaid) {
        if (due == 0) return (0, 0);
        (address payer, address payee) = ownerPays ? (owner, dso) : (dso, owner);
        uint256 paid;
        (paid, unpaid) = draw(accounts[payer], payer, due);
        _credit(accounts, dso, payee, paid);
        moved = ownerPays ? -int256(paid) : int256(paid);
    }

    /// A device's imbalance bond under the market's ``terms`` (EnergyMarket.bondTerms): its
    /// per-interval energy cap ``capWh`` (capacityW * intervalS / 3600) at the rate in bits
    /// 128..191 (intervals times the retail price per MWh, so the same as ``intervals`` caps
    /// at retail), and at least the floor (bits 0..127). twin.market.bond.BondTerms.bond_of.
    function bondOf(uint256 terms, uint256 capWh) internal pure returns (uint256 bond) {
        bond = _payment(capWh, uint64(terms >> 128));
        uint256 floor = uint128(terms);
        if (bond < floor) bond = floor;
    }

    /// Imbalance-bond records, at a namespaced slot no EnergyMarket variable can reach: what
    /// each account's bond lacks of bondOf per bonded device (drawn, not yet topped
    /// up) and their sum; every interval below ``finalBelow`` is settled, void, or empty with
    /// its gate passed (releaseBond); open estimates per device (ProvisionalSettlement: a
    /// true-up may still draw on the bond).
    struct BondStore {
        uint256 shortTotal;
        uint64 finalBelow;
        mapping(address => uint256) short;
        mapping(uint256 => uint256) openEstimates;
    }

    bytes32 internal constant BOND_SLOT = keccak256("gridtwin.MarketSettlement.bond.v1");

    function bondStore() internal pure returns (BondStore storage b) {
        bytes32 slot = BOND_SLOT;
        assembly ("memory-safe") {
            b.slot := slot
        }
    }

    /// A payer pays ``due`` from its free balance, then from its imbalance bond (what it takes
    /// is the bond's shortfall, topped up later: topUp); the rest becomes debt. Returns what
    /// was paid and what is owed.
    function draw(EnergyMarket.Account storage a, address payer, uint256 due)
        internal
        returns (uint256 paid, uint256 unpaid)
    {
        uint256 free = a.free;
        uint256 bond = a.bond;
        uint256 fromFree = free < due ? free : due;
        uint256 rest = due - fromFree;
        uint256 fromBond = bond < rest ? bond : rest;
        if (fromFree > 0) a.free = uint128(free - fromFree);
        if (fromBond > 0) {
            a.bond = uint128(bond - fromBond);
            BondStore storage b = bondStore();
            b.short[payer] += fromBond;
            b.shortTotal += fromBond;
        }
        paid = fromFree + fromBond;
        unpaid = due - paid;
        if (unpaid > 0) a.debt += uint128(unpaid);
    }

    event BondToppedUp(address indexed owner, uint256 amount);

    /// A drawn bond is topped up from the owner's free balance, as far as it goes, at each
    /// settlement of one of its devices (after the device's imbalance is paid). One warm read
    /// while no bond anywhere is short.
    function topUp(mapping(address => EnergyMarket.Account) storage accounts, address owner) internal {
        BondStore storage b = bondStore();
        if (b.shortTotal == 0) return;
        uint256 short = b.short[owner];
        if (short == 0) return;
        EnergyMarket.Account storage a = accounts[owner];
        uint256 free = a.free;
        uint256 fill = free < short ? free : short;
        if (fill == 0) return;
        a.free = uint128(free - fill);
        a.bond += uint128(fill);
        b.short[owner] = short - fill;
        b.shortTotal -= fill;
        emit BondToppedUp(owner, fill);
    }

    /// topUp at a device's first booked order of an interval (EnergyMarket._book), after its
    /// bond and escrow are taken: a drawn bond is refilled before the owner trades on.
    function topUpAtOrder(mapping(address => EnergyMarket.Account) storage accounts, address owner) external {
        topUp(accounts, owner);
    }

    /// Credit ``amount`` to ``account``'s free balance; an indebted account (not the DSO)
    /// pays its debt to the DSO from it first.
    function _credit(mapping(address => EnergyMarket.Account) storage accounts, address dso, address account, uint256 amount)
        private
    {
        EnergyMarket.Account storage a = accounts[account];
        uint256 owed = a.debt;
        if (owed == 0 || account == dso || amount == 0) {
            a.free += uint128(amount);
            return;
        }
        uint256 pay = owed < amount ? owed : amount;
        a.debt = uint128(owed - pay);
        a.free += uint128(amount - pay);
        accounts[dso].free += uint128(pay);
        emit DebtPaid(account, pay);
    }

    event EscrowReleased(uint256 indexed orderId, address indexed owner, uint256 amount);
    event IntervalVoided(uint256 indexed interval);
    event BondReleased(uint256 indexed device, address indexed owner, uint256 amount);

    /// ``device``'s bond is not releasable: ``interval`` (at or before the last interval the
    /// device ordered in) has orders and is not settled or void, or its gate is still open; or
    /// the device has a provisional settlement not yet trued up; or it has no bond posted.
    error BondLocked(uint256 device, uint256 interval);

    /// What releaseBond needs of the market (its immutables).
    struct Gate {
        uint256 marketStart;
        uint256 gateLeadS;
        uint256 intervalS;
        uint256 terms; // EnergyMarket.bondTerms
        DeviceRegistry registry;
        address dso;
    }

    /// EnergyMarket.releaseBond: the device's owner gets back its bond, bondOf(device) less
    /// what its account's bonds lack (credited like any credit: an indebted owner's debt is
    /// paid first). Only once every interval up to the last one the device ordered in is final
    /// — right whatever order intervals settle in: the market-wide mark ``finalBelow`` moves
    /// past an interval that is settled or void, or that has no order and whose gate has
    /// passed (no order can come), and the bond is released only past the mark — and none of
    /// the device's provisional settlements waits for its true-up.
    function releaseBond(
        mapping(address => EnergyMarket.Account) storage accounts,
        mapping(uint256 => EnergyMarket.DeviceInfo) storage infos,
        mapping(uint256 => EnergyMarket.IntervalState) storage intervals,
        Gate memory g,
        uint64 device
    ) external {
        EnergyMarket.DeviceInfo storage di = infos[device];
        if (di.owner != msg.sender) revert NotDeviceOwner(device, msg.sender);
        uint256 last = di.lastInterval;
        uint256 w = _advance(intervals, g, last + 1, MARK_STEPS);
        if (!di.bonded || w <= last) revert BondLocked(device, w <= last ? w : last);
        BondStore storage b = bondStore();
        if (b.openEstimates[device] != 0) revert BondLocked(device, last);
        di.bonded = false;
        EnergyMarket.Account storage a = accounts[msg.sender];
        // the bond it posted: its rating is fixed at registration, the terms at deployment
        uint256 posted = bondOf(g.terms, (uint256(g.registry.get(device).capacityW) * g.intervalS) / 3600);
        uint256 amount = a.bond < posted ? a.bond : posted;
        a.bond -= uint128(amount);
        if (amount < posted) { // the part of this device's bond that was drawn leaves the shortfall
            b.short[msg.sender] -= posted - amount;
            b.shortTotal -= posted - amount;
        }
        _credit(accounts, g.dso, msg.sender, amount);
        emit BondReleased(device, msg.sender, amount);
    }

    /// Most intervals one releaseBond moves the mark over (about 2.4 M gas of reads); a mark
    /// further behind is moved first by advanceFinal (anyone, any number of calls).
    uint256 internal constant MARK_STEPS = 1024;

    /// Move the market-wide mark ``finalBelow`` over the final intervals after it, at most
    /// ``steps`` of them and not past ``upTo``; returns the new mark.
    function _advance(
        mapping(uint256 => EnergyMarket.IntervalState) storage intervals,
        Gate memory g,
        uint256 upTo,
        uint256 steps
    ) private returns (uint256 w) {
        BondStore storage b = bondStore();
        w = b.finalBelow;
        uint256 end = w >= upTo ? w : (upTo - w > steps ? w + steps : upTo);
        for (; w < end; ++w) {
            EnergyMarket.IntervalState storage st = intervals[w];
            uint8 s = st.status;
            if (s == SETTLED || s == VOID) continue;
            uint256 start = g.marketStart + w * g.intervalS;
            uint256 gate = start > g.gateLeadS ? start - g.gateLeadS : 0;
            if (uint256(st.buyCount) + st.sellCount != 0 || block.timestamp <= gate) break;
        }
        if (w != b.finalBelow) b.finalBelow = uint64(w);
    }

    /// EnergyMarket.advanceFinal(steps): anyone moves the mark over at most ``steps`` final
    /// intervals (for a mark more than MARK_STEPS behind a device's last interval).
    function advanceFinal(
        mapping(uint256 => EnergyMarket.IntervalState) storage intervals,
        Gate memory g,
        uint256 steps
    ) external returns (uint256) {
        return _advance(intervals, g, type(uint64).max, steps);
    }

    error NotDeviceOwner(uint256 device, address account);
    error NotReclaimable(uint256 interval, uint256 deadline, uint256 time);

    /// EnergyMarket.reclaim (deadlines as EnergyMarket.reclaimAfter). Voids an open interval,
    /// or a clearing whose walk is unfinished: uniform price, its cursor is deleted and the
    /// market drops its unpriced matches (trade ids reused); CDA, its cursor stays (it tells
    /// what each bid still holds) and its announced trades are void.
    function reclaim(uint64[] calldata orderIds, uint256 marketStart, uint256 gateLeadS, uint256 intervalS)
        external
    {
        mapping(address => EnergyMarket.Account) storage accounts = MarketSlots.accounts();
        bool uniform = MarketSlots.load(MarketSlots.MECHANISM_SLOT) & 0xff == 0;
        for (uint256 k = 0; k < orderIds.length; ++k) {
            OrderWord o = OrderWords.at(orderIds[k]);
            if (o.price() == 0 || _owner(o.device()) != msg.sender || !o.isBuy()) {
                revert NotDeviceOwner(o.device(), msg.sender);
            }
            uint64 interval = o.interval();
            EnergyMarket.IntervalState storage st = MarketSlots.interval(interval);
            uint8 s = st.status;
            uint256 start = marketStart + interval * intervalS;
            uint256 deadline = (start > gateLeadS ? start - gateLeadS : 0) + intervalS;
            if (s == OPEN || (s == CLEARING && !_walkOver(interval, st, uniform))) {
                if (block.timestamp <= deadline) revert NotReclaimable(interval, deadline, block.timestamp);
                if (s == CLEARING) _voidClearing(interval, st, uniform);
                st.status = VOID;
                emit IntervalVoided(interval);
            } else if (s != VOID) {
                revert NotReclaimable(interval, deadline, block.timestamp);
            }
            uint256 escrow = o.energyWh() == 0 ? 0 : (uniform ? _payment(o.energyWh(), o.price()) : _cdaHeld(interval, orderIds[k], o));
            if (o.energyWh() != 0) OrderWords.clearEnergy(orderIds[k]);
            if (escrow > 0) {
                EnergyMarket.Account storage a = accounts[msg.sender];
                a.locked -= uint128(escrow);
                a.free += uint128(escrow);
                emit EscrowReleased(orderIds[k], msg.sender, escrow);
            }
        }
    }

    /// A clearing's matching walk is over: its trades stand (uniform: the walk is done; CDA:
    /// every order taken and none still matching).
    function _walkOver(uint64 interval, EnergyMarket.IntervalState storage st, bool uniform) private view returns (bool) {
        if (uniform) return MarketSlots.cursors()[interval].done;
        CdaMatching.Cursor storage cc = MarketSlots.cdaCursors()[interval];
        return cc.taken == uint256(st.buyCount) + st.sellCount && !cc.active;
    }

    /// Stop the interval's clearing for good (the market clears one interval at a time).
    function _voidClearing(uint64 interval, EnergyMarket.IntervalState storage st, bool uniform) private {
        if (uniform) {
            delete MarketSlots.cursors()[interval];
            uint256 last = st.firstTrade - 1; // its trades are the last: their ids are reused
            uint256 countSlot = MarketSlots.TRADE_COUNT_SLOT;
            assembly ("memory-safe") {
                sstore(countSlot, last)
            }
        }
        uint256 busySlot = MarketSlots.CLEARING_INTERVAL_SLOT;
        assembly ("memory-safe") {
            sstore(busySlot, 0)
        }
    }

    /// The escrow a buy order of a stopped CDA clearing still holds: all of it unless it was
    /// filled — then what its fills kept (the rest was released when it was filled): a bid
    /// popped while resting records it in its node; one filled on arrival kept the money of
    /// its own fills, consecutive trades in which it is the incoming (higher) order id.
    function _cdaHeld(uint64 interval, uint256 id, OrderWord o) private view returns (uint256) {
        CdaMatching.Cursor storage cc = MarketSlots.cdaCursors()[interval];
        uint256 full = _payment(o.energyWh(), o.price());
        if (cc.taken == 0 || id > cc.lastId || (cc.active && cc.cur == id)) return full; // not filled yet
        CdaMatching.Node storage n = MarketSlots.cdaNodes()[id];
        if (n.remaining > 0) return full; // resting: nothing released
        if (n.popped) return n.kept;
        mapping(uint256 => EnergyMarket.Trade) storage trades = MarketSlots.trades();
        uint256 lo = MarketSlots.interval(interval).firstTrade;
        uint256 hi = lo + cc.fills;
        while (lo < hi) { // the first trade whose incoming order id is >= id (nondecreasing)
            uint256 mid = (lo + hi) / 2;
            EnergyMarket.Trade storage t = trades[mid];
            if ((t.buyOrder > t.sellOrder ? t.buyOrder : t.sellOrder) < id) lo = mid + 1;
            else hi = mid;
        }
        uint256 end = MarketSlots.interval(interval).firstTrade + cc.fills;
        uint256 kept;
        for (; lo < end && trades[lo].buyOrder == id; ++lo) {
            EnergyMarket.Trade storage t = trades[lo];
            kept += _payment(t.clearedWh, OrderWords.at(t.sellOrder).price()); // at the resting ask's price
        }
        return kept;
    }
}
