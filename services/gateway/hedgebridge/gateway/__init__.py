"""The gateway: terminates terminal (EA) WebSocket connections and bridges them to NATS."""
