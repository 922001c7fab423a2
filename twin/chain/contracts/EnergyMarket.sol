// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title EnergyMarket — local energy market with buyer escrow, uniform-price double
/// auction, DSO curtailment and settlement on metered energy.
/// @notice Mirrors twin/market/reference.py exactly (same integer arithmetic, same ids,
/// same custom errors). Units: energy in Wh, prices in micro-units per MWh, money in
/// token base units (micro-units). payment(e, p) = e * p / 1e6 (floor).
/// @dev Sorting is done off-chain: clear() receives the bid and ask id lists and verifies
/// in O(n) that each is strictly ordered by the rule, holds only orders of the interval
/// and side, and has the full count — which proves it is the exact permutation.
contract EnergyMarket {
    enum Side {
        BUY,
        SELL
    }

    uint8 internal constant OPEN = 0;
    uint8 internal constant CLEARED = 1;
    uint8 internal constant SETTLED = 2;

    uint256 public constant PRICE_MAX = 100_000 * 1e6;
    uint256 public constant WH_PER_MWH = 1e6;

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    address public immutable operator;
    address public immutable dso;
    uint256 public immutable intervalS;
    uint256 public immutable retailPricePerMwh;
    uint256 public immutable feedInPricePerMwh;

    struct Account {
        uint256 free;
        uint256 locked; // buyer escrow
        uint256 debt; // unpaid settlement charges (a counter, no tokens)
    }

    /// Two slots: (owner 20, device 8, side 1) and (interval 8, energy 8, price 12).
    struct Order {
        address owner;
        uint64 device;
        Side side;
        uint64 interval;
        uint64 energyWh;
        uint96 price;
    }

    struct Trade {
        uint64 buyOrder;
        uint64 sellOrder;
        uint64 clearedWh;
        uint64 energyWh; // after curtailment
    }

    struct IntervalState {
        uint8 status;
        uint96 price;
        uint64 volumeWh;
        uint32 buyCount;
        uint32 sellCount;
        uint64 firstTrade;
        uint32 tradeCount;
        uint32 tradedDevices;
    }

    struct Usage {
        uint64 buyWh;
        uint64 sellWh;
    }

    struct Position {
        int96 netWh; // bought - sold, after curtailment
        int96 money; // net trade money, filled at settlement
        bool traded;
    }

    struct OrderInput {
        uint64 device;
        uint64 interval;
        Side side;
        int256 energyWh;
        int256 price;
    }

    mapping(address => Account) public accounts;
    /// owner => agent => may place orders for the owner's devices (escrow still from owner)
    mapping(address => mapping(address => bool)) public isAgent;
    mapping(uint256 => Order) public orders;
    uint256 public orderCount;
    mapping(uint256 => Trade) public trades;
    uint256 public tradeCount;
    mapping(uint256 => IntervalState) public intervals;
    mapping(uint256 => mapping(uint256 => Usage)) public usage; // interval => device
    mapping(uint256 => mapping(uint256 => Position)) public positions; // interval => device

    event AgentSet(address indexed owner, address indexed agent, bool approved);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event OrderPlaced(
        uint256 indexed orderId,
        uint256 indexed interval,
        uint256 indexed device,
        address owner,
        Side side,
        uint256 energyWh,
        uint256 price,
        uint256 escrow
    );
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
    event Curtailed(uint256 indexed tradeId, uint256 indexed interval, uint256 oldWh, uint256 newWh, uint256 released);
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

    error NotOperator(address account);
    error NotDSO(address account);
    error NotDeviceOwner(uint256 device, address account);
    error UnknownDevice(uint256 device);
    error DeviceRevoked(uint256 device);
    error BadEnergy(uint256 device, int256 energy);
    error BadPrice(uint256 device, int256 price);
    error BadAmount(uint256 amount);
    error IntervalClosed(uint256 interval);
    error CapacityExceeded(uint256 device, uint256 cap, uint256 requested);
    error OppositeSide(uint256 device, uint256 interval);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error AlreadyCleared(uint256 interval);
    error NotCleared(uint256 interval);
    error AlreadySettled(uint256 interval);
    error BadOrderList(uint256 side, uint256 position, uint256 order);
    error UnknownTrade(uint256 trade);
    error CurtailIncrease(uint256 trade, uint256 current, int256 requested);
    error MissingMeterReading(uint256 device, uint256 interval);
    error BadReadings(uint256 position);

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    modifier onlyDSO() {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        _;
    }

    constructor(
        SettlementToken token_,
        DeviceRegistry registry_,
        address operator_,
        uint256 intervalS_,
        uint256 retailPricePerMwh_,
        uint256 feedInPricePerMwh_
    ) {
        token = token_;
        registry = registry_;
        operator = operator_;
        dso = registry_.dso();
        intervalS = intervalS_;
        retailPricePerMwh = retailPricePerMwh_;
        feedInPricePerMwh = feedInPricePerMwh_;
    }

    /// The one payment-rounding rule (twin/market/units.py).
    function payment(uint256 energyWh, uint256 pricePerMwh) public pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    // ------------------------------------------------------------------ money

    function setAgent(address agent, bool approved) external {
        isAgent[msg.sender][agent] = approved;
        emit AgentSet(msg.sender, agent, approved);
    }

    /// Move tokens from the caller's wallet (approved) into its free market balance.
    function deposit(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        token.transferFrom(msg.sender, address(this), amount);
        accounts[msg.sender].free += amount;
        emit Deposited(msg.sender, amount);
    }

    function withdraw(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        Account storage a = accounts[msg.sender];
        if (a.free < amount) revert InsufficientBalance(msg.sender, amount, a.free);
        a.free -= amount;
        token.transfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ------------------------------------------------------------------ orders

    /// Place a batch atomically. The caller must own each device or be its owner's agent;
    /// the order's owner (and the escrow) is always the device owner.
    function placeOrders(OrderInput[] calldata input) external returns (uint256 firstOrderId) {
        firstOrderId = orderCount + 1;
        uint256 id = orderCount;
        for (uint256 k = 0; k < input.length; ++k) {
            id += 1;
            _placeOne(id, input[k]);
        }
        orderCount = id;
    }

    function _placeOne(uint256 id, OrderInput calldata o) private {
        DeviceRegistry.Device memory d = registry.get(o.device);
        if (d.status == 0) revert UnknownDevice(o.device);
        if (d.status == 2) revert DeviceRevoked(o.device);
        if (msg.sender != d.owner && !isAgent[d.owner][msg.sender]) revert NotDeviceOwner(o.device, msg.sender);
        if (o.energyWh <= 0) revert BadEnergy(o.device, o.energyWh);
        if (o.price <= 0 || uint256(o.price) > PRICE_MAX) revert BadPrice(o.device, o.price);
        IntervalState storage st = intervals[o.interval];
        if (st.status != OPEN) revert IntervalClosed(o.interval);
        Usage storage u = usage[o.interval][o.device];
        uint256 used;
        if (o.side == Side.BUY) {
            if (u.sellWh > 0) revert OppositeSide(o.device, o.interval);
            used = u.buyWh;
        } else {
            if (u.buyWh > 0) revert OppositeSide(o.device, o.interval);
            used = u.sellWh;
        }
        uint256 cap = (uint256(d.capacityW) * intervalS) / 3600;
        uint256 requested = used + uint256(o.energyWh); // used <= cap < 2**80: no overflow
        if (requested > cap) revert CapacityExceeded(o.device, cap, requested);
        uint256 energy = uint256(o.energyWh);
        uint256 price = uint256(o.price);
        uint256 escrow;
        if (o.side == Side.BUY) {
            escrow = payment(energy, price);
            Account storage a = accounts[d.owner];
            if (a.free < escrow) revert InsufficientBalance(d.owner, escrow, a.free);
            a.free -= escrow;
            a.locked += escrow;
            u.buyWh = uint64(requested);
            st.buyCount += 1;
        } else {
            u.sellWh = uint64(requested);
            st.sellCount += 1;
        }
        orders[id] = Order(d.owner, o.device, o.side, o.interval, uint64(energy), uint96(price));
        emit OrderPlaced(id, o.interval, o.device, d.owner, o.side, energy, price, escrow);
    }

    // ------------------------------------------------------------------ clearing

    struct Book {
        uint256[] ids;
        uint256[] energy;
        uint256[] price;
    }

    function clear(uint64 interval, uint64[] calldata bidIds, uint64[] calldata askIds) external onlyOperator {
        IntervalState storage st = intervals[interval];
        if (st.status != OPEN) revert AlreadyCleared(interval);
        Book memory bids = _loadBook(interval, Side.BUY, bidIds, st.buyCount);
        Book memory asks = _loadBook(interval, Side.SELL, askIds, st.sellCount);

        // Walk both lists (twin/market/clearing.py, match_orders).
        uint256 nb = bids.ids.length;
        uint256 na = asks.ids.length;
        uint256 maxFills = nb + na;
        uint256[] memory fb = new uint256[](maxFills);
        uint256[] memory fa = new uint256[](maxFills);
        uint256[] memory fq = new uint256[](maxFills);
        uint256 n;
        {
            uint256 i;
            uint256 j;
            uint256 remB = nb > 0 ? bids.energy[0] : 0;
            uint256 remA = na > 0 ? asks.energy[0] : 0;
            while (i < nb && j < na && bids.price[i] >= asks.price[j]) {
                uint256 q = remB < remA ? remB : remA;
                fb[n] = i;
                fa[n] = j;
                fq[n] = q;
                n += 1;
                remB -= q;
                remA -= q;
                if (remB == 0) {
                    i += 1;
                    if (i < nb) remB = bids.energy[i];
                }
                if (remA == 0) {
                    j += 1;
                    if (j < na) remA = asks.energy[j];
                }
            }
        }
        uint256 price = n > 0 ? (bids.price[fb[n - 1]] + asks.price[fa[n - 1]]) / 2 : 0;
        uint256[] memory kept = new uint256[](nb);
        uint256 volume;
        uint256 tid = tradeCount;
        uint256 devicesTraded;
        for (uint256 k = 0; k < n; ++k) {
            tid += 1;
            uint256 buyId = bids.ids[fb[k]];
            uint256 sellId = asks.ids[fa[k]];
            uint256 q = fq[k];
            trades[tid] = Trade(uint64(buyId), uint64(sellId), uint64(q), uint64(q));
            kept[fb[k]] += payment(q, price);
            volume += q;
            uint256 buyerDevice = orders[buyId].device;
            uint256 sellerDevice = orders[sellId].device;
            devicesTraded += _addPosition(interval, buyerDevice, int256(q));
            devicesTraded += _addPosition(interval, sellerDevice, -int256(q));
            emit TradeMatched(tid, interval, buyId, sellId, buyerDevice, sellerDevice, q, price);
        }
        // Release each bid's escrow beyond what its trades need.
        for (uint256 k = 0; k < nb; ++k) {
            uint256 release = payment(bids.energy[k], bids.price[k]) - kept[k];
            if (release > 0) {
                Account storage a = accounts[orders[bids.ids[k]].owner];
                a.locked -= release;
                a.free += release;
            }
        }
        st.status = CLEARED;
        st.price = uint96(price);
        st.volumeWh = uint64(volume);
        st.firstTrade = uint64(tradeCount + 1);
        st.tradeCount = uint32(n);
        st.tradedDevices = uint32(devicesTraded);
        tradeCount = tid;
        emit Cleared(interval, price, volume, tradeCount - n + 1, n);
    }

    function _loadBook(uint64 interval, Side side, uint64[] calldata ids, uint256 count)
        private
        view
        returns (Book memory b)
    {
        uint256 sideNo = uint256(side);
        if (ids.length != count) revert BadOrderList(sideNo, ids.length, 0);
        b.ids = new uint256[](count);
        b.energy = new uint256[](count);
        b.price = new uint256[](count);
        for (uint256 k = 0; k < count; ++k) {
            uint256 id = ids[k];
            Order storage o = orders[id];
            if (o.owner == address(0) || o.interval != interval || o.side != side) {
                revert BadOrderList(sideNo, k, id);
            }
            uint256 p = o.price;
            if (k > 0) {
                uint256 p0 = b.price[k - 1];
                bool better = side == Side.BUY ? p < p0 : p > p0;
                if (!(better || (p == p0 && id > b.ids[k - 1]))) revert BadOrderList(sideNo, k, id);
            }
            b.ids[k] = id;
            b.energy[k] = o.energyWh;
            b.price[k] = p;
        }
    }

    function _addPosition(uint64 interval, uint256 device, int256 wh) private returns (uint256 newDevice) {
        Position storage p = positions[interval][device];
        p.netWh += int96(wh);
        if (!p.traded) {
            p.traded = true;
            return 1;
        }
        return 0;
    }

    // ------------------------------------------------------------------ curtailment

    function curtail(uint256 tradeId, int256 energyWh) external onlyDSO {
        if (tradeId == 0 || tradeId > tradeCount) revert UnknownTrade(tradeId);
        Trade storage t = trades[tradeId];
        Order storage b = orders[t.buyOrder];
        uint64 interval = b.interval;
        IntervalState storage st = intervals[interval];
        if (st.status == SETTLED) revert AlreadySettled(interval);
        if (energyWh < 0) revert BadEnergy(b.device, energyWh);
        uint256 old = t.energyWh;
        if (uint256(energyWh) > old) revert CurtailIncrease(tradeId, old, energyWh);
        uint256 price = st.price;
        uint256 release = payment(old, price) - payment(uint256(energyWh), price);
        Account storage a = accounts[b.owner];
        a.locked -= release;
        a.free += release;
        int96 delta = int96(int256(old) - energyWh);
        positions[interval][b.device].netWh -= delta;
        positions[interval][orders[t.sellOrder].device].netWh += delta;
        t.energyWh = uint64(uint256(energyWh));
        emit Curtailed(tradeId, interval, old, uint256(energyWh), release);
    }

    // ------------------------------------------------------------------ settlement

    /// Settle an interval on metered energy (consumption positive), readings by strictly
    /// ascending device id. Trades are paid first (trade id order), then each device's
    /// imbalance against the DSO at the fixed tariffs; a payer short of free balance pays
    /// what it has and the remainder becomes debt.
    function settle(uint64 interval, uint64[] calldata devices, int256[] calldata meteredWh) external onlyOperator {
        IntervalState storage st = intervals[interval];
        if (st.status == OPEN) revert NotCleared(interval);
        if (st.status == SETTLED) revert AlreadySettled(interval);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        address[] memory owners = new address[](devices.length);
        uint256 covered;
        for (uint256 k = 0; k < devices.length; ++k) {
            if (k > 0 && devices[k] <= devices[k - 1]) revert BadReadings(k);
            DeviceRegistry.Device memory d = registry.get(devices[k]);
            if (d.status == 0) revert UnknownDevice(devices[k]);
            owners[k] = d.owner;
            if (positions[interval][devices[k]].traded) covered += 1;
        }
        uint256 first = st.firstTrade;
        uint256 end = first + st.tradeCount;
        if (covered != st.tradedDevices) _revertMissing(interval, devices, first, end);
        uint256 price = st.price;
        for (uint256 tid = first; tid < end; ++tid) {
            Trade storage t = trades[tid];
            Order storage b = orders[t.buyOrder];
            Order storage s = orders[t.sellOrder];
            uint256 amount = payment(t.energyWh, price);
            accounts[b.owner].locked -= amount;
            accounts[s.owner].free += amount;
            positions[interval][b.device].money -= int96(int256(amount));
            positions[interval][s.device].money += int96(int256(amount));
        }
        for (uint256 k = 0; k < devices.length; ++k) {
            _settleDevice(interval, devices[k], owners[k], meteredWh[k]);
        }
        st.status = SETTLED;
        emit IntervalSettled(interval, devices.length);
    }

    function _settleDevice(uint64 interval, uint256 device, address owner, int256 metered) private {
        Position storage p = positions[interval][device];
        int256 imbalance = metered - p.netWh;
        int256 moved;
        uint256 debt;
        if (imbalance > 0) {
            (uint256 paid, uint256 unpaid) = _charge(owner, dso, payment(uint256(imbalance), retailPricePerMwh));
            moved = -int256(paid);
            debt = unpaid;
        } else if (imbalance < 0) {
            (uint256 paid, uint256 unpaid) = _charge(dso, owner, payment(uint256(-imbalance), feedInPricePerMwh));
            moved = int256(paid);
            debt = unpaid;
        }
        emit Settled(interval, device, owner, p.netWh, metered, imbalance, p.money, moved, debt);
    }

    function _charge(address payer, address payee, uint256 due) private returns (uint256 paid, uint256 unpaid) {
        Account storage a = accounts[payer];
        paid = a.free < due ? a.free : due;
        unpaid = due - paid;
        a.free -= paid;
        a.debt += unpaid;
        accounts[payee].free += paid;
    }

    function _revertMissing(uint64 interval, uint64[] calldata devices, uint256 first, uint256 end) private view {
        uint256 best = type(uint256).max;
        for (uint256 tid = first; tid < end; ++tid) {
            Trade storage t = trades[tid];
            uint256 bd = orders[t.buyOrder].device;
            uint256 sd = orders[t.sellOrder].device;
            if (bd < best && !_contains(devices, bd)) best = bd;
            if (sd < best && !_contains(devices, sd)) best = sd;
        }
        revert MissingMeterReading(best, interval);
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

    // ------------------------------------------------------------------ read-outs

    function balanceOf(address account) external view returns (uint256 free, uint256 locked, uint256 debt) {
        Account storage a = accounts[account];
        return (a.free, a.locked, a.debt);
    }
}
