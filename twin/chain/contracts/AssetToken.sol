// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";

/// A holder contract may book claimed revenue (e.g. a VPP treasury); called after payment.
interface IRevenueReceiver {
    function onRevenueClaimed(uint256 assetId, uint256 amount) external;
}

/// @title AssetToken — real-world-asset shares of one PV plant or community battery, with
/// the asset's revenue (settlement tokens) distributed pro rata and pulled by the holders.
/// @notice Mirrors twin/market/assets.py (AssetLedger) exactly: acc += amount * 2**128 /
/// totalShares per distribution; claimable = (acc * shares + correction) / 2**128 - claimed;
/// a share transfer moves the past revenue's correction so it stays with the seller. Floor
/// rounding never favours a holder; the dust stays in the contract.
/// @dev Pull payments: a claim moves only the caller's money, state first, then the token
/// transfer, then the holder contract's notification (the reentrancy surface), all under a
/// lock: a reentrant claim/transfer/distribute reverts with Reentrancy().
contract AssetToken {
    uint256 public constant MAGNITUDE = 2 ** 128;

    SettlementToken public immutable token;
    uint256 public immutable assetId;
    uint256 public immutable totalShares;

    uint256 public acc;
    uint256 public distributed;
    mapping(address => uint256) public sharesOf;
    mapping(address => int256) public correction;
    mapping(address => uint256) public claimed;
    uint256 private _lock = 1;

    event SharesTransferred(address indexed from, address indexed to, uint256 shares);
    event RevenueDistributed(address indexed payer, uint256 amount);
    event RevenueClaimed(address indexed holder, uint256 amount);

    error BadAmount(uint256 amount);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error Reentrancy();

    modifier nonReentrant() {
        if (_lock != 1) revert Reentrancy();
        _lock = 2;
        _;
        _lock = 1;
    }

    constructor(SettlementToken token_, uint256 assetId_, address issuer, uint256 totalShares_) {
        if (totalShares_ == 0) revert BadAmount(totalShares_);
        token = token_;
        assetId = assetId_;
        totalShares = totalShares_;
        sharesOf[issuer] = totalShares_;
        emit SharesTransferred(address(0), issuer, totalShares_);
    }

    function transfer(address to, uint256 shares) external nonReentrant {
        if (shares == 0) revert BadAmount(shares);
        uint256 have = sharesOf[msg.sender];
        if (have < shares) revert InsufficientBalance(msg.sender, shares, have);
        sharesOf[msg.sender] = have - shares;
        sharesOf[to] += shares;
        int256 moved = int256(acc * shares);
        correction[msg.sender] += moved;
        correction[to] -= moved;
        emit SharesTransferred(msg.sender, to, shares);
    }

    /// Revenue of the asset, paid in by anyone (normally the asset's market account).
    function distribute(uint256 amount) external nonReentrant {
        if (amount == 0) revert BadAmount(amount);
        token.transferFrom(msg.sender, address(this), amount);
        acc += (amount * MAGNITUDE) / totalShares;
        distributed += amount;
        emit RevenueDistributed(msg.sender, amount);
    }

    function claimable(address holder) public view returns (uint256) {
        // acc * shares + correction = sum over holding periods of revenue per share * shares >= 0
        int256 earned = (int256(acc * sharesOf[holder]) + correction[holder]) / int256(MAGNITUDE);
        return uint256(earned) - claimed[holder];
    }

    /// Pay the caller what it has earned so far (0 is a no-op, never a double pay).
    function claim() external nonReentrant returns (uint256 amount) {
        amount = claimable(msg.sender);
        claimed[msg.sender] += amount;
        if (amount > 0) token.transfer(msg.sender, amount);
        emit RevenueClaimed(msg.sender, amount);
        if (msg.sender.code.length > 0) {
            // Best effort: a holder contract without the hook can still claim.
            try IRevenueReceiver(msg.sender).onRevenueClaimed(assetId, amount) {} catch {}
        }
    }
}
