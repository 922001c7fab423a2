// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title DemandResponse — the TSO/DSO posts an event (interval, target reduction, price)
/// with its budget escrowed, device owners commit a reduction, and compensation is paid
/// automatically on the metered reduction against the device's baseline.
/// @notice Mirrors twin/market/demand_response.py (DemandResponseLedger) exactly:
/// budget = payment(targetWh, price); baseline = floor mean of the device's recorded
/// readings over the baselineN intervals before the event; paid reduction =
/// min(max(baseline - metered, 0), committed); pay = payment(reduction, price); the unspent
/// budget goes back to the poster (budget == paid + refund), once per event.
/// Commitments (#19): a device commits at most its energy cap in the event interval
/// (capacityW * intervalS / 3600, as in the market); commitments close when the event
/// interval's delivery starts (block time >= marketStart + interval * intervalS); a commit
/// escrows a bond = payment(committed, price) * penaltyBps / 10000 from the owner, and at
/// settlement the penalty payment(committed - paid reduction, price) * penaltyBps / 10000 goes
/// from the bond to the poster, the rest of the bond back to the owner.
/// @dev Roles: posters (TSO, DSO) post events; the meter operator (the DSO) records readings
/// and settles events with the event interval's readings; a device's owner commits it.
contract DemandResponse {
    uint256 public constant WH_PER_MWH = 1e6;

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    address public immutable meterOperator;
    uint256 public immutable baselineN;
    uint256 public immutable marketStart;
    uint256 public immutable intervalS;
    uint256 public immutable penaltyBps;

    struct DREvent {
        address poster;
        uint64 interval;
        bool exists;
        bool settled;
        uint64 targetWh;
        uint64 committedWh;
        uint96 price;
        uint256 budget;
    }

    struct Commit {
        address owner;
        uint64 wh;
        uint256 bond;
    }

    struct Reading {
        bool known;
        int248 wh;
    }

    mapping(address => bool) public isPoster;
    mapping(uint256 => DREvent) public events;
    mapping(uint256 => uint64[]) internal _committed; // event => devices in commit order
    mapping(uint256 => mapping(uint256 => Commit)) public commits; // event => device
    mapping(uint256 => mapping(uint256 => Reading)) public meter; // device => interval
    uint256 public escrow;

    event EventPosted(uint256 indexed eventId, address indexed poster, uint256 interval, uint256 targetWh, uint256 price, uint256 budget);
    event Committed(uint256 indexed eventId, uint256 indexed device, address owner, uint256 reductionWh);
    event MeterRecorded(uint256 indexed device, uint256 indexed interval, int256 meteredWh);
    event Compensated(
        uint256 indexed eventId,
        uint256 indexed device,
        address owner,
        int256 baselineWh,
        int256 meteredWh,
        uint256 reductionWh,
        uint256 amount,
        uint256 penalty
    );
    event EventSettled(uint256 indexed eventId, uint256 paid, uint256 refund, uint256 penalties);

    error NotPoster(address account);
    error NotDSO(address account);
    error NotDeviceOwner(uint256 device, address account);
    error UnknownDevice(uint256 device);
    error UnknownEvent(uint256 event_id);
    error DeviceExists(uint256 device); // the reference's error for a taken event id
    error BadAmount(uint256 amount);
    error BadPrice(uint256 device, int256 price);
    error BadEnergy(uint256 device, int256 energy);
    error CapacityExceeded(uint256 device, uint256 cap, uint256 requested);
    error AlreadySettled(uint256 interval);
    error MissingMeterReading(uint256 device, uint256 interval);
    error BadReadings(uint256 position);
    error CommitClosed(uint256 event_id, uint256 close, uint256 time);

    constructor(
        SettlementToken token_,
        DeviceRegistry registry_,
        address[] memory posters,
        uint256 baselineN_,
        uint256 marketStart_,
        uint256 intervalS_,
        uint256 penaltyBps_
    ) {
        if (baselineN_ == 0) revert BadAmount(0);
        if (intervalS_ == 0) revert BadAmount(0);
        if (penaltyBps_ > 10000) revert BadAmount(penaltyBps_);
        marketStart = marketStart_;
        intervalS = intervalS_;
        penaltyBps = penaltyBps_;
        token = token_;
        registry = registry_;
        meterOperator = registry_.dso();
        baselineN = baselineN_;
        for (uint256 k = 0; k < posters.length; ++k) {
            isPoster[posters[k]] = true;
        }
    }

    function payment(uint256 energyWh, uint256 pricePerMwh) public pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    /// Bond of a commitment, and penalty of a shortfall: payment(wh, price) * penaltyBps / 10000.
    function bondOf(uint256 wh, uint256 pricePerMwh) public view returns (uint256) {
        return (payment(wh, pricePerMwh) * penaltyBps) / 10000;
    }

    /// Post an event; its budget is pulled from the poster (approved) into escrow.
    function postEvent(uint256 eventId, uint64 interval, int256 targetWh, int256 price) external {
        if (!isPoster[msg.sender]) revert NotPoster(msg.sender);
        if (events[eventId].exists) revert DeviceExists(eventId);
        if (targetWh <= 0 || targetWh >= 2 ** 64) revert BadAmount(uint256(targetWh));
        if (price <= 0 || price >= 2 ** 96) revert BadPrice(0, price);
        uint256 budget = payment(uint256(targetWh), uint256(price));
        events[eventId] = DREvent(msg.sender, interval, true, false, uint64(uint256(targetWh)), 0, uint96(uint256(price)), budget);
        escrow += budget;
        token.transferFrom(msg.sender, address(this), budget);
        emit EventPosted(eventId, msg.sender, interval, uint256(targetWh), uint256(price), budget);
    }

    /// The device's owner commits (or re-commits) a reduction; total commitments <= target.
    function commit(uint256 eventId, uint64 device, int256 reductionWh) external {
        DeviceRegistry.Device memory d = registry.get(device);
        if (d.status != 1) revert UnknownDevice(device);
        if (msg.sender != d.owner) revert NotDeviceOwner(device, msg.sender);
        DREvent storage ev = events[eventId];
        if (!ev.exists) revert UnknownEvent(eventId);
        if (ev.settled) revert AlreadySettled(ev.interval);
        if (reductionWh <= 0) revert BadEnergy(device, reductionWh);
        {
            uint256 close = uint256(ev.interval) * intervalS;
            if (block.timestamp >= marketStart + close) revert CommitClosed(eventId, close, block.timestamp - marketStart);
        }
        uint256 cap = (uint256(d.capacityW) * intervalS) / 3600;
        if (uint256(reductionWh) > cap) revert CapacityExceeded(device, cap, uint256(reductionWh));
        Commit storage c = commits[eventId][device];
        uint256 total = uint256(ev.committedWh) - c.wh + uint256(reductionWh);
        if (total > ev.targetWh) revert CapacityExceeded(device, ev.targetWh, total);
        if (c.wh == 0) _committed[eventId].push(device);
        uint256 oldBond = c.bond;
        uint256 bond = bondOf(uint256(reductionWh), ev.price);
        c.owner = d.owner;
        c.wh = uint64(uint256(reductionWh));
        c.bond = bond;
        ev.committedWh = uint64(total);
        if (bond > oldBond) {
            escrow += bond - oldBond;
            token.transferFrom(msg.sender, address(this), bond - oldBond);
        } else if (oldBond > bond) {
            escrow -= oldBond - bond;
            token.transfer(msg.sender, oldBond - bond);
        }
        emit Committed(eventId, device, d.owner, uint256(reductionWh));
    }

    /// Meter readings of one interval (consumption positive), for baselines.
    function recordMeters(uint64 interval, uint64[] calldata devices, int248[] calldata meteredWh) external {
        if (msg.sender != meterOperator) revert NotDSO(msg.sender);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        for (uint256 k = 0; k < devices.length; ++k) {
            meter[devices[k]][interval] = Reading(true, meteredWh[k]);
            emit MeterRecorded(devices[k], interval, meteredWh[k]);
        }
    }

    /// Floor mean of the recorded readings over the baselineN intervals before ``interval``.
    function baselineWh(uint256 device, uint256 interval) public view returns (int256) {
        int256 sum;
        int256 n;
        for (uint256 k = 1; k <= baselineN && k <= interval; ++k) {
            Reading storage r = meter[device][interval - k];
            if (r.known) {
                sum += r.wh;
                n += 1;
            }
        }
        if (n == 0) return 0;
        int256 q = sum / n;
        if (sum % n != 0 && sum < 0) q -= 1; // floor, as Python's //
        return q;
    }

    /// Pay every committed device on its metered energy in the event interval (readings by
    /// strictly ascending device id) and refund the rest of the budget to the poster.
    function settleEvent(uint256 eventId, uint64[] calldata devices, int248[] calldata meteredWh) external {
        if (msg.sender != meterOperator) revert NotDSO(msg.sender);
        DREvent storage ev = events[eventId];
        if (!ev.exists) revert UnknownEvent(eventId);
        if (ev.settled) revert AlreadySettled(ev.interval);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        for (uint256 k = 1; k < devices.length; ++k) {
            if (devices[k] <= devices[k - 1]) revert BadReadings(k);
        }
        uint64[] storage committed = _committed[eventId];
        uint256 n = committed.length;
        int248[] memory metered = new int248[](n);
        uint256 missing = type(uint256).max;
        for (uint256 k = 0; k < n; ++k) {
            (bool found, uint256 at) = _find(devices, committed[k]);
            if (!found) {
                if (committed[k] < missing) missing = committed[k];
            } else {
                metered[k] = meteredWh[at];
            }
        }
        if (missing != type(uint256).max) revert MissingMeterReading(missing, ev.interval);
        ev.settled = true;
        uint256 price = ev.price;
        uint256 paid;
        uint256 penalties;
        for (uint256 k = 0; k < n; ++k) {
            uint256 device = committed[k];
            Commit storage c = commits[eventId][device];
            int256 base = baselineWh(device, ev.interval);
            int256 cut = base - metered[k];
            uint256 reduction = cut <= 0 ? 0 : (uint256(cut) < c.wh ? uint256(cut) : c.wh);
            uint256 amount = payment(reduction, price);
            uint256 penalty = bondOf(c.wh - reduction, price);
            paid += amount;
            penalties += penalty;
            escrow -= c.bond;
            uint256 toOwner = amount + c.bond - penalty;
            if (toOwner > 0) token.transfer(c.owner, toOwner);
            emit Compensated(eventId, device, c.owner, base, metered[k], reduction, amount, penalty);
        }
        uint256 refund = ev.budget - paid;
        escrow -= ev.budget;
        if (refund + penalties > 0) token.transfer(ev.poster, refund + penalties);
        emit EventSettled(eventId, paid, refund, penalties);
    }

    function committedDevices(uint256 eventId) external view returns (uint64[] memory) {
        return _committed[eventId];
    }

    function _find(uint64[] calldata sorted, uint256 x) private pure returns (bool, uint256) {
        uint256 lo = 0;
        uint256 hi = sorted.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (sorted[mid] == x) return (true, mid);
            if (sorted[mid] < x) lo = mid + 1;
            else hi = mid;
        }
        return (false, 0);
    }
}
