// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SettlementToken} from "./SettlementToken.sol";
import {DeviceRegistry} from "./DeviceRegistry.sol";

/// @title AncillaryServices — frequency-regulation payments for a VPP's resources.
/// @notice Mirrors twin/services/ancillary/rules.py (AncillaryLedger) exactly: prices are
/// fixed at deployment (capacity per MW-hour, performance per MW of mileage, micro-units);
/// the payer (the DSO's account, paying for the TSO) settles each interval once with every
/// resource's capacity (W), mileage (W) and precision score (ppm); each resource's owner (from
/// the device registry) is paid floor(capacityW * intervalS * capacityPrice * score /
/// (3600 * 1e12)) + floor(mileageW * performancePrice * score / 1e12), pulled from the payer.
/// The upward reserve product (twin/services/ancillary/reserve.py) is settled apart, once per
/// interval: floor(capacityW * intervalS * reserveCapacityPrice / (3600 * 1e6)) for the
/// capacity held + floor(energyWh * reserveEnergyPrice / 1e6) for the energy activated.
contract AncillaryServices {
    uint256 public constant PPM = 1e6;
    uint256 public constant MICRO = 1e6;

    SettlementToken public immutable token;
    DeviceRegistry public immutable registry;
    address public immutable payer;
    uint256 public immutable intervalS;
    uint256 public immutable capacityPrice; // per MW of capacity per hour
    uint256 public immutable performancePrice; // per MW of mileage
    uint256 public immutable reserveCapacityPrice; // per MW of reserve capacity per hour
    uint256 public immutable reserveEnergyPrice; // per MWh of activated reserve energy

    mapping(uint256 => bool) public settled; // interval => settled
    mapping(uint256 => bool) public reserveSettled; // interval => reserve settled
    uint256 public paid;

    event RegulationPaid(
        uint256 indexed interval,
        uint256 indexed device,
        address owner,
        uint256 capacityW,
        uint256 mileageW,
        uint256 scorePpm,
        uint256 capacityAmount,
        uint256 performanceAmount
    );
    event ReservePaid(
        uint256 indexed interval,
        uint256 indexed device,
        address owner,
        uint256 capacityW,
        uint256 energyWh,
        uint256 capacityAmount,
        uint256 energyAmount
    );
    event IntervalSettled(uint256 indexed interval, uint256 capacityAmount, uint256 performanceAmount);

    error NotDSO(address account);
    error UnknownDevice(uint256 device);
    error BadAmount(uint256 amount);
    error AlreadySettled(uint256 interval);
    error BadReadings(uint256 position);

    constructor(SettlementToken token_, DeviceRegistry registry_, uint256 intervalS_, uint256 capacityPrice_, uint256 performancePrice_,
                uint256 reserveCapacityPrice_, uint256 reserveEnergyPrice_) {
        if (intervalS_ == 0) revert BadAmount(0);
        token = token_;
        registry = registry_;
        payer = registry_.dso();
        intervalS = intervalS_;
        capacityPrice = capacityPrice_;
        performancePrice = performancePrice_;
        reserveCapacityPrice = reserveCapacityPrice_;
        reserveEnergyPrice = reserveEnergyPrice_;
    }

    function amounts(uint256 capacityW, uint256 mileageW, uint256 scorePpm) public view returns (uint256, uint256) {
        return (
            (capacityW * intervalS * capacityPrice * scorePpm) / (3600 * MICRO * PPM),
            (mileageW * performancePrice * scorePpm) / (MICRO * PPM)
        );
    }

    /// Settle one interval: pay every resource's owner from the payer's wallet (approved).
    function settle(
        uint64 interval,
        uint64[] calldata devices,
        uint256[] calldata capacityW,
        uint256[] calldata mileageW,
        uint256[] calldata scorePpm
    ) external {
        if (msg.sender != payer) revert NotDSO(msg.sender);
        if (settled[interval]) revert AlreadySettled(interval);
        uint256 n = devices.length;
        if (capacityW.length != n || mileageW.length != n || scorePpm.length != n) revert BadReadings(n);
        settled[interval] = true;
        uint256 capTotal;
        uint256 perfTotal;
        for (uint256 k = 0; k < n; ++k) {
            DeviceRegistry.Device memory d = registry.get(devices[k]);
            if (d.status != 1) revert UnknownDevice(devices[k]);
            if (scorePpm[k] > PPM) revert BadAmount(scorePpm[k]);
            (uint256 c, uint256 p) = amounts(capacityW[k], mileageW[k], scorePpm[k]);
            capTotal += c;
            perfTotal += p;
            if (c + p > 0) token.transferFrom(payer, d.owner, c + p);
            emit RegulationPaid(interval, devices[k], d.owner, capacityW[k], mileageW[k], scorePpm[k], c, p);
        }
        paid += capTotal + perfTotal;
        emit IntervalSettled(interval, capTotal, perfTotal);
    }

    /// Settle one interval's upward reserve: capacity held and energy activated, each
    /// resource's owner paid from the payer's wallet (approved).
    function settleReserve(
        uint64 interval,
        uint64[] calldata devices,
        uint256[] calldata capacityW,
        uint256[] calldata energyWh
    ) external {
        if (msg.sender != payer) revert NotDSO(msg.sender);
        if (reserveSettled[interval]) revert AlreadySettled(interval);
        uint256 n = devices.length;
        if (capacityW.length != n || energyWh.length != n) revert BadReadings(n);
        reserveSettled[interval] = true;
        uint256 total;
        for (uint256 k = 0; k < n; ++k) {
            DeviceRegistry.Device memory d = registry.get(devices[k]);
            if (d.status != 1) revert UnknownDevice(devices[k]);
            uint256 c = (capacityW[k] * intervalS * reserveCapacityPrice) / (3600 * MICRO);
            uint256 w = (energyWh[k] * reserveEnergyPrice) / MICRO;
            total += c + w;
            if (c + w > 0) token.transferFrom(payer, d.owner, c + w);
            emit ReservePaid(interval, devices[k], d.owner, capacityW[k], energyWh[k], c, w);
        }
        paid += total;
    }
}
