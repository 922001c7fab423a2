// Hardhat's node as the twin's second EVM (twin/chain/hardhat.py; `hardhat node --hostname
// 127.0.0.1`): Cancun rules, blocks may share a timestamp (a market step's blocks all carry
// the step's simulated time, as on Anvil), standard 30 M gas blocks and EIP-170 code size.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: "cancun",
      allowBlocksWithSameTimestamp: true,
      blockGasLimit: 30000000,
      accounts: { count: 4 },
    },
  },
};
