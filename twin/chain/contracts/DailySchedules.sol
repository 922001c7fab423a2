// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {DeviceRegistry} from "./DeviceRegistry.sol";
import {EnergyMarket} from "./EnergyMarket.sol";
import {MarketSettlement} from "./MarketSettlement.sol";
import {MarketSlots} from "./MarketSlots.sol";
import {ProvisionalSettlement} from "./ProvisionalSettlement.sol";

/// @title DailySchedules — daily signing on chain (twin/market/signing_daily.py), run on
/// EnergyMarket's storage: EnergyMarket's fallback DELEGATECALLs this library's selectors.
/// A device signs its day's standing orders once as an EIP-712 ``Schedule(uint64 device,
/// uint64 day,uint64 revision,bytes32 orders)`` whose ``orders`` is the root of a keccak
/// Merkle tree of the day's slots (twin/market/schedule_merkle.py: leaf keccak256(abi.encodePacked(
/// uint64 slot,int64 buyEnergy,int64 buyPrice,int64 sellEnergy,int64 sellPrice)), padded with
/// zero leaves to a power of two, nodes keccak256(left, right)). The library verifies a
/// schedule's signature once per (device, day, revision) and keeps its root, revision and
/// hashStruct (two slots a device, overwritten day by day); each relayed order then carries
/// its slot's other side and Merkle proof, and is placed through placeSignedOrders without a
/// signature of its own (EnergyMarket skips the order signature when it calls itself: only
/// this library's code, running in the market, does). An ``Amendment`` (one slot changed,
/// ``prior`` the hashStruct of the revision it amends) carries the slot's old values and
/// proof: the library checks the chain, the signature, and recomputes the root with the new
/// leaf. Refusals are the reference ledger's (twin/market/reference_daily.py): a stale
/// revision StaleSchedule, another day's schedule WrongDay, a broken chain BrokenAmendment, a
/// leaf or signature that is not the device's BadSignature.
/// @dev Items and orders are flat uint256 words (a library's selector names a struct
/// parameter by its qualified name): see ``relaySchedules``.
library DailySchedules {
    bytes32 internal constant STORE_SLOT = keccak256("gridtwin.DailySchedules.v1");
    bytes32 internal constant SCHEDULE_TYPEHASH =
        keccak256("Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)");
    bytes32 internal constant AMENDMENT_TYPEHASH = keccak256(
        "Amendment(uint64 device,uint64 day,uint64 revision,uint64 slot,int64 buyEnergy,int64 buyPrice,"
        "int64 sellEnergy,int64 sellPrice,bytes32 prior)"
    );
    bytes32 internal constant DAILY_READINGS_TYPEHASH = keccak256("DailyReadings(uint64 device,uint64 day,bytes32 readings)");
    uint256 internal constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 internal constant DAY_S = 86_400;

    /// A device's latest verified schedule revision of its latest day: one slot for what an
    /// order's check reads (the root's top 160 bits: a second preimage still costs 2**160),
    /// one for the revision's hashStruct (the next amendment's prior).
    struct Verified {
        bytes20 root; // 0: none
        uint64 day;
        uint32 revision; // a revision from 2**32 on is refused (BadSignature)
        bytes32 head;
    }

    struct Store {
        mapping(uint256 => Verified) verified; // device => latest verified revision
        mapping(uint256 => mapping(uint256 => bool)) truedUp; // device => day => readings applied
    }

    /// A schedule or amendment of a relayed batch that failed its checks (its orders fail
    /// with the same error).
    event ScheduleRejected(uint256 indexed device, uint256 day, uint256 revision, bytes reason);
    /// A relayed scheduled order refused before booking (position in the batch, nonce =
    /// revision + 1); an order refused at booking is EnergyMarket's OrderRejected, at its
    /// position among the orders this library passed on.
    event ScheduledOrderRejected(
        uint256 indexed interval, uint256 indexed device, uint256 position, uint256 nonce, bytes reason
    );

    error NotOperator(address account);
    error UnknownDevice(uint256 device);
    error AlreadyTruedUp(uint256 device, uint256 interval);
    error MeterOutOfRange(uint256 device, uint256 cap, int256 metered);
    error StaleSchedule(uint256 device, uint256 day, uint256 revision, uint256 latest);
    error WrongDay(uint256 device, uint256 interval, uint256 day);
    error BrokenAmendment(uint256 device, uint256 day, uint256 revision, int256 latest);
    error BadSignature(uint256 device);
    error DeviceRevoked(uint256 device);
    error BadReadings(uint256 position);

    function _store() private pure returns (Store storage s) {
        bytes32 slot = STORE_SLOT;
        assembly {
            s.slot := slot
        }
    }

    /// Slots of a day (86400 / intervalS) and the depth of its Merkle tree (2**depth >= slots).
    function _shape() private view returns (uint256 perDay, uint256 depth) {
        perDay = DAY_S / EnergyMarket(address(this)).intervalS();
        while ((uint256(1) << depth) < perDay) ++depth;
    }

    function _domain() private view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
                ),
                keccak256("gridtwin EnergyMarket"),
                keccak256("1"),
                block.chainid,
                address(this),
                EnergyMarket(address(this)).salt()
            )
        );
    }

    function _signedBy(bytes32 domain, bytes32 structHash, uint256 r, uint256 s, uint256 v, address signer)
        private
        pure
        returns (bool)
    {
        if (signer == address(0) || s > HALF_N || (v != 27 && v != 28)) return false;
        return ecrecover(keccak256(abi.encodePacked(hex"1901", domain, structHash)), uint8(v), bytes32(r), bytes32(s))
            == signer;
    }

    /// keccak256(abi.encodePacked(uint64 slot, int64 buyEnergy, int64 buyPrice, int64
    /// sellEnergy, int64 sellPrice)): 40 bytes, one keccak block (each word's low 64 bits;
    /// an order's own energy and price are then range-checked as int256 by the booking).
    function leaf(uint256 slot, uint256 bE, uint256 bP, uint256 sE, uint256 sP) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, shl(192, slot))
            mstore(add(p, 8), shl(192, bE))
            mstore(add(p, 16), shl(192, bP))
            mstore(add(p, 24), shl(192, sE))
            mstore(add(p, 32), shl(192, sP))
            h := keccak256(p, 40)
        }
    }

    /// The root over ``h`` at ``slot`` with siblings w[at .. at + depth).
    function _root(bytes32 h, uint256 slot, uint256[] calldata w, uint256 at, uint256 depth)
        private
        pure
        returns (bytes32)
    {
        for (uint256 i = 0; i < depth; ++i) {
            uint256 sib = w[at + i];
            assembly ("memory-safe") {
                switch and(shr(i, slot), 1)
                case 0 {
                    mstore(0, h)
                    mstore(32, sib)
                }
                default {
                    mstore(0, sib)
                    mstore(32, h)
                }
                h := keccak256(0, 64)
            }
        }
        return h;
    }

    /// Verify the batch's new schedules and amendments, then place its orders.
    /// ``items``: schedules and amendments in (device, day, revision, amendment last) order,
    /// each ``kind`` then its words: kind 0 a Schedule (device, day, revision, root, r, s, v);
    /// kind 1 an Amendment (device, day, revision, slot, buyEnergy, buyPrice, sellEnergy,
    /// sellPrice, prior, the slot's 4 old values, r, s, v, then ``depth`` proof words).
    /// ``orders``: each (device, interval, side, energyWh, price, its schedule's day and
    /// revision, the slot's other side's energy and price, 1 + the index of its schedule item
    /// in this batch or 0, then
    /// ``depth`` proof words). Any relayer may send it. Returns the first placed order's id.
    function relaySchedules(uint256[] calldata items, uint256[] calldata orders)
        external
        returns (uint256 firstOrderId)
    {
        (uint256 perDay, uint256 depth) = _shape();
        bytes[] memory itemErr = _verifyItems(items, depth, perDay);
        uint256 stride = 10 + depth;
        uint256 n = orders.length / stride;
        if (orders.length != n * stride) revert BadReadings(orders.length);
        // placeSignedOrders(SignedOrder[]) calldata written in place (no struct per order):
        // selector, offset, count, then 9 words an order (r, s, v zero: no signature)
        uint256 buf;
        assembly ("memory-safe") {
            buf := mload(0x40)
            mstore(0x40, add(buf, add(68, mul(n, 288))))
        }
        uint256 m;
        for (uint256 k = 0; k < n; ++k) {
            uint256 at = k * stride;
            bytes memory err = _orderError(orders, at, depth, perDay, itemErr);
            if (err.length > 0) {
                emit ScheduledOrderRejected(orders[at + 1], orders[at], k, orders[at + 6] + 1, err);
                continue;
            }
            uint256 p = buf + 68 + m * 288;
            assembly ("memory-safe") {
                let src := add(orders.offset, mul(at, 32))
                calldatacopy(p, src, 160) // device, interval, side, energyWh, price
                mstore(add(p, 160), add(calldataload(add(src, 192)), 1)) // nonce: revision + 1
                mstore(add(p, 192), 0)
                mstore(add(p, 224), 0)
                mstore(add(p, 256), 0)
            }
            ++m;
        }
        bytes4 selector = EnergyMarket.placeSignedOrders.selector;
        assembly ("memory-safe") {
            mstore(buf, selector)
            mstore(add(buf, 4), 0x20)
            mstore(add(buf, 36), m)
            if iszero(call(gas(), address(), 0, buf, add(68, mul(m, 288)), 0, 32)) {
                returndatacopy(0, 0, returndatasize())
                revert(0, returndatasize())
            }
            firstOrderId := mload(0)
        }
    }

    function _orderError(uint256[] calldata w, uint256 at, uint256 depth, uint256 perDay, bytes[] memory itemErr)
        private
        view
        returns (bytes memory)
    {
        uint256 device = w[at];
        uint256 interval = w[at + 1];
        uint256 day = w[at + 5];
        uint256 revision = w[at + 6];
        uint256 src = w[at + 9]; // 1 + the index of its schedule item in this batch, 0: none
        if (src != 0 && src <= itemErr.length && itemErr[src - 1].length > 0) return itemErr[src - 1];
        if (w[at + 2] > 1 || revision >> 32 != 0 || (device | interval) >> 64 != 0) {
            return abi.encodeWithSelector(BadSignature.selector, device);
        }
        if (day != interval / perDay) return abi.encodeWithSelector(WrongDay.selector, device, interval, day);
        Verified storage v = _store().verified[device];
        bytes20 root = v.root;
        if (root == 0 || v.day != day) return abi.encodeWithSelector(BadSignature.selector, device);
        if (revision < v.revision) {
            return abi.encodeWithSelector(StaleSchedule.selector, device, day, revision, uint256(v.revision));
        }
        if (revision > v.revision) return abi.encodeWithSelector(BadSignature.selector, device);
        uint256 slot = interval - day * perDay;
        bytes32 h = w[at + 2] == 0
            ? leaf(slot, w[at + 3], w[at + 4], w[at + 7], w[at + 8])
            : leaf(slot, w[at + 7], w[at + 8], w[at + 3], w[at + 4]);
        if (bytes20(_root(h, slot, w, at + 10, depth)) != root) return abi.encodeWithSelector(BadSignature.selector, device);
        return "";
    }

    function _verifyItems(uint256[] calldata w, uint256 depth, uint256 perDay)
        private
        returns (bytes[] memory errs)
    {
        uint256 count;
        for (uint256 at = 0; at < w.length; ++count) at += w[at] == 0 ? 8 : 17 + depth;
        errs = new bytes[](count);
        DeviceRegistry registry = EnergyMarket(address(this)).registry();
        bytes32 domain = _domain();
        uint256 at;
        for (uint256 i = 0; i < count; ++i) {
            bool amend = w[at] != 0;
            errs[i] = amend ? _amend(w, at + 1, depth, perDay, registry, domain) : _schedule(w, at + 1, registry, domain);
            if (errs[i].length > 0) emit ScheduleRejected(w[at + 1], w[at + 2], w[at + 3], errs[i]);
            at += amend ? 17 + depth : 8;
        }
    }

    /// The device's authority over an item: revoked, or not its key's signature.
    function _authority(DeviceRegistry registry, uint256 device, bytes32 domain, bytes32 structHash, uint256[] calldata w, uint256 sigAt)
        private
        view
        returns (bytes memory)
    {
        (DeviceRegistry.Device memory d, address signer) = registry.getWithSigner(device);
        if (d.status == 2) return abi.encodeWithSelector(DeviceRevoked.selector, device);
        if (!_signedBy(domain, structHash, w[sigAt], w[sigAt + 1], w[sigAt + 2], signer)) {
            return abi.encodeWithSelector(BadSignature.selector, device);
        }
        return "";
    }

    function _schedule(uint256[] calldata w, uint256 at, DeviceRegistry registry, bytes32 domain)
        private
        returns (bytes memory err)
    {
        uint256 device = w[at];
        Verified storage v = _store().verified[device];
        uint256 day = w[at + 1];
        uint256 revision = w[at + 2];
        if ((device | day) >> 64 != 0 || revision >> 32 != 0) return abi.encodeWithSelector(BadSignature.selector, device);
        // not newer than the verified revision: nothing to do (its orders are checked as stale)
        if (v.root != 0 && (v.day > day || (v.day == day && v.revision >= revision))) return "";
        bytes32 structHash = keccak256(abi.encode(SCHEDULE_TYPEHASH, device, day, revision, w[at + 3]));
        err = _authority(registry, device, domain, structHash, w, at + 4);
        if (err.length == 0) {
            v.root = bytes20(bytes32(w[at + 3]));
            v.day = uint64(day);
            v.revision = uint32(revision);
            v.head = structHash;
        }
    }

    function _amend(
        uint256[] calldata w,
        uint256 at,
        uint256 depth,
        uint256 perDay,
        DeviceRegistry registry,
        bytes32 domain
    ) private returns (bytes memory err) {
        uint256 device = w[at];
        uint256 day = w[at + 1];
        uint256 revision = w[at + 2];
        uint256 slot = w[at + 3];
        Verified storage v = _store().verified[device];
        if ((device | day | slot) >> 64 != 0 || revision >> 32 != 0 || slot >= perDay) {
            return abi.encodeWithSelector(BadSignature.selector, device);
        }
        if (v.root != 0 && (v.day > day || (v.day == day && v.revision >= revision))) return "";
        bytes32 structHash;
        bytes32 typehash = AMENDMENT_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typehash)
            calldatacopy(add(p, 32), add(w.offset, mul(at, 32)), 288) // device .. prior
            structHash := keccak256(p, 320)
        }
        err = _authority(registry, device, domain, structHash, w, at + 13);
        if (err.length > 0) return err;
        if (v.root == 0 || v.day != day || v.revision + 1 != revision || v.head != bytes32(w[at + 8])) {
            int256 latest = v.root == 0 || v.day != day ? -1 : int256(uint256(v.revision));
            return abi.encodeWithSelector(BrokenAmendment.selector, device, day, revision, latest);
        }
        bytes32 old = leaf(slot, w[at + 9], w[at + 10], w[at + 11], w[at + 12]);
        if (bytes20(_root(old, slot, w, at + 16, depth)) != v.root) return abi.encodeWithSelector(BadSignature.selector, device);
        v.root = bytes20(_root(leaf(slot, w[at + 4], w[at + 5], w[at + 6], w[at + 7]), slot, w, at + 16, depth));
        v.revision = uint32(revision);
        v.head = structHash;
    }

    /// A device's latest verified schedule revision: day, revision, the Merkle root's top 160
    /// bits (zero-padded), hashStruct (all zero before its first).
    function scheduleOf(uint64 device) external view returns (uint64 day, uint64 revision, bytes32 root, bytes32 head) {
        Verified storage v = _store().verified[device];
        return (v.day, v.revision, bytes32(v.root), v.head);
    }

    /// The devices' signed daily readings (EIP-712 ``DailyReadings(uint64 device,uint64 day,
    /// bytes32 readings)``, ``readings`` the keccak of the day's Wh packed as int64), each
    /// verified once, true up every interval of the day the device was settled on the
    /// operator's relayed reading (ProvisionalSettlement's provisional records): the imbalance
    /// money of the signed value less that of the relayed one, paid like trueUp (TruedUp),
    /// when they differ. Once per device and day (AlreadyTruedUp); the whole call reverts on a
    /// bad batch (twin/market/reference_daily.py true_up_daily: the same checks in the same
    /// order). ``w``: per batch device, day, r, s, v, then the day's ``perDay`` readings.
    /// Operator only.
    function trueUpDaily(uint256[] calldata w) external {
        if (msg.sender != address(uint160(MarketSlots.load(MarketSlots.OPERATOR_SLOT)))) revert NotOperator(msg.sender);
        (uint256 perDay,) = _shape();
        uint256 stride = 5 + perDay;
        uint256 n = w.length / stride;
        if (w.length != n * stride) revert BadReadings(w.length);
        EnergyMarket m = EnergyMarket(address(this));
        address[] memory owners = _checkDaily(w, n, stride, perDay, m);
        MarketSettlement.Ctx memory x;
        x.dso = m.dso();
        x.retail = m.retailPricePerMwh();
        x.feedIn = m.feedInPricePerMwh();
        ProvisionalSettlement.Store storage ps;
        bytes32 slot = ProvisionalSettlement.STORE_SLOT;
        assembly {
            ps.slot := slot
        }
        for (uint256 k = 0; k < perDay; ++k) {
            for (uint256 i = 0; i < n; ++i) {
                uint256 at = i * stride;
                uint256 interval = w[at + 1] * perDay + k;
                ProvisionalSettlement.Entry storage en = ps.entries[interval][w[at]];
                if (en.state != 1) continue; // not settled on a relayed reading, or done
                en.state = 2;
                MarketSettlement.bondStore().openEstimates[w[at]] -= 1;
                int256 real = int256(w[at + 5 + k]);
                int256 estimate = en.estimateWh;
                if (real == estimate) continue;
                int256 traded = en.tradedWh;
                int256 amount = _value(x, real - traded) - _value(x, estimate - traded);
                (int256 paid, uint256 debt) = MarketSettlement.pay(
                    MarketSlots.accounts(), x.dso, owners[i], amount < 0, uint256(amount < 0 ? -amount : amount)
                );
                // ProvisionalSettlement's event, at the market's address like it
                emit ProvisionalSettlement.TruedUp(interval, w[at], owners[i], estimate, real, amount, paid, debt);
            }
        }
    }

    /// trueUpDaily's checks, every batch's range before any signature (as the reference):
    /// the devices' owners.
    function _checkDaily(uint256[] calldata w, uint256 n, uint256 stride, uint256 perDay, EnergyMarket m)
        private
        returns (address[] memory owners)
    {
        owners = new address[](n);
        address[] memory signers = new address[](n);
        DeviceRegistry registry = m.registry();
        uint256 intervalS = m.intervalS();
        Store storage st = _store();
        for (uint256 i = 0; i < n; ++i) {
            uint256 at = i * stride;
            uint256 device = w[at];
            (DeviceRegistry.Device memory d, address signer) = registry.getWithSigner(device);
            if (d.status == 0) revert UnknownDevice(device);
            if (d.status == 2) revert DeviceRevoked(device);
            uint256 day = w[at + 1];
            if (st.truedUp[device][day]) revert AlreadyTruedUp(device, day * perDay);
            st.truedUp[device][day] = true;
            uint256 cap = (uint256(d.capacityW) * intervalS) / 3600;
            uint256 worst;
            for (uint256 k = 0; k < perDay; ++k) {
                int256 v = int256(w[at + 5 + k]);
                uint256 a = uint256(v < 0 ? -v : v);
                if (a > worst) worst = a;
            }
            if (worst > cap) revert MeterOutOfRange(device, cap, int256(worst));
            owners[i] = d.owner;
            signers[i] = signer;
        }
        bytes32 domain = _domain();
        for (uint256 i = 0; i < n; ++i) {
            uint256 at = i * stride;
            bytes32 packed;
            assembly ("memory-safe") {
                let p := mload(0x40)
                for { let k := 0 } lt(k, perDay) { k := add(k, 1) } {
                    mstore(add(p, mul(k, 8)), shl(192, calldataload(add(w.offset, mul(add(add(at, 5), k), 32)))))
                }
                packed := keccak256(p, mul(perDay, 8))
            }
            bytes32 structHash = keccak256(abi.encode(DAILY_READINGS_TYPEHASH, w[at], w[at + 1], packed));
            if (!_signedBy(domain, structHash, w[at + 2], w[at + 3], w[at + 4], signers[i])) revert BadSignature(w[at]);
        }
    }

    /// What settling ``imbalanceWh`` is worth to the owner (ProvisionalSettlement._value).
    function _value(MarketSettlement.Ctx memory x, int256 imbalanceWh) private pure returns (int256) {
        if (imbalanceWh > 0) return -int256((uint256(imbalanceWh) * x.retail) / 1e6);
        if (imbalanceWh < 0) return int256((uint256(-imbalanceWh) * x.feedIn) / 1e6);
        return 0;
    }
}
