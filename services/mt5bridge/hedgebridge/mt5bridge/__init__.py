"""A terminal backend that drives MetaTrader 5 through the ``MetaTrader5`` Python package (Windows)."""
