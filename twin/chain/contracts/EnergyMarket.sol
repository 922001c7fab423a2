// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";
import {CdaMatching} from "./CdaMatching.sol";
import {MarketSettlement} from "./MarketSettlement.sol";
import {ProvisionalSettlement} from "./ProvisionalSettlement.sol";
import {DailySchedules} from "./DailySchedules.sol";
import {OrderWord, OrderWords} from "./OrderWords.sol";

/// @title EnergyMarket — local energy market with buyer escrow, uniform-price double auction or
/// continuous double auction (library CdaMatching), DSO curtailment and settlement on metered energy.
/// @notice Mirrors twin/market/reference.py exactly (same integer arithmetic, same ids,
/// same custom errors). Units: energy in Wh, prices in micro-units per MWh, money in
/// token base units (micro-units). payment(e, p) = e * p / 1e6 (floor).
/// @dev Sorting is done off-chain: clear() receives the bid and ask id lists and verifies
/// in O(n) that each is strictly ordered by the rule, holds only orders of the interval
/// and side, and has the full count — which proves it is the exact permutation. For big
/// books clearChunk() does the same in bounded transactions from a stored cursor.
contract EnergyMarket {
    enum Side {
        BUY,
        SELL
    }

    uint8 internal constant OPEN = 0;
    uint8 internal constant CLEARED = 1;
    uint8 internal constant SETTLED = 2;
    uint8 internal constant CLEARING = 3; // clearChunk in progress: closed to orders, not cleared
    uint8 internal constant SETTLING = 4; // settleChunk in progress: cleared, curtailment closed
    uint8 internal constant VOID = 5; // not cleared by its deadline: owners reclaim their escrow

    uint256 internal constant PRICE_MAX = 100_000 * 1e6;
    uint256 internal constant WH_PER_MWH = 1e6;

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    /// The operator role moves in two steps (transferOperator, then acceptOperator by the new
    /// operator): a mistyped address never loses the role.
    address public operator;
    address public pendingOperator;
    address public immutable dso;
    uint256 public immutable intervalS;
    /// Most orders per device and interval (TooManyOrders): bounds the book, and so the
    /// clearing work, at MAX_ORDERS per device however small the orders.
    uint256 public constant MAX_ORDERS = 16;
    uint256 public immutable retailPricePerMwh;
    uint256 public immutable feedInPricePerMwh;
    /// Gate closure: orders for delivery interval k are accepted while block.timestamp <=
    /// gateTime(k) = marketStart + k * intervalS - gateLeadS (marketStart: chain time at which
    /// delivery of interval 0 begins). With gateLeadS = intervalS the gate of k closes when
    /// interval k - 1 begins — the twin's "gate closure is one interval before delivery".
    uint256 public immutable marketStart;
    uint256 public immutable gateLeadS;
    /// Smallest order energy (OrderTooSmall): with MAX_ORDERS it bounds what a device's
    /// free spam can cost the book and the clearing.
    uint256 public immutable minOrderWh;
    /// Imbalance collateral terms, one word (MarketSettlement.bondOf): a device's bond is its
    /// per-interval energy cap at ``ratePerMwh`` (bits 128..191: the number of intervals
    /// times the retail price), at least ``floor`` (money, bits 0..127); an estimate not
    /// trued up within ``expiryS`` (bits 192..255, 0: never) of its interval's end becomes
    /// final (finalizeEstimate). The bond is posted from its owner's free balance with the
    /// device's first order, held in the owner's ``bond`` (withdraw cannot take it), drawn
    /// on at settlement for the imbalance its free balance does not cover, topped up from
    /// the free balance at the owner's next settlements and its devices' first orders of an
    /// interval (MarketSettlement.topUpAtOrder), and returned by releaseBond once
    /// every interval up to the device's last ordered one is final (MarketSettlement).
    uint256 public immutable bondTerms;

    /// Two slots: free and locked together (an order's escrow moves within one slot), then
    /// debt and bond. Every token enters by deposit, each below 2**128 (BadAmount).
    struct Account {
        uint128 free;
        uint128 locked; // buyer escrow
        uint128 debt; // unpaid settlement charges (a counter, no tokens)
        uint128 bond; // imbalance collateral of its devices (bondOf each, less draws)
    }

    /// One slot per device, written at its first order of each interval: its registry owner
    /// (the owner of each of its orders), the last interval it ordered in, whether its bond
    /// is posted.
    struct DeviceInfo {
        address owner;
        uint64 lastInterval;
        bool bonded;
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

    /// One slot: energy used per side and the highest signed-order nonce seen, per
    /// (interval, device) — replay protection for signed orders costs no extra storage —
    /// and the DSO's operating envelope (limit + 1 Wh per side; 0: no envelope), checked at
    /// order time in the same slot.
    struct Usage {
        uint64 buyWh;
        uint64 sellWh;
        uint56 nonce; // signed-order nonces are < 2**56
        uint8 orders; // orders placed, <= MAX_ORDERS (a device cannot flood the book)
        uint32 importEnvWh;
        uint32 exportEnvWh;
    }

    struct Position {
        int96 netWh; // bought - sold, after curtailment
        int96 money; // net trade money, filled at settlement
        bool traded;
        bool read; // a traded device's meter reading was settled (chunked settlement)
        // DSO curtailment of the device's trades (MarketSettlement.curtail), second slot:
        uint64 curtailedWh; // energy taken off its trades
        uint96 curtailedMoney; // a buyer's: the trade-price value of that energy (escrow released)
        bool curtailedSell; // the device sold (its sales were curtailed)
    }

    struct OrderInput {
        uint64 device;
        uint64 interval;
        Side side;
        int256 energyWh;
        int256 price;
    }

    /// An order signed off-chain by the device's own key (EIP-712, see ORDER_TYPEHASH) and
    /// relayed in a batch by anyone (normally the operator): the signature is the authority.
    struct SignedOrder {
        uint64 device;
        uint64 interval;
        Side side;
        int256 energyWh;
        int256 price;
        uint64 nonce; // > every earlier nonce of this device in this interval
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// A meter reading signed by the device's key (EIP-712 MeterReading, see MarketSettlement).
    struct Sig {
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    bytes32 internal constant ORDER_TYPEHASH = keccak256(
        "Order(uint64 device,uint64 interval,uint8 side,int256 energyWh,int256 price,uint64 nonce)"
    );
    /// A device key's cancellation of its orders in an interval up to ``nonce`` (not yet placed).
    bytes32 internal constant CANCEL_TYPEHASH = keccak256("CancelOrders(uint64 device,uint64 interval,uint64 nonce)");
    /// Per-deployment EIP-712 salt: a signature of one run is worthless in any other.
    bytes32 public immutable salt;
    uint256 internal constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    bytes32 internal immutable DOMAIN_SEPARATOR;

    mapping(address => Account) public accounts;
    /// owner => agent => may place orders for the owner's devices (escrow still from owner)
    mapping(address => mapping(address => bool)) internal isAgent;
    /// Two orders a slot (library OrderWords; read from outside with ``orders(id)``, behind
    /// the fallback). An order's owner is its device's (deviceOwner, fixed at registration).
    mapping(uint256 => uint256) internal orderPairs;
    uint256 public orderCount;
    mapping(uint256 => Trade) public trades;
    uint256 public tradeCount;
    mapping(uint256 => IntervalState) public intervals;
    mapping(uint256 => mapping(uint256 => Usage)) public usage; // interval => device
    mapping(uint256 => mapping(uint256 => Position)) public positions; // interval => device
    /// Metered injection of each selling device, written at settlement: the only source
    /// GreenCertificate mints from (no certificate without metered delivery).
    mapping(uint256 => mapping(uint256 => uint256)) public injectedWh; // interval => device

    event AgentSet(address indexed owner, address indexed agent, bool approved);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    /// The orders one transaction placed, ids consecutive from ``firstOrderId``: ``words`` holds
    /// 16 bytes an order (big-endian), its OrderWords word: device bits 0-29, interval 30-57,
    /// side 58 (1: sell), energyWh 59-90, price 91-127. An order's owner is its device's
    /// (registry), its escrow payment(energyWh, price) for a bid and none for an ask. One log
    /// a batch instead of one an order: its receipt and its decoding cost a fraction.
    event OrdersPlaced(uint256 indexed firstOrderId, bytes words);
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
    // Curtailed, Settled, IntervalSettled and SettlementStarted are declared (and emitted, at
    // this address) by the library MarketSettlement; twin.chain.compile adds them to this ABI.
    event DebtPaid(address indexed account, uint256 amount);
    /// A signed order of a relayed batch that failed its checks: skipped, with the error the
    /// order alone would revert with (the rest of the batch is placed).
    event OrderRejected(uint256 indexed interval, uint256 indexed device, uint256 position, uint256 nonce, bytes reason);
    event OrdersCancelled(uint256 indexed interval, uint256 indexed device, uint256 nonce);
    event ClearingStarted(uint256 indexed interval, uint256 bids, uint256 asks);
    event EscrowReleased(uint256 indexed orderId, address indexed owner, uint256 amount);
    event IntervalVoided(uint256 indexed interval);
    event MechanismSet(uint256 mechanism);
    event OperatorTransfer(address indexed from, address indexed to, bool accepted);

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
    error EnvelopeExceeded(uint256 device, uint256 limit, uint256 requested);
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
    error BadSignature(uint256 device);
    error ReplayedNonce(uint256 device, uint256 interval, uint256 nonce);
    error MeterOutOfRange(uint256 device, uint256 cap, int256 metered);
    error GateClosed(uint256 interval, uint256 gate, uint256 time);
    error GateOpen(uint256 interval, uint256 gate, uint256 time);
    error InDebt(address account, uint256 debt);
    error NotReclaimable(uint256 interval, uint256 deadline, uint256 time);
    error TooManyOrders(uint256 device, uint256 interval, uint256 max_orders);
    error OrderTooSmall(uint256 device, uint256 min_wh, int256 energy);

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    function transferOperator(address next) external onlyOperator {
        pendingOperator = next;
        emit OperatorTransfer(msg.sender, next, false);
    }

    function acceptOperator() external {
        if (msg.sender != pendingOperator) revert NotOperator(msg.sender);
        emit OperatorTransfer(operator, msg.sender, true);
        operator = msg.sender;
        delete pendingOperator;
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
        uint256 feedInPricePerMwh_,
        uint256 marketStart_,
        uint256 gateLeadS_,
        uint256 minOrderWh_,
        uint256 bondTerms_,
        bytes32 salt_
    ) {
        token = token_;
        registry = registry_;
        operator = operator_;
        dso = registry_.dso();
        intervalS = intervalS_;
        retailPricePerMwh = retailPricePerMwh_;
        feedInPricePerMwh = feedInPricePerMwh_;
        marketStart = marketStart_;
        gateLeadS = gateLeadS_;
        minOrderWh = minOrderWh_;
        bondTerms = bondTerms_;
        salt = salt_;
        DOMAIN_SEPARATOR = keccak256(
            abi.encode(
                keccak256(
                    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
                ),
                keccak256("gridtwin EnergyMarket"),
                keccak256("1"),
                block.chainid,
                address(this),
                salt_
            )
        );
    }

    /// The one payment-rounding rule (twin/market/units.py).
    function payment(uint256 energyWh, uint256 pricePerMwh) internal pure returns (uint256) {
        return (energyWh * pricePerMwh) / WH_PER_MWH;
    }

    // ------------------------------------------------------------------ money

    function setAgent(address agent, bool approved) external {
        isAgent[msg.sender][agent] = approved;
        emit AgentSet(msg.sender, agent, approved);
    }

    /// Move tokens from the caller's wallet (approved) into its free market balance.
    function deposit(uint256 amount) external {
        if (amount == 0 || amount >> 128 != 0) revert BadAmount(amount);
        token.transferFrom(msg.sender, address(this), amount);
        Account storage a = accounts[msg.sender];
        uint256 owed = a.debt;
        uint256 pay = msg.sender == dso ? 0 : (owed < amount ? owed : amount);
        if (pay > 0) {
            a.debt = uint128(owed - pay); // an indebted account's deposit pays its debt to the DSO first
            accounts[dso].free += uint128(pay);
            emit DebtPaid(msg.sender, pay);
        }
        a.free += uint128(amount - pay);
        emit Deposited(msg.sender, amount);
    }

    function withdraw(uint256 amount) external {
        if (amount == 0) revert BadAmount(amount);
        Account storage a = accounts[msg.sender];
        if (a.debt > 0) revert InDebt(msg.sender, a.debt);
        if (a.free < amount) revert InsufficientBalance(msg.sender, amount, a.free);
        a.free -= uint128(amount);
        token.transfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ------------------------------------------------------------------ orders

    /// Place a batch atomically. The caller must own each device or be its owner's agent;
    /// the order's owner (and the escrow) is always the device owner.
    function placeOrders(OrderInput[] calldata input) external returns (uint256 firstOrderId) {
        firstOrderId = orderCount + 1;
        uint256 id = orderCount;
        bytes memory words = _wordBuffer(input.length);
        for (uint256 k = 0; k < input.length; ++k) {
            id += 1;
            OrderInput calldata o = input[k];
            DeviceRegistry.Device memory d = registry.get(o.device);
            bytes memory err;
            if (d.status == 0) err = abi.encodeWithSelector(UnknownDevice.selector, o.device);
            else if (d.status == 2) err = abi.encodeWithSelector(DeviceRevoked.selector, o.device);
            else if (msg.sender != d.owner && !isAgent[d.owner][msg.sender]) {
                err = abi.encodeWithSelector(NotDeviceOwner.selector, o.device, msg.sender);
            } else {
                err = _book(id, d, o.device, o.interval, o.side, o.energyWh, o.price, usage[o.interval][o.device]);
            }
            if (err.length > 0) {
                assembly ("memory-safe") {
                    revert(add(err, 32), mload(err))
                }
            }
            _putWord(words, k, o.device, o.interval, o.side, o.energyWh, o.price);
        }
        orderCount = id;
        _emitPlaced(firstOrderId, id + 1 - firstOrderId, words);
    }

    /// OrdersPlaced's data, ABI-encoded in place: offset (0x20), length, ``n`` 16-byte order
    /// words (zero-padded; 32 spare bytes, as each word is written as 32).
    function _wordBuffer(uint256 n) private pure returns (bytes memory) {
        return new bytes(n * 16 + 96);
    }

    /// The ``k``-th placed order's word into ``words`` (OrdersPlaced); its values were checked.
    function _putWord(bytes memory words, uint256 k, uint64 device, uint64 interval, Side side, int256 energyWh, int256 price)
        private
        pure
    {
        uint256 w = uint256(device) | (uint256(interval) << 30) | (uint256(side) << 58)
            | (uint256(energyWh) << 59) | (uint256(price) << 91);
        assembly ("memory-safe") {
            mstore(add(add(words, 96), mul(k, 16)), shl(128, w))
        }
    }

    function _emitPlaced(uint256 first, uint256 n, bytes memory words) private {
        if (n == 0) return;
        bytes32 topic = OrdersPlaced.selector;
        assembly ("memory-safe") {
            mstore(add(words, 32), 32)
            mstore(add(words, 64), mul(n, 16))
            log2(add(words, 32), add(64, mul(shr(1, add(n, 1)), 32)), topic, first)
        }
    }

    /// Place a batch of device-signed orders (any relayer may send it). Each order is checked
    /// like placeOrders, plus: the EIP-712 signature recovers to the device's registered key,
    /// and its nonce is above every earlier one of the device in that interval (a replayed
    /// or reordered-back order fails). An order that fails is skipped and reported
    /// (OrderRejected, with its error) — it cannot void the rest of the batch; the placed
    /// orders get consecutive ids from ``firstOrderId``.
    function placeSignedOrders(SignedOrder[] calldata input) external returns (uint256 firstOrderId) {
        firstOrderId = orderCount + 1;
        uint256 id = orderCount;
        bytes memory words = _wordBuffer(input.length);
        for (uint256 k = 0; k < input.length; ++k) {
            SignedOrder calldata o = input[k];
            bytes memory err = _placeSigned(id + 1, o);
            if (err.length == 0) {
                _putWord(words, id + 1 - firstOrderId, o.device, o.interval, o.side, o.energyWh, o.price);
                id += 1;
            } else {
                emit OrderRejected(o.interval, o.device, k, o.nonce, err);
            }
        }
        orderCount = id;
        _emitPlaced(firstOrderId, id + 1 - firstOrderId, words);
    }

    function _placeSigned(uint256 id, SignedOrder calldata o) private returns (bytes memory err) {
        (DeviceRegistry.Device memory d, address signer) = registry.getWithSigner(o.device);
        if (d.status == 0) return abi.encodeWithSelector(UnknownDevice.selector, o.device);
        if (d.status == 2) return abi.encodeWithSelector(DeviceRevoked.selector, o.device);
        // the market calling itself: DailySchedules verified the order against the device's
        // signed day schedule (a leaf of its Merkle root), the order has no signature of its own
        if (msg.sender != address(this)) {
            bytes32 structHash = keccak256(
                abi.encode(ORDER_TYPEHASH, o.device, o.interval, uint8(o.side), o.energyWh, o.price, o.nonce)
            );
            if (signer == address(0) || _recover(structHash, o.r, o.s, o.v) != signer) {
                return abi.encodeWithSelector(BadSignature.selector, o.device);
            }
        }
        Usage storage u = usage[o.interval][o.device];
        if (o.nonce <= u.nonce || o.nonce >> 56 != 0) return abi.encodeWithSelector(ReplayedNonce.selector, o.device, o.interval, o.nonce);
        err = _book(id, d, o.device, o.interval, o.side, o.energyWh, o.price, u);
        if (err.length == 0) u.nonce = uint56(o.nonce);
    }

    /// The device key cancels its not yet placed orders of ``interval`` up to ``nonce``
    /// (EIP-712 CancelOrders, relayed by anyone): every signed order with a nonce at most
    /// ``nonce`` is void from then on.
    function cancelOrders(uint64 device, uint64 interval, uint64 nonce, Sig calldata sig) external {
        (, address signer) = registry.getWithSigner(device);
        bytes32 structHash = keccak256(abi.encode(CANCEL_TYPEHASH, device, interval, nonce));
        if (signer == address(0) || _recover(structHash, sig.r, sig.s, sig.v) != signer) revert BadSignature(device);
        Usage storage u = usage[interval][device];
        if (nonce <= u.nonce || nonce >> 56 != 0) revert ReplayedNonce(device, interval, nonce);
        u.nonce = uint56(nonce);
        emit OrdersCancelled(interval, device, nonce);
    }

    /// ecrecover of an EIP-712 struct hash under this market's domain; address(0) for a
    /// malformed or malleable (high-s) signature.
    function _recover(bytes32 structHash, bytes32 r, bytes32 s, uint8 v) private view returns (address) {
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) return address(0);
        bytes32 digest = keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR, structHash));
        return ecrecover(digest, v, r, s);
    }

    /// Last chain time at which orders for ``interval`` are accepted (0: never). Read from
    /// outside through the fallback (ProvisionalSettlement.gateTime: code size).
    function _gateTime(uint256 interval) private view returns (uint256) {
        uint256 start = marketStart + interval * intervalS;
        return start > gateLeadS ? start - gateLeadS : 0;
    }

    /// Book one order after its authority was checked; the error it fails with (empty: booked).
    function _book(
        uint256 id,
        DeviceRegistry.Device memory d,
        uint64 device,
        uint64 interval,
        Side side,
        int256 energyWh,
        int256 priceIn,
        Usage storage u
    ) private returns (bytes memory) {
        if (energyWh <= 0 || uint256(energyWh) > OrderWords.ENERGY_MAX_WH) {
            return abi.encodeWithSelector(BadEnergy.selector, device, energyWh);
        }
        if (uint256(energyWh) < minOrderWh) return abi.encodeWithSelector(OrderTooSmall.selector, device, minOrderWh, energyWh);
        if (priceIn <= 0 || uint256(priceIn) > PRICE_MAX) return abi.encodeWithSelector(BadPrice.selector, device, priceIn);
        IntervalState storage st = intervals[interval];
        if (st.status != OPEN || interval >= OrderWords.INTERVAL_LIMIT) {
            return abi.encodeWithSelector(IntervalClosed.selector, interval);
        }
        uint256 gate = _gateTime(interval);
        if (block.timestamp > gate) return abi.encodeWithSelector(GateClosed.selector, interval, gate, block.timestamp);
        uint256 used;
        if (side == Side.BUY) {
            if (u.sellWh > 0) return abi.encodeWithSelector(OppositeSide.selector, device, interval);
            used = u.buyWh;
        } else {
            if (u.buyWh > 0) return abi.encodeWithSelector(OppositeSide.selector, device, interval);
            used = u.sellWh;
        }
        if (u.orders >= MAX_ORDERS) return abi.encodeWithSelector(TooManyOrders.selector, device, interval, MAX_ORDERS);
        uint256 cap = (uint256(d.capacityW) * intervalS) / 3600;
        uint256 requested = used + uint256(energyWh); // used < 2**64, energyWh < 2**255: no overflow
        if (requested > cap) return abi.encodeWithSelector(CapacityExceeded.selector, device, cap, requested);
        uint256 env = side == Side.BUY ? u.importEnvWh : u.exportEnvWh;
        if (env != 0 && requested > env - 1) {
            return abi.encodeWithSelector(EnvelopeExceeded.selector, device, env - 1, requested);
        }
        uint256 energy = uint256(energyWh);
        uint256 price = uint256(priceIn);
        uint256 escrow;
        Account storage a = accounts[d.owner];
        // the device's first order of the interval: its bond, unless posted (kept until
        // releaseBond, which no interval it ordered in can precede)
        DeviceInfo memory di;
        if (u.orders == 0) di = deviceOwner[device];
        uint256 bond = u.orders == 0 && !di.bonded ? MarketSettlement.bondOf(bondTerms, cap) : 0;
        if (a.free < bond) return abi.encodeWithSelector(InsufficientBalance.selector, d.owner, bond, a.free);
        if (side == Side.BUY) {
            escrow = payment(energy, price);
            if (a.debt > 0) return abi.encodeWithSelector(InDebt.selector, d.owner, a.debt);
            if (a.free - bond < escrow) {
                return abi.encodeWithSelector(InsufficientBalance.selector, d.owner, escrow, a.free - bond);
            }
            a.free -= uint128(escrow);
            a.locked += uint128(escrow);
            u.buyWh = uint64(requested);
            st.buyCount += 1;
        } else {
            u.sellWh = uint64(requested);
            st.sellCount += 1;
        }
        if (u.orders == 0 && (!di.bonded || (bondTerms << 64 != 0 && di.lastInterval < interval))) {
            if (bond > 0) {
                a.free -= uint128(bond);
                a.bond += uint128(bond);
            }
            deviceOwner[device] = DeviceInfo(d.owner, interval > di.lastInterval ? interval : di.lastInterval, true);
        }
        // a drawn bond refills from the free balance left before the device's orders of a new
        // interval (one warm read while no bond is short)
        if (u.orders == 0 && MarketSettlement.bondStore().shortTotal != 0) {
            MarketSettlement.topUpAtOrder(accounts, d.owner);
        }
        u.orders += 1;
        OrderWords.place(id, device, interval, uint256(side), energy, price);
        return "";
    }

    /// Deadline after which the owners of an interval's buy orders may reclaim their escrow
    /// if its clearing has not started, or stopped before its matching walk was over: one
    /// interval after its gate. From then on anyone may also clear it (_clearer). Read from
    /// outside through the fallback (ProvisionalSettlement.reclaimAfter: code size).
    function _reclaimAfter(uint256 interval) private view returns (uint256) {
        return _gateTime(interval) + intervalS;
    }

    /// An owner takes back the escrow of its buy orders of intervals not cleared by their
    /// deadline (reclaimAfter) whose clearing did not start, or stopped with its matching walk
    /// unfinished: uniform price, no trade priced and no escrow released yet; CDA, not every
    /// order taken yet. The first reclaim voids the interval (IntervalVoided; it never clears
    /// nor settles; a stopped uniform walk's unpriced matches are dropped and their trade ids
    /// reused, a stopped CDA's announced trades are void), each order's escrow still held
    /// returns once (a CDA bid: all of it, or what its fills kept if it was filled).
    /// Once a walk is over its trades stand: anyone may finish the clearing.
    /// The loop is MarketSettlement.reclaim (code size).
    function reclaim(uint64[] calldata orderIds) external {
        MarketSettlement.reclaim(orderIds, marketStart, gateLeadS, intervalS);
    }

    /// The operator clears an interval; past its reclaim deadline anyone may (the verified
    /// sorted book fixes the outcome, so a stalled operator cannot keep escrow locked).
    function _clearer(uint64 interval) private view {
        if (msg.sender != operator && block.timestamp <= _reclaimAfter(interval)) revert NotOperator(msg.sender);
    }

    // ------------------------------------------------------------------ clearing

    /// Resumable matching state of the one interval being cleared (5 slots, written once per
    /// chunk). During matching the last taken bid/ask is the current one of the walk.
    struct Cursor {
        uint32 bidsSeen;
        uint32 asksSeen;
        uint64 lastBid;
        uint64 lastAsk;
        bool done; // matching finished: the price is fixed
        bool bidFilled; // the current bid has at least one fill
        uint64 remB;
        uint64 remA;
        uint96 lastBidPrice;
        uint96 lastAskPrice;
        uint96 mBidPrice; // prices of the last matched pair
        uint32 fills;
        uint32 finalized; // trades already priced, announced and escrow-released
        uint96 mAskPrice;
        uint64 volume;
        uint96 kept; // escrow the current finalize group's bid keeps
        uint64 bidDevice;
        uint64 askDevice;
        uint32 tradedDevices;
    }

    mapping(uint256 => Cursor) internal cursors;
    /// interval + 1 of the interval whose clearing is in progress (0: none).
    uint256 public clearingInterval;

    error ClearingInProgress(uint256 interval);
    error BookChanged(uint256 interval, uint256 planned, uint256 actual);
    error CursorMismatch(uint256 interval, uint256 expected, uint256 actual);
    error WrongMechanism(uint256 mechanism);

    /// Market mechanism (twin/market/mechanisms.py): 0 uniform-price double auction
    /// (clear/clearChunk), 1 continuous double auction, pay-as-bid (clearCda, library
    /// CdaMatching). Chosen by the operator before the first order (setMechanism).
    uint8 public mechanism;
    mapping(uint256 => CdaMatching.Node) internal cdaNodes; // order id => resting node
    mapping(uint256 => CdaMatching.Cursor) internal cdaCursors;

    function setMechanism(uint8 m) external onlyOperator {
        if (orderCount != 0 || m > 1) revert WrongMechanism(m);
        mechanism = m;
        emit MechanismSet(m);
    }

    /// Continuous double auction (see CdaMatching): the operator sends the interval's order
    /// ids in ascending order with one insertion hint each, in consecutive chunks; each call
    /// runs at most ``maxSteps`` fills / end-of-interval bid releases. Trades are announced
    /// as they match, each at the resting order's price; the call that finishes returns
    /// true and marks the interval cleared (interval price: volume-weighted mean). ``at``:
    /// the cursor position the call follows (orders taken + fills), else CursorMismatch.
    function clearCda(
        uint64 interval,
        uint256 bookSize,
        uint256 at,
        uint64[] calldata ids,
        uint64[] calldata hints,
        uint256 maxSteps
    ) external returns (bool finished) {
        _clearer(interval);
        if (mechanism != 1) revert WrongMechanism(mechanism);
        IntervalState storage st = intervals[interval];
        if (st.status == OPEN && bookSize != uint256(st.buyCount) + st.sellCount) {
            revert BookChanged(interval, bookSize, uint256(st.buyCount) + st.sellCount);
        }
        _startClearing(interval, st);
        uint256 tid;
        (tid, finished) = CdaMatching.run(
            trades, accounts, positions, cdaNodes, cdaCursors, st, interval, at, ids, hints, maxSteps, tradeCount
        );
        tradeCount = tid;
        if (finished) {
            st.status = CLEARED;
            clearingInterval = 0;
        }
    }

    /// Open the clearing of ``interval`` (or continue it): one interval at a time.
    function _startClearing(uint64 interval, IntervalState storage st) private {
        if (st.status == OPEN) {
            uint256 gate = _gateTime(interval); // the book is final only once the gate closed
            if (block.timestamp <= gate) revert GateOpen(interval, gate, block.timestamp);
            uint256 busy = clearingInterval;
            if (busy != 0) revert ClearingInProgress(busy - 1);
            clearingInterval = uint256(interval) + 1;
            st.status = CLEARING;
            st.firstTrade = uint64(tradeCount + 1);
            emit ClearingStarted(interval, st.buyCount, st.sellCount);
        } else if (st.status != CLEARING) {
            revert AlreadyCleared(interval);
        }
    }

    /// Clear an interval in one transaction: the full sorted bid and ask id lists (bounded
    /// only by the block gas limit; clearChunk is the bounded form).
    function clear(uint64 interval, uint64[] calldata bidIds, uint64[] calldata askIds) external {
        _clearer(interval);
        IntervalState storage st = intervals[interval];
        if (st.status != OPEN) revert AlreadyCleared(interval);
        if (bidIds.length != st.buyCount) revert BadOrderList(0, bidIds.length, 0);
        if (askIds.length != st.sellCount) revert BadOrderList(1, askIds.length, 0);
        _clearChunk(interval, 0, bidIds, askIds, type(uint256).max);
    }

    /// Bounded clearing: the operator sends the verified sorted lists (bids by price desc, id
    /// asc; asks by price asc, id asc) in consecutive pieces. Each chunk verifies its ids
    /// (order, interval, side, continuity with the previous chunk) and continues the walk
    /// of twin/market/clearing.py from the stored cursor: the walk takes the next bid (ask)
    /// only when the current one is exhausted, and pauses when it needs one the chunk did not
    /// bring (then every id of the chunk must have been taken). Once the walk is over the
    /// price is fixed; the remaining ids are only verified (unmatched bids get their escrow
    /// back). When both lists are complete, up to ``maxTrades`` trades per call are priced,
    /// announced (TradeMatched) and their bids' excess escrow released; the call that prices
    /// the last one marks the interval cleared and returns true. Only one interval clears at
    /// a time (trade ids stay consecutive per interval); orders stay closed from chunk one.
    /// ``bookSize`` is the number of orders the operator's plan covers: the first chunk
    /// reverts BookChanged if an order arrived since (the plan could never complete).
    /// ``at`` is the cursor position the chunk follows (ids verified on both sides plus trades
    /// finalized): a chunk sent after one that reverted reverts CursorMismatch instead of
    /// skipping that one's ids, so the sender resumes from the cursor (clearingProgress).
    function clearChunk(
        uint64 interval,
        uint256 bookSize,
        uint256 at,
        uint64[] calldata bidIds,
        uint64[] calldata askIds,
        uint256 maxTrades
    ) external returns (bool finished) {
        _clearer(interval);
        IntervalState storage st = intervals[interval];
        if (st.status == OPEN && bookSize != uint256(st.buyCount) + st.sellCount) {
            revert BookChanged(interval, bookSize, uint256(st.buyCount) + st.sellCount);
        }
        return _clearChunk(interval, at, bidIds, askIds, maxTrades);
    }

    function _clearChunk(
        uint64 interval,
        uint256 at,
        uint64[] calldata bidIds,
        uint64[] calldata askIds,
        uint256 maxTrades
    ) private returns (bool) {
        IntervalState storage st = intervals[interval];
        if (mechanism != 0) revert WrongMechanism(mechanism);
        _startClearing(interval, st);
        Cursor memory c = cursors[interval];
        uint256 pos = uint256(c.bidsSeen) + c.asksSeen + c.finalized;
        if (pos != at) revert CursorMismatch(interval, at, pos);
        uint256 bi;
        uint256 ai;
        if (!c.done) {
            (bi, ai) = _walk(interval, st, c, bidIds, askIds);
            if (!c.done) {
                if (bi < bidIds.length) revert BadOrderList(0, c.bidsSeen, bidIds[bi]);
                if (ai < askIds.length) revert BadOrderList(1, c.asksSeen, askIds[ai]);
            } else if (c.remB > 0 && !c.bidFilled) {
                _releaseBid(c.lastBid, OrderWords.at(c.lastBid), 0); // taken but never matched
            }
        }
        for (; bi < bidIds.length; ++bi) {
            uint256 id = bidIds[bi];
            OrderWord o = _verify(interval, Side.BUY, c, id);
            c.bidsSeen += 1;
            c.lastBid = uint64(id);
            c.lastBidPrice = o.price();
            _releaseBid(id, o, 0);
        }
        for (; ai < askIds.length; ++ai) {
            uint256 id = askIds[ai];
            OrderWord o = _verify(interval, Side.SELL, c, id);
            c.asksSeen += 1;
            c.lastAsk = uint64(id);
            c.lastAskPrice = o.price();
        }
        bool finished = c.done && c.bidsSeen == st.buyCount && c.asksSeen == st.sellCount
            && _finalize(interval, st, c, maxTrades);
        if (finished) {
            delete cursors[interval];
        } else {
            cursors[interval] = c;
        }
        return finished;
    }

    /// The matching walk from the cursor over this chunk's ids; returns how many it took.
    function _walk(
        uint64 interval,
        IntervalState storage st,
        Cursor memory c,
        uint64[] calldata bidIds,
        uint64[] calldata askIds
    ) private returns (uint256 bi, uint256 ai) {
        uint256 nb = st.buyCount;
        uint256 na = st.sellCount;
        uint256 tid = tradeCount;
        while (true) {
            if (c.remB == 0) {
                if (c.bidsSeen == nb) {
                    c.done = true;
                    break;
                }
                if (bi == bidIds.length) break;
                uint256 id = bidIds[bi++];
                OrderWord o = _verify(interval, Side.BUY, c, id);
                c.bidsSeen += 1;
                c.lastBid = uint64(id);
                c.lastBidPrice = o.price();
                c.remB = o.energyWh();
                c.bidDevice = o.device();
                c.bidFilled = false;
            }
            if (c.remA == 0) {
                if (c.asksSeen == na) {
                    c.done = true;
                    break;
                }
                if (ai == askIds.length) break;
                uint256 id = askIds[ai++];
                OrderWord o = _verify(interval, Side.SELL, c, id);
                c.asksSeen += 1;
                c.lastAsk = uint64(id);
                c.lastAskPrice = o.price();
                c.remA = o.energyWh();
                c.askDevice = o.device();
            }
            if (c.lastBidPrice < c.lastAskPrice) {
                c.done = true;
                break;
            }
            uint64 q = c.remB < c.remA ? c.remB : c.remA;
            tid += 1;
            trades[tid] = Trade(c.lastBid, c.lastAsk, q, q);
            c.tradedDevices += uint32(
                _addPosition(interval, c.bidDevice, int256(uint256(q)))
                    + _addPosition(interval, c.askDevice, -int256(uint256(q)))
            );
            c.volume += q;
            c.fills += 1;
            c.mBidPrice = c.lastBidPrice;
            c.mAskPrice = c.lastAskPrice;
            c.bidFilled = true;
            c.remB -= q;
            c.remA -= q;
        }
        tradeCount = tid;
    }

    /// Check that ``id`` is an order of the interval and side that comes strictly after the
    /// side's last verified id in the sort order.
    function _verify(uint64 interval, Side side, Cursor memory c, uint256 id) private view returns (OrderWord o) {
        o = OrderWords.at(id);
        uint256 sideNo = uint256(side);
        uint256 k = side == Side.BUY ? c.bidsSeen : c.asksSeen;
        if (o.price() == 0 || o.interval() != interval || o.sideNo() != sideNo) revert BadOrderList(sideNo, k, id);
        if (k > 0) {
            uint256 p = o.price();
            uint256 p0 = side == Side.BUY ? c.lastBidPrice : c.lastAskPrice;
            uint256 id0 = side == Side.BUY ? c.lastBid : c.lastAsk;
            bool better = side == Side.BUY ? p < p0 : p > p0;
            if (!(better || (p == p0 && id > id0))) revert BadOrderList(sideNo, k, id);
        }
        uint256 n = side == Side.BUY ? intervals[interval].buyCount : intervals[interval].sellCount;
        if (k >= n) revert BadOrderList(sideNo, k, id);
    }

    /// Return a bid's escrow beyond ``kept`` to its owner's free balance.
    function _releaseBid(uint256 id, OrderWord o, uint256 kept) private {
        uint256 release = payment(o.energyWh(), o.price()) - kept;
        if (release > 0) {
            address owner = deviceOwner[o.device()].owner;
            Account storage a = accounts[owner];
            a.locked -= uint128(release);
            a.free += uint128(release);
            emit EscrowReleased(id, owner, release);
        }
    }

    /// Price, announce and release up to ``maxTrades`` trades; true when all are done.
    function _finalize(uint64 interval, IntervalState storage st, Cursor memory c, uint256 maxTrades)
        private
        returns (bool)
    {
        uint256 price = c.fills > 0 ? (uint256(c.mBidPrice) + uint256(c.mAskPrice)) / 2 : 0;
        uint256 first = st.firstTrade;
        uint256 end = first + c.fills;
        uint256 t = first + c.finalized;
        uint256 stop = maxTrades >= end - t ? end : t + maxTrades;
        uint256 kept = c.kept;
        for (; t < stop; ++t) {
            Trade storage tr = trades[t];
            uint256 buyId = tr.buyOrder;
            uint256 sellId = tr.sellOrder;
            uint256 q = tr.clearedWh;
            kept += payment(q, price);
            OrderWord bo = OrderWords.at(buyId);
            emit TradeMatched(t, interval, buyId, sellId, bo.device(), OrderWords.at(sellId).device(), q, price);
            if (t + 1 == end || trades[t + 1].buyOrder != buyId) {
                _releaseBid(buyId, bo, kept); // a bid's fills are consecutive trades
                kept = 0;
            }
        }
        c.kept = uint96(kept);
        c.finalized = uint32(stop - first);
        if (stop != end) return false;
        st.status = CLEARED;
        st.price = uint96(price);
        st.volumeWh = c.volume;
        st.tradeCount = c.fills;
        st.tradedDevices = c.tradedDevices;
        clearingInterval = 0;
        emit Cleared(interval, price, c.volume, first, c.fills);
        return true;
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

    event EnvelopeSet(uint256 indexed interval, uint256 indexed device, uint256 exportWh, uint256 importWh);

    /// The DSO publishes operating envelopes of an open interval before gate closure: per
    /// device the most it may sell (export) and buy (import) in that interval, Wh; orders
    /// beyond revert with EnvelopeExceeded. Envelopes may only tighten what is already booked
    /// to nothing less than it (BadAmount otherwise).
    function setEnvelopes(uint64 interval, uint64[] calldata devices, uint32[] calldata exportWh,
                          uint32[] calldata importWh) external onlyDSO {
        if (devices.length != exportWh.length || devices.length != importWh.length) revert BadAmount(devices.length);
        if (intervals[interval].status != OPEN) revert IntervalClosed(interval);
        for (uint256 i = 0; i < devices.length; i++) {
            Usage storage u = usage[interval][devices[i]];
            if (exportWh[i] == type(uint32).max || importWh[i] == type(uint32).max) revert BadAmount(exportWh[i]);
            if (u.sellWh > exportWh[i] || u.buyWh > importWh[i]) revert BadAmount(devices[i]);
            u.exportEnvWh = exportWh[i] + 1;
            u.importEnvWh = importWh[i] + 1;
            emit EnvelopeSet(interval, devices[i], exportWh[i], importWh[i]);
        }
    }

    /// DSO curtailment of cleared trades, any number in one transaction (library
    /// MarketSettlement.curtail; the twin's DSO sends an interval's curtailments in chunks
    /// that fit a block): trade ``tradeIds[k]`` is lowered to ``energyWh[k]`` Wh. The buyer's
    /// escrow for the curtailed energy is released; at settlement the DSO pays the seller the
    /// curtailed energy at the trade's price, the buyer pays at most that price for curtailed
    /// energy it consumes anyway, and a seller gets nothing for curtailed energy it injects
    /// anyway — so curtailing never earns the DSO anything.
    function curtailBatch(uint256[] calldata tradeIds, int256[] calldata energyWh) external onlyDSO {
        MarketSettlement.curtail(trades, intervals, positions, accounts, tradeCount, mechanism == 1,
                                 tradeIds, energyWh);
    }

    // ------------------------------------------------------------------ settlement

    /// Resumable settlement state of one interval (one slot): trades paid so far, then the
    /// meter readings taken (strictly ascending device ids across all chunks).
    struct SettleCursor {
        uint32 paid;
        uint32 covered; // traded devices among the readings so far
        uint32 readings;
        bool anyReading;
        uint64 lastDevice;
    }

    mapping(uint256 => SettleCursor) internal settleCursors;
    /// device => its registry owner (the owner of each of its orders), last ordered interval
    /// and bond (DeviceInfo), written at its first order of an interval (libraries read it at
    /// MarketSlots.DEVICE_OWNERS_SLOT; keep it the last variable).
    mapping(uint256 => DeviceInfo) internal deviceOwner;

    error TradesUnpaid(uint256 interval, uint256 paid, uint256 total);
    error SettlementInProgress(uint256 interval);

    function _ctx() private view returns (MarketSettlement.Ctx memory) {
        return MarketSettlement.Ctx(
            registry, dso, retailPricePerMwh, feedInPricePerMwh, intervalS, mechanism == 1, DOMAIN_SEPARATOR
        );
    }

    /// Settle an interval on metered energy (consumption positive), readings by strictly
    /// ascending device id, in one transaction (settleChunk is the bounded form). Trades are
    /// paid first (trade id order), then each device's imbalance against the DSO at the fixed
    /// tariffs; a payer short of free balance pays what it has and the remainder becomes debt
    /// (library MarketSettlement). An indebted account cannot withdraw nor place buy orders,
    /// and every credit to it (deposit, trade money, feed-in) pays the debt to the DSO first.
    function settle(uint64 interval, uint64[] calldata devices, int256[] calldata meteredWh) external onlyOperator {
        _settleChunk(interval, 0, type(uint256).max, devices, meteredWh, true);
    }

    /// settle() on meter readings each signed by its device's key (EIP-712 MeterReading):
    /// a reading that does not recover to the device's registered key reverts BadSignature,
    /// and a device can only claim energy within its registered capacity for the interval.
    /// Readings name their interval, and an interval settles once, so none can be replayed.
    function settleSigned(uint64 interval, uint64[] calldata devices, int256[] calldata meteredWh, Sig[] calldata sigs)
        external
        onlyOperator
    {
        MarketSettlement.checkSigned(_ctx(), interval, intervals[interval].status, devices, meteredWh, sigs);
        _settleChunk(interval, 0, type(uint256).max, devices, meteredWh, true);
    }

    /// Bounded settlement: the operator sends consecutive chunks. Each pays up to
    /// ``maxTrades`` more trades (trade id order, from the stored cursor), then settles the
    /// chunk's readings, whose device ids continue the strictly ascending sequence of the
    /// earlier chunks; readings are only accepted once every trade is paid (else
    /// TradesUnpaid). The chunk with ``last`` set checks that every traded device had a
    /// reading (MissingMeterReading) and marks the interval settled; it returns true. From
    /// the first chunk on the interval is "settling": no curtailment, no one-shot restart.
    /// Any cut gives the same result as settle() (the same arithmetic in the same order).
    /// ``at``: the cursor position the chunk follows (trades paid plus readings settled),
    /// else CursorMismatch (a chunk sent after one that reverted).
    function settleChunk(
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        bool last
    ) external onlyOperator returns (bool) {
        return _settleChunk(interval, at, maxTrades, devices, meteredWh, last);
    }

    /// settleChunk() on device-signed readings (checked like settleSigned).
    function settleSignedChunk(
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        Sig[] calldata sigs,
        bool last
    ) external onlyOperator returns (bool) {
        MarketSettlement.checkSigned(_ctx(), interval, intervals[interval].status, devices, meteredWh, sigs);
        return _settleChunk(interval, at, maxTrades, devices, meteredWh, last);
    }

    /// Dry run of a whole settlement's checks (status, readings order, known devices,
    /// signatures and ranges if ``signed``, no missing reading): reverts with the error the
    /// one-transaction settle()/settleSigned() would raise before paying anything. The
    /// operator calls it (eth_call) before sending chunks, so a plan that cannot complete is
    /// never started.
    function checkSettlement(
        uint64 interval,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        Sig[] calldata sigs,
        bool signed
    ) external view onlyOperator returns (bool) {
        MarketSettlement.Ctx memory x = _ctx();
        if (signed) MarketSettlement.checkSigned(x, interval, intervals[interval].status, devices, meteredWh, sigs);
        MarketSettlement.checkSettlement(
            x, intervals[interval], trades, positions[interval], interval, devices, meteredWh
        );
        return true;
    }

    function _settleChunk(
        uint64 interval,
        uint256 at,
        uint256 maxTrades,
        uint64[] calldata devices,
        int256[] calldata meteredWh,
        bool last
    ) private returns (bool) {
        return MarketSettlement.settleChunk(
            _ctx(),
            intervals[interval],
            settleCursors[interval],
            trades,
            accounts,
            positions[interval],
            injectedWh[interval],
            interval,
            at,
            maxTrades,
            devices,
            meteredWh,
            last
        );
    }

    /// Calls this contract does not implement run in the linked library ProvisionalSettlement
    /// on this market's storage (DELEGATECALL): settlement on estimates and true-ups, island
    /// books, releaseBond, deviceInfo and the read-outs clearingProgress and settlementProgress;
    /// daily signing's relaySchedules, trueUpDaily and scheduleOf in DailySchedules.
    fallback() external {
        address ext = address(ProvisionalSettlement);
        bytes4 sig = msg.sig;
        if (
            sig == DailySchedules.relaySchedules.selector || sig == DailySchedules.trueUpDaily.selector
                || sig == DailySchedules.scheduleOf.selector
        ) {
            ext = address(DailySchedules); // daily signing (DailySchedules)
        }
        assembly ("memory-safe") { // from the free memory pointer, and never back to Solidity
            let p := mload(0x40)
            calldatacopy(p, 0, calldatasize())
            let ok := delegatecall(gas(), ext, p, calldatasize(), 0, 0)
            returndatacopy(p, 0, returndatasize())
            if iszero(ok) { revert(p, returndatasize()) }
            return(p, returndatasize())
        }
    }
}
