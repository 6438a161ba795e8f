"""The coordinator: hedge actions across accounts, action sync, and reconciliation."""
