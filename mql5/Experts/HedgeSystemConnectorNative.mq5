//+------------------------------------------------------------------+
//| HedgeSystemConnectorNative.mq5 - the EA without the DLL          |
//+------------------------------------------------------------------+
// The same Expert Advisor as HedgeSystemConnector.mq5, built without the DLL transport: it imports nothing,
// so it loads in a terminal where "Allow DLL imports" is off. It speaks WebSocket over MQL5's own sockets
// (the gateway's host must be in Tools > Options > Expert Advisors > "Allow WebRequest for listed URL").
// The Transport input must be Native.
#define HB_NO_DLL
#include "HedgeSystemConnector.mq5"
