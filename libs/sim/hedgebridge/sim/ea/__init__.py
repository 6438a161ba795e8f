"""The compiled Expert Advisor as a terminal: the WebSocket proxy between it and the gateway (``proxy``)."""
