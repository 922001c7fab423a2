// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title GreenTokenExchange — fixed-price green tokens through the DSO (EU Scanergy):
/// 1 token = 1 kWh of metered green (PV) injection, minted to the device's owner; holders
/// sell tokens to the DSO at the fixed buy price, consumers buy them from the DSO's stock
/// at the fixed sell price and redeem them against their metered consumption.
/// @notice Mirrors twin/market/green_exchange.py (GreenExchange) exactly: per PV device a
/// Wh carry (whole kWh minted, the remainder kept, never rounded up); readings by strictly
/// ascending device id within an interval, across calls; money = payment(tokens * 1000,
/// price) moved wallet to wallet (the exchange holds no money); totalSupply == minted -
/// redeemed; 1000 * minted + sum(carry) == deliveredWh.
/// @dev Roles: the DSO (the registry's) records meters and is the exchange's counterparty;
/// it approves this contract for its settlement tokens, and so does each buyer.
contract GreenTokenExchange {
    uint256 public constant WH_PER_MWH = 1e6;
    uint256 public constant WH_PER_TOKEN = 1000;
    uint8 public constant PV = 1;

    string public constant name = "gridtwin green token (1 kWh)";
    string public constant symbol = "GKWH";
    uint8 public constant decimals = 0;

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    address public immutable dso;
    uint256 public buyPricePerMwh; // the DSO may move both (setPrices): a market rate
    uint256 public sellPricePerMwh;

    mapping(address => uint256) public balanceOf;
    mapping(uint256 => uint256) public carryWh; // device => green Wh not yet minted
    mapping(uint256 => uint256) public uncoveredWh; // device => metered consumption not redeemed
    mapping(uint256 => uint256) public greenSuppliedWh; // device => redeemed Wh
    mapping(uint256 => uint256) internal _next; // interval => last recorded device + 1
    uint256 public minted;
    uint256 public redeemed;
    uint256 public deliveredWh;
    uint256 public paid;
    uint256 public received;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event GreenDelivered(uint256 indexed interval, uint256 indexed device, address owner, uint256 injectedWh, uint256 tokens);
    event Traded(address indexed account, bool toDso, uint256 tokens, uint256 amount);
    event Redeemed(uint256 indexed device, address indexed owner, uint256 tokens);
    event PricesSet(uint256 buyPricePerMwh, uint256 sellPricePerMwh);

    error NotDSO(address account);
    error BadReadings(uint256 position);
    error UnknownDevice(uint256 device);
    error NotDeviceOwner(uint256 device, address account);
    error BadAmount(uint256 amount);
    error BadPrice(uint256 device, int256 price);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error CapacityExceeded(uint256 device, uint256 cap, uint256 requested);
    error SelfTrade(address account);

    constructor(SettlementToken token_, DeviceRegistry registry_, uint256 buyPrice, uint256 sellPrice) {
        if (buyPrice == 0 || buyPrice > 1e11) revert BadPrice(0, int256(buyPrice));
        if (sellPrice == 0 || sellPrice > 1e11) revert BadPrice(0, int256(sellPrice));
        // buying above the selling price would let anyone buy-then-sell the DSO's money away
        if (buyPrice > sellPrice) revert BadPrice(0, int256(buyPrice));
        token = token_;
        registry = registry_;
        dso = registry_.dso();
        buyPricePerMwh = buyPrice;
        sellPricePerMwh = sellPrice;
    }

    /// The DSO moves the token's prices (a market rate; fixed prices never call this).
    function setPrices(uint256 buyPrice, uint256 sellPrice) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        if (buyPrice == 0 || buyPrice > 1e11) revert BadPrice(0, int256(buyPrice));
        if (sellPrice == 0 || sellPrice > 1e11) revert BadPrice(0, int256(sellPrice));
        buyPricePerMwh = buyPrice;
        sellPricePerMwh = sellPrice;
        emit PricesSet(buyPrice, sellPrice);
    }

    function payment(uint256 energyWh, uint256 pricePerMwh) public pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    function totalSupply() external view returns (uint256) {
        return minted - redeemed;
    }

    /// Metered readings of one interval (consumption positive), by strictly ascending device.
    function recordMeters(uint256 interval, uint64[] calldata devices, int64[] calldata meteredWh) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        if (devices.length != meteredWh.length) revert BadReadings(devices.length);
        uint256 next = _next[interval];
        for (uint256 k = 0; k < devices.length; ++k) {
            uint256 device = devices[k];
            if (device < next) revert BadReadings(k);
            next = device + 1;
            DeviceRegistry.Device memory d = registry.get(device);
            if (d.status == 0) revert UnknownDevice(device);
            int256 wh = meteredWh[k];
            if (wh > 0) {
                uncoveredWh[device] += uint256(wh);
            } else if (wh < 0 && d.kind == PV) {
                uint256 injected = uint256(-wh);
                uint256 carry = carryWh[device] + injected;
                uint256 n = carry / WH_PER_TOKEN;
                carryWh[device] = carry % WH_PER_TOKEN;
                deliveredWh += injected;
                if (n > 0) {
                    balanceOf[d.owner] += n;
                    minted += n;
                    emit Transfer(address(0), d.owner, n);
                }
                emit GreenDelivered(interval, device, d.owner, injected, n);
            }
        }
        _next[interval] = next;
    }

    /// The caller sells tokens to the DSO at the fixed buy price.
    function sell(uint256 tokens) external returns (uint256 amount) {
        if (msg.sender == dso) revert SelfTrade(msg.sender);
        if (tokens == 0) revert BadAmount(tokens);
        uint256 have = balanceOf[msg.sender];
        if (have < tokens) revert InsufficientBalance(msg.sender, tokens, have);
        amount = payment(tokens * WH_PER_TOKEN, buyPricePerMwh);
        uint256 cash = token.balanceOf(dso);
        if (cash < amount) revert InsufficientBalance(dso, amount, cash);
        balanceOf[msg.sender] = have - tokens;
        balanceOf[dso] += tokens;
        paid += amount;
        emit Transfer(msg.sender, dso, tokens);
        emit Traded(msg.sender, true, tokens, amount);
        if (amount > 0) token.transferFrom(dso, msg.sender, amount);
    }

    /// The caller buys tokens from the DSO's stock at the fixed sell price.
    function buy(uint256 tokens) external returns (uint256 amount) {
        if (msg.sender == dso) revert SelfTrade(msg.sender);
        if (tokens == 0) revert BadAmount(tokens);
        uint256 stock = balanceOf[dso];
        if (stock < tokens) revert InsufficientBalance(dso, tokens, stock);
        amount = payment(tokens * WH_PER_TOKEN, sellPricePerMwh);
        uint256 cash = token.balanceOf(msg.sender);
        if (cash < amount) revert InsufficientBalance(msg.sender, amount, cash);
        balanceOf[dso] = stock - tokens;
        balanceOf[msg.sender] += tokens;
        received += amount;
        emit Transfer(dso, msg.sender, tokens);
        emit Traded(msg.sender, false, tokens, amount);
        if (amount > 0) token.transferFrom(msg.sender, dso, amount);
    }

    function transfer(address to, uint256 tokens) external returns (bool) {
        if (tokens == 0) revert BadAmount(tokens);
        uint256 have = balanceOf[msg.sender];
        if (have < tokens) revert InsufficientBalance(msg.sender, tokens, have);
        balanceOf[msg.sender] = have - tokens;
        balanceOf[to] += tokens;
        emit Transfer(msg.sender, to, tokens);
        return true;
    }

    /// The device's owner burns tokens against the device's uncovered metered consumption.
    function redeem(uint64 device, uint256 tokens) external {
        DeviceRegistry.Device memory d = registry.get(device);
        if (d.status == 0) revert UnknownDevice(device);
        if (msg.sender != d.owner) revert NotDeviceOwner(device, msg.sender);
        if (tokens == 0) revert BadAmount(tokens);
        uint256 uncovered = uncoveredWh[device];
        uint256 wh = tokens * WH_PER_TOKEN;
        if (wh > uncovered) revert CapacityExceeded(device, uncovered, wh);
        uint256 have = balanceOf[msg.sender];
        if (have < tokens) revert InsufficientBalance(msg.sender, tokens, have);
        balanceOf[msg.sender] = have - tokens;
        uncoveredWh[device] = uncovered - wh;
        greenSuppliedWh[device] += wh;
        redeemed += tokens;
        emit Transfer(msg.sender, address(0), tokens);
        emit Redeemed(device, msg.sender, tokens);
    }
}
