// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title GreenCurrency — an ERC-20-like incentive token (6 decimals) that the market
/// operator mints to device owners for renewable consumption and for delivered demand
/// response (the Shanghai VPP platform's green currency).
/// @notice Mirrors twin/market/green_currency.py (GreenCurrency) exactly: an award of wh to a
/// device mints (carry + wh * rate) / 1000 micro-tokens to its owner, the remainder stays in
/// the device's carry (per reason); awards of one reason and reference (interval or event)
/// go by strictly ascending device id, across calls; totalSupply == minted - burned.
contract GreenCurrency {
    uint256 public constant WH_PER_KWH = 1000;
    uint256 public constant RATE_MAX = 1e12;

    string public constant name = "gridtwin green currency";
    string public constant symbol = "GRC";
    uint8 public constant decimals = 6;

    DeviceRegistry public immutable registry;
    address public immutable operator;
    uint256 public immutable rateRenewable; // micro-tokens per kWh
    uint256 public immutable rateDr;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(uint256 => mapping(uint256 => uint256)) public carry; // reason => device => rest
    mapping(uint256 => mapping(uint256 => uint256)) internal _next; // reason => ref => last + 1
    uint256 public minted;
    uint256 public burned;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);
    event Awarded(uint256 indexed reason, uint256 indexed ref, uint256 indexed device, address owner, uint256 energyWh, uint256 amount);

    error NotOperator(address account);
    error BadReadings(uint256 position);
    error UnknownDevice(uint256 device);
    error BadEnergy(uint256 device, int256 energy);
    error BadAmount(uint256 amount);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error AllowanceExceeded(address owner, address spender, uint256 needed, uint256 available);
    /// A transfer to 0x0 would destroy tokens outside ``burn`` (which counts them).
    error UnsafeRecipient(address to);

    constructor(DeviceRegistry registry_, address operator_, uint256 rateRenewable_, uint256 rateDr_) {
        if (rateRenewable_ > RATE_MAX) revert BadAmount(rateRenewable_);
        if (rateDr_ > RATE_MAX) revert BadAmount(rateDr_);
        registry = registry_;
        operator = operator_;
        rateRenewable = rateRenewable_;
        rateDr = rateDr_;
    }

    function totalSupply() external view returns (uint256) {
        return minted - burned;
    }

    /// Mint awards: reason 0 renewable consumption (ref = interval), 1 demand response
    /// (ref = event id); devices strictly ascending per (reason, ref), across calls.
    function reward(uint8 reason, uint256 ref, uint64[] calldata devices, int256[] calldata energyWh) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        if (reason > 1) revert BadAmount(reason);
        if (devices.length != energyWh.length) revert BadReadings(devices.length);
        uint256 rate = reason == 0 ? rateRenewable : rateDr;
        uint256 next = _next[reason][ref];
        for (uint256 k = 0; k < devices.length; ++k) {
            uint256 device = devices[k];
            if (device < next) revert BadReadings(k);
            next = device + 1;
            DeviceRegistry.Device memory d = registry.get(device);
            if (d.status == 0) revert UnknownDevice(device);
            int256 wh = energyWh[k];
            if (wh < 0 || wh >= 2 ** 64) revert BadEnergy(device, wh);
            uint256 total = carry[reason][device] + uint256(wh) * rate;
            uint256 amount = total / WH_PER_KWH;
            carry[reason][device] = total % WH_PER_KWH;
            if (amount > 0) {
                balanceOf[d.owner] += amount;
                minted += amount;
                emit Transfer(address(0), d.owner, amount);
            }
            emit Awarded(reason, ref, device, d.owner, uint256(wh), amount);
        }
        _next[reason][ref] = next;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        if (amount == 0) revert BadAmount(amount);
        _move(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (amount == 0) revert BadAmount(amount);
        uint256 allowed = allowance[from][msg.sender];
        if (allowed < amount) revert AllowanceExceeded(from, msg.sender, amount, allowed);
        _move(from, to, amount);
        allowance[from][msg.sender] = allowed - amount;
        return true;
    }

    function burn(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        uint256 have = balanceOf[msg.sender];
        if (have < amount) revert InsufficientBalance(msg.sender, amount, have);
        balanceOf[msg.sender] = have - amount;
        burned += amount;
        emit Transfer(msg.sender, address(0), amount);
    }

    function _move(address from, address to, uint256 amount) private {
        if (to == address(0)) revert UnsafeRecipient(to);
        uint256 have = balanceOf[from];
        if (have < amount) revert InsufficientBalance(from, amount, have);
        balanceOf[from] = have - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
