"""The market on an EVM chain: Solidity sources and their compile step, the Anvil node, the
transaction client (``tx.py``: JSON-RPC, sending, receipts, revert decoding, the tx log),
ABI helpers (``abi.py``), the market ledger over ``EnergyMarket`` (``ledger.py``) and the
base of the market services' contract clients (``clients.py``)."""
