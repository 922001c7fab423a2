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

    constructor(address dso_) {
        dso = dso_;
    }

    function register(uint64 device, address owner, uint8 kind, uint32 bus, uint48 capacityW) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
        if (_devices[device].status != NONE) revert DeviceExists(device);
        // an owner nobody can act for would make every interval it trades in unclearable
        if (owner == address(0)) revert ZeroOwner(device);
        _devices[device] = Device(owner, kind, ACTIVE, bus, capacityW);
        deviceCount += 1;
        emit DeviceRegistered(device, owner, kind, bus, capacityW);
    }

    /// DSO binds (or rebinds, e.g. after a key compromise) the device's signing key.
    function setSigner(uint64 device, address signer) external {
        if (msg.sender != dso) revert NotDSO(msg.sender);
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
