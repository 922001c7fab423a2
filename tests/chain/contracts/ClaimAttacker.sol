// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

interface IAssetToken {
    function claim() external returns (uint256);
    function transfer(address to, uint256 shares) external;
}

/// A hostile share holder: when AssetToken notifies it of a claim, it tries to claim again
/// (and to move its shares out, so the new holder could claim the same revenue) before the
/// first claim has finished. Records what happened to each attempt.
contract ClaimAttacker {
    IAssetToken public immutable asset;
    address public immutable accomplice;
    uint256 public hooks;
    bool public reclaimed;
    bool public movedShares;
    bytes public claimError;
    bytes public transferError;

    constructor(IAssetToken asset_, address accomplice_) {
        asset = asset_;
        accomplice = accomplice_;
    }

    function attack() external returns (uint256) {
        return asset.claim();
    }

    function onRevenueClaimed(uint256, uint256) external {
        hooks += 1;
        try asset.claim() returns (uint256) {
            reclaimed = true;
        } catch (bytes memory err) {
            claimError = err;
        }
        try asset.transfer(accomplice, 1) {
            movedShares = true;
        } catch (bytes memory err) {
            transferError = err;
        }
    }
}
