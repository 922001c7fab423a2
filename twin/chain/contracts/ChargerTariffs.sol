// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title ChargerTariffs — shared private EV chargers (Share&Charge): each owner posts a
/// tariff within the operator's bounds, drivers escrow money, a session locks
/// payment(maxWh, tariff at start) and the meter operator ends it on the metered energy,
/// paying payment(meteredWh, tariff at start) from the driver's escrow to the owner.
/// @notice Mirrors twin/market/charger_tariffs.py (ChargerTariffs) exactly: a tariff change
/// applies only to sessions started later; one open session per charger; the contract's
/// settlement tokens == sum of free + locked escrow.
/// @dev Roles: a charger's owner (registry) sets its tariff; the registry's DSO is the meter
/// operator; any account may drive (escrow, start a session).
contract ChargerTariffs {
    uint256 public constant WH_PER_MWH = 1e6;
    uint8 public constant EV = 2;

    struct Session {
        uint64 charger;
        bool open;
        address owner;
        address driver;
        uint96 price;
        uint64 maxWh;
        uint64 meteredWh;
        uint128 locked;
        uint128 amount;
    }

    struct Tariff {
        bool set;
        uint96 price;
    }

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    address public immutable meterOperator;
    uint256 public immutable tariffMin;
    uint256 public immutable tariffMax;
    uint256 public immutable minLock;

    mapping(uint256 => Tariff) public tariffs;
    mapping(uint256 => uint256) internal _openPlusOne; // charger => open session id + 1
    mapping(address => uint256) public freeOf;
    mapping(address => uint256) public lockedOf;
    Session[] internal _sessions;

    event TariffSet(uint256 indexed charger, address indexed owner, uint256 price);
    event Deposited(address indexed driver, uint256 amount);
    event Withdrawn(address indexed driver, uint256 amount);
    event SessionStarted(uint256 indexed sessionId, uint256 indexed charger, address owner, address driver, uint256 price, uint256 maxWh, uint256 locked);
    event SessionEnded(uint256 indexed sessionId, uint256 indexed charger, uint256 meteredWh, uint256 amount);

    error NotDSO(address account);
    error UnknownDevice(uint256 device);
    error NotACharger(uint256 device);
    error NotDeviceOwner(uint256 device, address account);
    error TariffOutOfRange(uint256 charger, int256 price, uint256 min_price, uint256 max_price);
    error NoTariff(uint256 charger);
    error ChargerBusy(uint256 charger, uint256 session);
    error BadEnergy(uint256 device, int256 energy);
    error BadAmount(uint256 amount);
    error BadPrice(uint256 device, int256 price);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error UnknownSession(uint256 session);
    error SessionClosed(uint256 session);
    error MeterOutOfRange(uint256 device, uint256 cap, uint256 metered);
    error TariffAboveLimit(uint256 charger, uint256 price, uint256 max_price);
    error LockBelowMinimum(uint256 charger, uint256 lock, uint256 min_lock);

    constructor(SettlementToken token_, DeviceRegistry registry_, uint256 min_, uint256 max_, uint256 minLock_) {
        if (min_ > 1e11) revert BadPrice(0, int256(min_));
        if (max_ < min_ || max_ > 1e11) revert BadPrice(0, int256(max_));
        token = token_;
        registry = registry_;
        meterOperator = registry_.dso();
        tariffMin = min_;
        tariffMax = max_;
        minLock = minLock_;
    }

    function payment(uint256 energyWh, uint256 pricePerMwh) public pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    function _charger(uint256 charger) private view returns (DeviceRegistry.Device memory d) {
        d = registry.get(charger);
        if (d.status == 0) revert UnknownDevice(charger);
        if (d.kind != EV) revert NotACharger(charger);
    }

    /// The charger's owner posts its tariff (applies to sessions started from now on).
    function setTariff(uint64 charger, int256 price) external {
        DeviceRegistry.Device memory d = _charger(charger);
        if (msg.sender != d.owner) revert NotDeviceOwner(charger, msg.sender);
        if (price < int256(tariffMin) || price > int256(tariffMax)) {
            revert TariffOutOfRange(charger, price, tariffMin, tariffMax);
        }
        tariffs[charger] = Tariff(true, uint96(uint256(price)));
        emit TariffSet(charger, msg.sender, uint256(price));
    }

    function deposit(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        uint256 cash = token.balanceOf(msg.sender);
        if (cash < amount) revert InsufficientBalance(msg.sender, amount, cash);
        freeOf[msg.sender] += amount;
        emit Deposited(msg.sender, amount);
        token.transferFrom(msg.sender, address(this), amount);
    }

    function withdraw(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        uint256 free = freeOf[msg.sender];
        if (free < amount) revert InsufficientBalance(msg.sender, amount, free);
        freeOf[msg.sender] = free - amount;
        emit Withdrawn(msg.sender, amount);
        token.transfer(msg.sender, amount);
    }

    /// A session locks at least ``minLock`` (LockBelowMinimum): holding a charger with a 1 Wh
    /// session ties up at least ``minLock`` of the driver's money until the session ends.
    /// The caller (driver) starts a session with an energy cap, at the tariff now in force,
    /// which must not exceed the driver's ``maxPrice`` (an owner raising the tariff in front
    /// of the driver's transaction makes it revert, not overcharge); the price is then locked.
    function startSession(uint64 charger, int256 maxWh, uint256 maxPrice) external returns (uint256 sessionId) {
        DeviceRegistry.Device memory d = _charger(charger);
        Tariff memory t = tariffs[charger];
        if (!t.set) revert NoTariff(charger);
        if (t.price > maxPrice) revert TariffAboveLimit(charger, t.price, maxPrice);
        uint256 busy = _openPlusOne[charger];
        if (busy != 0) revert ChargerBusy(charger, busy - 1);
        if (maxWh <= 0 || maxWh >= 2 ** 64) revert BadEnergy(charger, maxWh);
        uint256 lock = payment(uint256(maxWh), t.price);
        if (lock < minLock) revert LockBelowMinimum(charger, lock, minLock);
        uint256 free = freeOf[msg.sender];
        if (free < lock) revert InsufficientBalance(msg.sender, lock, free);
        freeOf[msg.sender] = free - lock;
        lockedOf[msg.sender] += lock;
        sessionId = _sessions.length;
        _sessions.push(Session(charger, true, d.owner, msg.sender, t.price, uint64(uint256(maxWh)), 0, uint128(lock), 0));
        _openPlusOne[charger] = sessionId + 1;
        emit SessionStarted(sessionId, charger, d.owner, msg.sender, t.price, uint256(maxWh), lock);
    }

    /// The meter operator ends a session on its metered energy; the owner is paid.
    function endSession(uint256 sessionId, int256 meteredWh) external {
        if (msg.sender != meterOperator) revert NotDSO(msg.sender);
        if (sessionId >= _sessions.length) revert UnknownSession(sessionId);
        Session storage s = _sessions[sessionId];
        if (!s.open) revert SessionClosed(sessionId);
        if (meteredWh < 0) revert BadEnergy(s.charger, meteredWh);
        if (uint256(meteredWh) > s.maxWh) revert MeterOutOfRange(s.charger, s.maxWh, uint256(meteredWh));
        uint256 amount = payment(uint256(meteredWh), s.price);
        s.open = false;
        s.meteredWh = uint64(uint256(meteredWh));
        s.amount = uint128(amount);
        lockedOf[s.driver] -= s.locked;
        freeOf[s.driver] += s.locked - amount;
        delete _openPlusOne[s.charger];
        emit SessionEnded(sessionId, s.charger, uint256(meteredWh), amount);
        if (amount > 0) token.transfer(s.owner, amount);
    }

    function sessionCount() external view returns (uint256) {
        return _sessions.length;
    }

    function session(uint256 sessionId) external view returns (Session memory) {
        if (sessionId >= _sessions.length) revert UnknownSession(sessionId);
        return _sessions[sessionId];
    }

    function openSession(uint256 charger) external view returns (bool, uint256) {
        uint256 p = _openPlusOne[charger];
        return (p != 0, p == 0 ? 0 : p - 1);
    }
}
