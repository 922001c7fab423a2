// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title SettlementToken — the market's money: an ERC-20 with 6 decimals (one base unit
/// is one micro-unit of currency), minted only by the market operator.
/// @notice Tokens are never burned; totalSupply == sum of wallets + the market's holdings.
contract SettlementToken {
    string public constant name = "gridtwin settlement token";
    string public constant symbol = "GTS";
    uint8 public constant decimals = 6;

    address public immutable operator;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    error NotOperator(address account);
    error InsufficientTokens(address account, uint256 needed, uint256 available);
    error InsufficientAllowance(address account, address spender, uint256 needed, uint256 available);
    /// Tokens sent or minted to 0x0 would vanish from every balance but stay in totalSupply.
    error UnsafeRecipient(address to);
    error MintBatchLengths(uint256 recipients, uint256 amounts);

    constructor(address operator_) {
        operator = operator_;
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _mint(to, amount);
    }

    /// ``mint`` to many wallets in one transaction (the first unsafe recipient reverts it).
    function mintBatch(address[] calldata to, uint256[] calldata amounts) external {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        if (amounts.length != to.length) revert MintBatchLengths(to.length, amounts.length);
        for (uint256 i = 0; i < to.length; ++i) {
            _mint(to[i], amounts[i]);
        }
    }

    function _mint(address to, uint256 amount) private {
        if (to == address(0)) revert UnsafeRecipient(to);
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(from, msg.sender, amount, allowed);
            allowance[from][msg.sender] = allowed - amount;
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (to == address(0)) revert UnsafeRecipient(to);
        uint256 have = balanceOf[from];
        if (have < amount) revert InsufficientTokens(from, amount, have);
        unchecked {
            balanceOf[from] = have - amount;
        }
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
