"""The monitor: keeps the live picture of terminals and order outcomes from the events on NATS."""
