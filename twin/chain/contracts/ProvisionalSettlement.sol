// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {DeviceRegistry} from "./DeviceRegistry.sol";
import {EnergyMarket} from "./EnergyMarket.sol";
import {IslandBooks} from "./IslandBooks.sol";
import {IntervalPruning} from "./IntervalPruning.sol";
import {MarketSettlement} from "./MarketSettlement.sol";
import {MarketSlots} from "./MarketSlots.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title ProvisionalSettlement — settlement on estimated meter readings and their true-up,
/// run on EnergyMarket's storage: EnergyMarket's fallback DELEGATECALLs every call it does not
/// implement to this linked library (so the market stays under EIP-170). Mirrors
/// twin/market/reference_settlement.py (settle with estimates, true_up) and the rules of
/// twin/market/provisional.py exactly.
/// @dev A reading whose signature has ``v == 0`` is the operator's estimate: the operator's
/// transaction states it (no device signed it), the library records it as provisional
/// (ProvisionalSettled) and it settles like any reading. ``v == 1``: a real reading the
/// operator states (as in the unsigned settle()); 27/28: signed by the device's key.
/// ``trueUp`` settles the difference between the estimate and the real reading once: the
/// imbalance money the real reading implies minus what the estimate moved, paid like any
/// owner–DSO payment (MarketSettlement.pay: from free, then bond, the rest as debt; an
/// indebted payee's debt first). A second true-up reverts AlreadyTruedUp, one of a device
/// settled on a real reading NotProvisional: a late or duplicated reading never counts twice.
/// A device's bond is not released while one of its estimates waits for its true-up.
/// The market's storage is reached by its slot numbers (MarketSlots), its immutables through
/// its getters.
library ProvisionalSettlement {
    /// This library's own records, at a namespaced slot no EnergyMarket variable can reach.
    bytes32 internal constant STORE_SLOT = keccak256("gridtwin.ProvisionalSettlement.v1");
    uint8 internal constant SETTLED = 2;
    uint8 internal constant OPEN_ESTIMATE = 1;
    uint8 internal constant TRUED_UP = 2;
    uint8 internal constant FINAL = 3; // not trued up by its deadline: the estimate stands
    uint256 internal constant WH_PER_MWH = 1e6;

    struct Entry {
        int96 estimateWh;
        uint8 state; // 0 none, 1 settled on the estimate, 2 trued up, 3 final (expired)
        int96 tradedWh; // the device's traded energy at settlement (its position may be pruned)
    }

    struct Store {
        mapping(uint256 => mapping(uint256 => Entry)) entries; // interval => device
    }

    /// ``device`` was settled in ``interval`` on the operator's estimate (provisional).
    event ProvisionalSettled(uint256 indexed interval, uint256 indexed device, int256 estimatedWh, int256 tradedWh);
    /// The real reading trued up the provisional settlement: ``amount`` > 0 paid to the owner by
    /// the DSO, < 0 paid by the owner; ``paid`` what moved (signed likewise), ``debt`` the rest.
    event TruedUp(
        uint256 indexed interval,
        uint256 indexed device,
        address owner,
        int256 estimatedWh,
        int256 meteredWh,
        int256 amount,
        int256 paid,
        uint256 debt
    );

    /// The estimate of ``device`` in ``interval`` was not trued up by ``deadline``
    /// (trueUpDeadline) and ``finalizeEstimate`` made it final (anyone may call it): the
    /// estimate is the settlement, the device's bond no longer waits for it.
    event EstimateFinal(uint256 indexed interval, uint256 indexed device, address owner, int256 estimatedWh);

    error NotOperator(address account);
    /// A true-up after the estimate's deadline (or after it was made final).
    error TrueUpExpired(uint256 device, uint256 interval, uint256 deadline);
    /// finalizeEstimate before the deadline (``deadline`` 0: the market's estimates never expire).
    error TrueUpOpen(uint256 device, uint256 interval, uint256 deadline, uint256 time);
    error NotProvisional(uint256 device, uint256 interval);
    error AlreadyTruedUp(uint256 device, uint256 interval);
    error BadReadings(uint256 position);
    error BadSignature(uint256 device);
    error UnknownDevice(uint256 device);
    error MeterOutOfRange(uint256 device, uint256 cap, int256 metered);

    function _store() private pure returns (Store storage s) {
        bytes32 slot = STORE_SLOT;
        assembly {
            s.slot := slot
        }
    }

    function _onlyOperator() private view {
        address op = address(uint160(MarketSlots.load(MarketSlots.OPERATOR_SLOT)));
        if (msg.sender != op) revert NotOperator(msg.sender);
    }

    function _ctx() private view returns (MarketSettlement.Ctx memory x) {
        EnergyMarket m = EnergyMarket(address(this));
        uint256 mech = MarketSlots.load(MarketSlots.MECHANISM_SLOT) & 0xff;
        x = MarketSettlement.Ctx(
            m.registry(), m.dso(), m.retailPricePerMwh(), m.feedInPricePerMwh(), m.intervalS(), mech == 1, _domain(m)
        );
    }

    function _domain(EnergyMarket m) private view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
                ),
                keccak256("gridtwin EnergyMarket"),
                keccak256("1"),
                block.chainid,
                address(this),
                m.salt()
            )
        );
    }

    /// A reading's authority: 0 the operator's estimate, 1 a real reading the operator
    /// states, else the device's key (reverts BadSignature); then its range (but for 1).
    function _check(
        MarketSettlement.Ctx memory x,
        uint64 interval,
        uint64 device,
        int256 metered,
        bytes32 r,
        bytes32 s,
        uint8 v
    ) private view {
        DeviceRegistry.Device memory d = _authority(x, interval, device, metered, r, s, v);
        if (v != 1) _range(x, d, device, metered);
    }

    function _authority(
        MarketSettlement.Ctx memory x,
        uint64 interval,
        uint64 device,
        int256 metered,
        bytes32 r,
        bytes32 s,
        uint8 v
    ) private view returns (DeviceRegistry.Device memory d) {
        address signer;
        (d, signer) = x.registry.getWithSigner(device);
        if (d.status == 0) revert UnknownDevice(device);
        if (v > 1) {
            bytes32 structHash = keccak256(abi.encode(MarketSettlement.READING_TYPEHASH, device, interval, metered));
            if (signer == address(0) || _recover(x.domain, structHash, r, s, v) != signer) revert BadSignature(device);
        }
    }

    function _range(MarketSettlement.Ctx memory x, DeviceRegistry.Device memory d, uint64 device, int256 metered)
        private
        pure
    {
        uint256 cap = (uint256(d.capacityW) * x.intervalS) / 3600;
        if (metered > int256(cap) || metered < -int256(cap)) revert MeterOutOfRange(device, cap, metered);
    }

    function _recover(bytes32 domain, bytes32 structHash, bytes32 r, bytes32 s, uint8 v)
        private
        pure
        returns (address)
    {
        if (uint256(s) > MarketSettlement.HALF_N || (v != 27 && v != 28)) return address(0);
        return ecrecover(keccak256(abi.encodePacked(hex"1901", domain, structHash)), v, r, s);
    }

    /// EnergyMarket.settleSignedChunk where readings with ``v == 0`` are the operator's
    /// estimates, settled provisionally (contract docstring); any cut of the readings into
    /// chunks settles as one settle() would. Signatures as parallel arrays (plain ABI types:
    /// a library's selector names a struct parameter by its qualified name).
    function settleProvisionalChunk(
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        bytes32[] calldata rs,
        bytes32[] calldata ss,
        uint8[] calldata vs,
        bool last
    ) external returns (bool) {
        _onlyOperator();
        MarketSettlement.Ctx memory x = _ctx();
        EnergyMarket.IntervalState storage st = MarketSlots.interval(interval);
        MarketSettlement.checkStatus(interval, st.status);
        uint256 n = devices.length;
        if (n != meteredWh.length || n != rs.length || n != ss.length || n != vs.length) revert BadReadings(n);
        mapping(uint256 => EnergyMarket.Position) storage positions = MarketSlots.positions(interval);
        Store storage store = _store();
        for (uint256 k = 0; k < n; ++k) {
            _check(x, interval, devices[k], meteredWh[k], rs[k], ss[k], vs[k]);
            if (vs[k] == 0) {
                Entry storage en = store.entries[interval][devices[k]];
                if (en.state != OPEN_ESTIMATE) MarketSettlement.bondStore().openEstimates[devices[k]] += 1;
                int96 traded = positions[devices[k]].netWh;
                en.estimateWh = int96(meteredWh[k]);
                en.state = OPEN_ESTIMATE;
                en.tradedWh = traded;
                emit ProvisionalSettled(interval, devices[k], meteredWh[k], traded);
            }
        }
        return _settle(x, st, interval, at, maxTrades, devices, meteredWh, last);
    }

    function _settle(
        MarketSettlement.Ctx memory x,
        EnergyMarket.IntervalState storage st,
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        bool last
    ) private returns (bool) {
        return MarketSettlement.settleChunk(
            x, st, MarketSlots.settleCursor(interval), MarketSlots.trades(), MarketSlots.accounts(), MarketSlots.positions(interval), MarketSlots.injected(interval),
            interval, at, maxTrades, devices, meteredWh, last
        );
    }

    /// True up ``device``'s provisional settlement of ``interval`` on its real reading, once
    /// (contract docstring); ``sig`` as for a reading (``v == 0`` is refused: an estimate
    /// cannot true up an estimate).
    function trueUp(uint64 interval, uint64 device, int256 meteredWh, bytes32 r, bytes32 s, uint8 v) external {
        _onlyOperator();
        if (v == 0) revert BadSignature(device);
        MarketSettlement.Ctx memory x = _ctx();
        DeviceRegistry.Device memory d = _authority(x, interval, device, meteredWh, r, s, v);
        Entry storage en = _store().entries[interval][device];
        if (en.state == TRUED_UP) revert AlreadyTruedUp(device, interval);
        uint256 deadline = trueUpDeadline(interval);
        if (en.state == FINAL) revert TrueUpExpired(device, interval, deadline);
        if (en.state != OPEN_ESTIMATE || MarketSlots.interval(interval).status != SETTLED) revert NotProvisional(device, interval);
        if (deadline != 0 && block.timestamp > deadline) revert TrueUpExpired(device, interval, deadline);
        _range(x, d, device, meteredWh);
        address owner = d.owner;
        en.state = TRUED_UP;
        int256 traded = en.tradedWh;
        int256 estimate = en.estimateWh;
        int256 amount = _value(x, meteredWh - traded) - _value(x, estimate - traded);
        MarketSettlement.bondStore().openEstimates[device] -= 1;
        (int256 paid, uint256 debt) = MarketSettlement.pay(
            MarketSlots.accounts(), x.dso, owner, amount < 0, uint256(amount < 0 ? -amount : amount)
        ); // free, then bond, then debt; the payee credited like any credit
        emit TruedUp(
            interval, device, owner, estimate, meteredWh, amount, paid, debt
        );
    }

    /// Last chain time at which ``interval``'s estimates may be trued up: its end plus the
    /// market's expiry (EnergyMarket.bondTerms bits 192..255); 0 when estimates never expire.
    function trueUpDeadline(uint64 interval) public view returns (uint256) {
        EnergyMarket m = EnergyMarket(address(this));
        uint256 expiry = m.bondTerms() >> 192;
        if (expiry == 0) return 0;
        return m.marketStart() + (uint256(interval) + 1) * m.intervalS() + expiry;
    }

    /// Anyone makes an estimate that was not trued up by its deadline final: the estimate is
    /// the settlement (the money it moved stays where it is), no true-up can follow, and the
    /// device's bond no longer waits for it (releaseBond). EstimateFinal.
    function finalizeEstimate(uint64 interval, uint64 device) external {
        Entry storage en = _store().entries[interval][device];
        if (en.state == TRUED_UP) revert AlreadyTruedUp(device, interval);
        if (en.state != OPEN_ESTIMATE) revert NotProvisional(device, interval);
        uint256 deadline = trueUpDeadline(interval);
        if (deadline == 0 || block.timestamp <= deadline) revert TrueUpOpen(device, interval, deadline, block.timestamp);
        en.state = FINAL;
        MarketSettlement.bondStore().openEstimates[device] -= 1;
        emit EstimateFinal(interval, device, EnergyMarket(address(this)).registry().get(device).owner, en.estimateWh);
    }

    /// What settling ``imbalanceWh`` is worth to the owner (twin.market.provisional.imbalance_value).
    function _value(MarketSettlement.Ctx memory x, int256 imbalanceWh) private pure returns (int256) {
        if (imbalanceWh > 0) return -int256((uint256(imbalanceWh) * x.retail) / WH_PER_MWH);
        if (imbalanceWh < 0) return int256((uint256(-imbalanceWh) * x.feedIn) / WH_PER_MWH);
        return 0;
    }

    /// A device's provisional record of an interval: 0 none, 1 settled on ``estimateWh``,
    /// 2 trued up.
    /// One uniform-price book per electrical island while the feeder is split (library
    /// IslandBooks, on the market's storage): per book ``nBids[b]`` bids and ``nAsks[b]`` asks,
    /// concatenated in book order, each book sorted like clear()'s lists. Operator only.
    function clearBooks(
        uint64 interval,
        uint32[] calldata nBids,
        uint32[] calldata nAsks,
        uint64[] calldata bidIds,
        uint64[] calldata askIds
    ) external {
        _onlyOperator();
        IslandBooks.clear(interval, nBids, nAsks, bidIds, askIds);
    }

    /// EnergyMarket.pruneInterval: free a settled interval's orders, usage, positions,
    /// injections and trades ``tradeFrom`` .. ``tradeTo`` - 1 (library IntervalPruning; the
    /// events stay their record). Operator only: it runs the interval's certificates first.
    function pruneInterval(
        uint64 interval,
        uint64[] calldata orderIds,
        uint64[] calldata devices,
        uint256 tradeFrom,
        uint256 tradeTo
    ) external {
        _onlyOperator();
        IntervalPruning.prune(interval, orderIds, devices, tradeFrom, tradeTo);
    }

    /// EnergyMarket.releaseBond(device): the owner takes back ``device``'s imbalance bond (what
    /// is left of it) once every interval up to the last one the device ordered in is final
    /// and none of its provisional settlements waits for a true-up; the device posts a new
    /// bond with its next order (MarketSettlement.releaseBond).
    function releaseBond(uint64 device) external {
        MarketSettlement.releaseBond(MarketSlots.accounts(), MarketSlots.deviceInfos(), MarketSlots.intervals(), _gate(), device);
    }

    /// EnergyMarket.advanceFinal(steps): anyone moves releaseBond's mark over at most
    /// ``steps`` final intervals (MarketSettlement.advanceFinal); finalMark() reads it.
    function advanceFinal(uint256 steps) external returns (uint256) {
        return MarketSettlement.advanceFinal(MarketSlots.intervals(), _gate(), steps);
    }

    function finalMark() external view returns (uint256) {
        return MarketSettlement.bondStore().finalBelow;
    }

    function _gate() private view returns (MarketSettlement.Gate memory) {
        EnergyMarket m = EnergyMarket(address(this));
        return MarketSettlement.Gate(
            m.marketStart(), m.gateLeadS(), m.intervalS(), m.bondTerms(), m.registry(), m.dso()
        );
    }

    /// EnergyMarket.bondOf(device): the imbalance bond ``device`` posts with its first order
    /// (MarketSettlement.bondOf of its registered rating).
    function bondOf(uint64 device) external view returns (uint256) {
        EnergyMarket m = EnergyMarket(address(this));
        uint256 capWh = (uint256(m.registry().get(device).capacityW) * m.intervalS()) / 3600;
        return MarketSettlement.bondOf(m.bondTerms(), capWh);
    }

    /// EnergyMarket.reclaimAfter(interval): the deadline after which the owners of an
    /// interval's buy orders may reclaim their escrow if its clearing has not started (or
    /// stopped before its matching walk was over), and anyone may clear it: one interval after
    /// its gate.
    function reclaimAfter(uint256 interval) external view returns (uint256) {
        return MarketSlots.gateTime(interval) + EnergyMarket(address(this)).intervalS();
    }

    /// EnergyMarket.gateTime(interval): the last chain time at which orders for ``interval``
    /// are accepted (0: never).
    function gateTime(uint256 interval) external view returns (uint256) {
        return MarketSlots.gateTime(interval);
    }

    /// EnergyMarket.orders(id): order ``id`` (all zero: no such order, or pruned; side 0 buy,
    /// 1 sell; a reclaimed bid's energy is 0), unpacked from its half slot (OrderWords).
    function orders(uint256 id)
        external
        view
        returns (uint64 device, uint64 interval, uint8 side, uint64 energyWh, uint56 price)
    {
        OrderWord o = OrderWords.at(id);
        return (o.device(), o.interval(), uint8(o.sideNo()), o.energyWh(), o.price());
    }

    /// EnergyMarket.deviceInfo(device): its owner, last ordered interval and whether its bond
    /// is posted.
    function deviceInfo(uint64 device) external view returns (address owner, uint64 lastInterval, bool bonded) {
        EnergyMarket.DeviceInfo storage di = MarketSlots.deviceInfos()[device];
        return (di.owner, di.lastInterval, di.bonded);
    }

    /// EnergyMarket.clearingProgress(interval): progress of its chunked uniform clearing (all
    /// zero when none is under way): ids verified per side, whether matching is over, trades
    /// matched and trades finalized. The operator resumes an interrupted chunk sequence from
    /// here (twin.chain.chunks).
    function clearingProgress(uint64 interval)
        external
        view
        returns (uint256 bidsSeen, uint256 asksSeen, bool done, uint256 fills, uint256 finalized)
    {
        EnergyMarket.Cursor storage c = MarketSlots.cursors()[interval];
        return (c.bidsSeen, c.asksSeen, c.done, c.fills, c.finalized);
    }

    /// EnergyMarket.settlementProgress(interval): trades paid, readings settled, and the last
    /// settled device (valid when ``readings`` > 0) of its chunked settlement.
    function settlementProgress(uint64 interval)
        external
        view
        returns (uint256 paid, uint256 readings, uint256 lastDevice)
    {
        EnergyMarket.SettleCursor storage c = MarketSlots.settleCursor(interval);
        return (c.paid, c.readings, c.lastDevice);
    }

    function provisionalState(uint64 interval, uint64 device) external view returns (uint8 state, int256 estimateWh) {
        Entry storage en = _store().entries[interval][device];
        return (en.state, en.estimateWh);
    }
}
