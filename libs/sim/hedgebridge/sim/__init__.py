"""Simulated MT5 terminals that speak the exact EA protocol, for tests, demos and benchmarks."""

from .account import SimAccount, SimConfig
from .feed import PriceFeed
from .terminal import SimTerminal, run_terminals

__all__ = ["PriceFeed", "SimAccount", "SimConfig", "SimTerminal", "run_terminals"]
