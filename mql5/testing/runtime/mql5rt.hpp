// mql5rt.hpp - the MQL5 runtime for tests: MQL5's built-ins in C++ and the terminal that runs one EA.
// The EA's sources are translated by hedgebridge.sim.ea.transform and compiled against this header.
#pragma once
#include "mql5rt/base.hpp"
#include "mql5rt/core.hpp"
#include "mql5rt/io.hpp"
#include "mql5rt/socket.hpp"
#include "mql5rt/trade.hpp"
#include "mql5rt/trade_api.hpp"
#include "mql5rt/trade_control.hpp"
#include "mql5rt/harness.hpp"
