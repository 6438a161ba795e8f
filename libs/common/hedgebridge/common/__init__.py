"""Plumbing shared by hedgebridge's services: configuration, auth, logs, NATS, the cache, local servers."""
