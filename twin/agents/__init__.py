"""gridtwin."""
