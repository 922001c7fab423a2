// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {EnergyMarket} from "./EnergyMarket.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";
import {MarketOrders} from "./OrderWords.sol";

interface IERC1155Receiver {
    function onERC1155Received(address operator, address from, uint256 id, uint256 value, bytes calldata data)
        external
        returns (bytes4);

    function onERC1155BatchReceived(
        address operator,
        address from,
        uint256[] calldata ids,
        uint256[] calldata values,
        bytes calldata data
    ) external returns (bytes4);
}

/// @title GreenCertificate — ERC-1155 (written by hand): one certificate per delivered
/// renewable kWh, token id = the delivery interval (vintage), minted to the buyer, retirable.
/// @notice Mirrors twin/market/certificates.py (CertificateLedger) exactly. Certificates
/// come only from the market's settled state: for each trade of a settled interval (trade
/// id order) whose seller is a registered PV device, delivered = min(trade energy after
/// curtailment, the seller's metered injection not yet certified); the seller's Wh carry
/// plus delivered gives whole kWh minted to the buyer device's owner, the remainder carries
/// to the seller's next trade. Anyone may trigger issue(): it only reads the chain.
/// @dev Deviations from ERC-1155, on purpose: minting does not call onERC1155Received (a
/// hostile buyer contract must not block an interval's issuance; it can still move or
/// retire its certificates), and zero-amount transfers revert BadAmount like the reference.
contract GreenCertificate {
    uint256 public constant WH_PER_CERTIFICATE = 1000;
    uint8 internal constant PV = 1; // DeviceKind.PV: the renewable kinds
    uint8 internal constant SETTLED = 2;

    EnergyMarket public immutable market;
    DeviceRegistry public immutable registry;

    mapping(uint256 => mapping(address => uint256)) private _balances; // id => holder
    mapping(address => mapping(address => bool)) public isApprovedForAll;
    mapping(uint256 => uint256) public carryWh; // seller device => Wh not yet certified
    mapping(uint256 => mapping(uint256 => uint256)) public certifiedWh; // interval => seller => Wh used
    mapping(uint256 => uint256) public issuedTrades; // interval => trades processed
    mapping(uint256 => bool) public issued; // interval fully issued
    uint256 public minted;
    uint256 public retired;

    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );
    event TransferBatch(
        address indexed operator, address indexed from, address indexed to, uint256[] ids, uint256[] values
    );
    event ApprovalForAll(address indexed account, address indexed operator, bool approved);
    event URI(string value, uint256 indexed id);
    event Issued(uint256 indexed interval, uint256 trades, bool done);
    event Retired(address indexed holder, uint256 indexed id, uint256 value);

    error NotSettled(uint256 interval);
    error AlreadySettled(uint256 interval);
    error BadAmount(uint256 amount);
    error InsufficientBalance(address account, uint256 needed, uint256 available);
    error NotApproved(address owner, address operator);
    error UnsafeRecipient(address to);
    error BadReadings(uint256 position);

    constructor(EnergyMarket market_) {
        market = market_;
        registry = market_.registry();
    }

    // ------------------------------------------------------------------ issuance

    /// Mint the certificates of up to ``maxTrades`` more trades of a settled interval;
    /// true when the interval is done (then it can never be issued again).
    function issue(uint64 interval, uint256 maxTrades) external returns (bool done) {
        if (issued[interval]) revert AlreadySettled(interval);
        (uint8 status,,,,, uint64 firstTrade, uint32 tradeCount,) = market.intervals(interval);
        if (status != SETTLED) revert NotSettled(interval);
        uint256 k = issuedTrades[interval];
        uint256 stop = maxTrades >= tradeCount - k ? tradeCount : k + maxTrades;
        for (; k < stop; ++k) {
            _issueTrade(interval, firstTrade + k);
        }
        issuedTrades[interval] = stop;
        done = stop == tradeCount;
        if (done) issued[interval] = true;
        emit Issued(interval, stop, done);
    }

    function _issueTrade(uint64 interval, uint256 tid) private {
        (uint64 buyOrder, uint64 sellOrder,, uint64 energyWh) = market.trades(tid);
        if (energyWh == 0) return;
        (uint64 seller,,,,) = MarketOrders(address(market)).orders(sellOrder);
        if (registry.get(seller).kind != PV) return;
        uint256 left = market.injectedWh(interval, seller) - certifiedWh[interval][seller];
        uint256 delivered = energyWh < left ? energyWh : left;
        certifiedWh[interval][seller] += delivered;
        uint256 carry = carryWh[seller] + delivered;
        uint256 n = carry / WH_PER_CERTIFICATE;
        carryWh[seller] = carry % WH_PER_CERTIFICATE;
        if (n > 0) {
            (uint64 buyer,,,,) = MarketOrders(address(market)).orders(buyOrder);
            address to = registry.get(buyer).owner;
            _balances[interval][to] += n;
            minted += n;
            emit TransferSingle(msg.sender, address(0), to, interval, n);
        }
    }

    // ------------------------------------------------------------------ retirement

    /// Burn the caller's certificates of a vintage for good (a claim of green consumption).
    function retire(uint256 id, uint256 amount) external {
        _take(msg.sender, id, amount);
        retired += amount;
        emit TransferSingle(msg.sender, msg.sender, address(0), id, amount);
        emit Retired(msg.sender, id, amount);
    }

    // ------------------------------------------------------------------ ERC-1155

    function balanceOf(address account, uint256 id) external view returns (uint256) {
        return _balances[id][account];
    }

    function balanceOfBatch(address[] calldata accounts, uint256[] calldata ids)
        external
        view
        returns (uint256[] memory out)
    {
        if (accounts.length != ids.length) revert BadReadings(accounts.length);
        out = new uint256[](accounts.length);
        for (uint256 k = 0; k < accounts.length; ++k) {
            out[k] = _balances[ids[k]][accounts[k]];
        }
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function safeTransferFrom(address from, address to, uint256 id, uint256 amount, bytes calldata data) external {
        _authorized(from, to);
        _take(from, id, amount);
        _balances[id][to] += amount;
        emit TransferSingle(msg.sender, from, to, id, amount);
        if (to.code.length > 0) {
            try IERC1155Receiver(to).onERC1155Received(msg.sender, from, id, amount, data) returns (bytes4 r) {
                if (r != IERC1155Receiver.onERC1155Received.selector) revert UnsafeRecipient(to);
            } catch {
                revert UnsafeRecipient(to);
            }
        }
    }

    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] calldata ids,
        uint256[] calldata amounts,
        bytes calldata data
    ) external {
        _authorized(from, to);
        if (ids.length != amounts.length) revert BadReadings(ids.length);
        for (uint256 k = 0; k < ids.length; ++k) {
            _take(from, ids[k], amounts[k]);
            _balances[ids[k]][to] += amounts[k];
        }
        emit TransferBatch(msg.sender, from, to, ids, amounts);
        if (to.code.length > 0) {
            try IERC1155Receiver(to).onERC1155BatchReceived(msg.sender, from, ids, amounts, data) returns (bytes4 r) {
                if (r != IERC1155Receiver.onERC1155BatchReceived.selector) revert UnsafeRecipient(to);
            } catch {
                revert UnsafeRecipient(to);
            }
        }
    }

    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == 0x01ffc9a7 // ERC-165
            || interfaceId == 0xd9b67a26 // ERC-1155
            || interfaceId == 0x0e89341c; // ERC-1155 metadata URI
    }

    function uri(uint256) external pure returns (string memory) {
        return "gridtwin:green-certificate:{id}";
    }

    function _authorized(address from, address to) private view {
        if (msg.sender != from && !isApprovedForAll[from][msg.sender]) revert NotApproved(from, msg.sender);
        if (to == address(0)) revert UnsafeRecipient(to);
    }

    function _take(address from, uint256 id, uint256 amount) private {
        if (amount == 0) revert BadAmount(amount);
        uint256 have = _balances[id][from];
        if (have < amount) revert InsufficientBalance(from, amount, have);
        _balances[id][from] = have - amount;
    }
}
