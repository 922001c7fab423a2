// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title DeviceRegistry — metering points registered by the DSO.
/// @notice Only registered, non-revoked devices may trade; a device's per-interval energy
/// cap is capacityW * intervalS / 3600 (computed by the market).
contract DeviceRegistry {
    uint8 public constant NONE = 0;
    uint8 public constant ACTIVE = 1;
    uint8 public constant REVOKED = 2;

    /// One storage slot: 20 + 1 + 1 + 4 + 6 bytes.
    struct Device {
        address owner;
        uint8 kind;
        uint8 status;
        uint32 bus;
        uint48 capacityW;
    }

    address public immutable dso;
    mapping(uint256 => Device) private _devices;
    /// The device's own key: it signs the device's orders and meter readings (EIP-712).
    /// address(0) = no key (the device can only trade through its owner or the owner's agent).
    mapping(uint256 => address) public signerOf;
    uint256 public deviceCount;

    event DeviceRegistered(uint256 indexed device, address indexed owner, uint8 kind, uint32 bus, uint48 capacityW);
    event Revoked(uint256 indexed device);
    event SignerSet(uint256 indexed device, address signer);

    error NotDSO(address account);
    error DeviceExists(uint256 device);
    error UnknownDevice(uint256 device);
    error DeviceRevoked(uint256 device);
    error ZeroOwner(uint256 device);
    /// Device ids are below 2**30: EnergyMarket stores an order's device in 30 bits (OrderWords).
    error DeviceIdRange(uint256 device, uint256 limit);
    /// A batch whose arrays differ in length (``field``: 1 owners, 2 kinds, 3 buses,
    /// 4 capacities, 5 signers; ``length`` its length, ``devices`` the devices' length).
    error BatchLengths(uint8 field, uint256 length, uint256 devices);

    constructor(address dso_) {
        dso = dso_;
    }

    function register(uint64 device, address owner, uint8 kind, uint32 bus, uint48 capacityW) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        _register(device, owner, kind, bus, capacityW);
        deviceCount += 1;
    }

    /// Many devices in one transaction, each exactly as ``register`` would (same checks, same
    /// event); the first bad entry reverts the whole batch with its own error naming it.
    function registerDevices(
        uint64[] calldata devices,
        address[] calldata owners,
        uint8[] calldata kinds,
        uint32[] calldata buses,
        uint48[] calldata capacitiesW
    ) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        uint256 n = devices.length;
        if (owners.length != n) revert BatchLengths(1, owners.length, n);
        if (kinds.length != n) revert BatchLengths(2, kinds.length, n);
        if (buses.length != n) revert BatchLengths(3, buses.length, n);
        if (capacitiesW.length != n) revert BatchLengths(4, capacitiesW.length, n);
        for (uint256 i = 0; i < n; ++i) {
            _register(devices[i], owners[i], kinds[i], buses[i], capacitiesW[i]);
        }
        deviceCount += n;
    }

    function _register(uint64 device, address owner, uint8 kind, uint32 bus, uint48 capacityW) private {
        if (_devices[device].status != NONE) revert DeviceExists(device);
        if (device >> 30 != 0) revert DeviceIdRange(device, 1 << 30);
        // an owner nobody can act for would make every interval it trades in unclearable
        if (owner == address(0)) revert ZeroOwner(device);
        _devices[device] = Device(owner, kind, ACTIVE, bus, capacityW);
        emit DeviceRegistered(device, owner, kind, bus, capacityW);
    }

    /// DSO binds (or rebinds, e.g. after a key compromise) the device's signing key.
    function setSigner(uint64 device, address signer) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        _setSigner(device, signer);
    }

    /// ``setSigner`` for many devices in one transaction (the first unknown device reverts it).
    function setSigners(uint64[] calldata devices, address[] calldata signers) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        if (signers.length != devices.length) revert BatchLengths(5, signers.length, devices.length);
        for (uint256 i = 0; i < devices.length; ++i) {
            _setSigner(devices[i], signers[i]);
        }
    }

    function _setSigner(uint64 device, address signer) private {
        if (_devices[device].status == NONE) revert UnknownDevice(device);
        signerOf[device] = signer;
        emit SignerSet(device, signer);
    }

    function revoke(uint64 device) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        uint8 status = _devices[device].status;
        if (status == NONE) revert UnknownDevice(device);
        if (status == REVOKED) revert DeviceRevoked(device);
        _devices[device].status = REVOKED;
        emit Revoked(device);
    }

    /// @return the device record (status NONE when unknown; no revert, the caller decides).
    function get(uint256 device) external view returns (Device memory) {
        return _devices[device];
    }

    /// The device record and its signing key in one call.
    function getWithSigner(uint256 device) external view returns (Device memory, address) {
        return (_devices[device], signerOf[device]);
    }
}
