"""The async Python SDK for hedgebridge's client API (``ws://HOST:PORT/client``)."""
