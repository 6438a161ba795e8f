//+------------------------------------------------------------------+
//| SymbolMonitor.mqh - SYMBOL_SPECS: the rules of the symbols used  |
//+------------------------------------------------------------------+
// CSymbolMonitor reports the trading rules of the symbols the EA streams prices for, trades and holds
// positions on (SymbolInfoDouble/Integer: SYMBOL_VOLUME_MIN/MAX/STEP, SYMBOL_TRADE_CONTRACT_SIZE,
// SYMBOL_DIGITS, SYMBOL_TRADE_MODE, SYMBOL_FILLING_MODE). The EA sends SYMBOL_SPECS after every WELCOME, and
// again when a check (every `intervalMs`, and after an OPEN on a symbol) finds that a rule changed or a symbol
// was added. The executor checks orders against the last rules reported before it sends them.
#ifndef HEDGEBRIDGE_SYMBOLMONITOR_MQH
#define HEDGEBRIDGE_SYMBOLMONITOR_MQH

#include "Protocol.mqh"
#include "Json.mqh"
#include "PositionMonitor.mqh"

// the protocol's name of a symbol's trade mode, "" for one it does not know
string HbTradeModeName(const ENUM_SYMBOL_TRADE_MODE mode)
  {
   switch(mode)
     {
      case SYMBOL_TRADE_MODE_DISABLED:
         return(HB_TRADE_MODE_DISABLED);
      case SYMBOL_TRADE_MODE_LONGONLY:
         return(HB_TRADE_MODE_LONG_ONLY);
      case SYMBOL_TRADE_MODE_SHORTONLY:
         return(HB_TRADE_MODE_SHORT_ONLY);
      case SYMBOL_TRADE_MODE_CLOSEONLY:
         return(HB_TRADE_MODE_CLOSE_ONLY);
      case SYMBOL_TRADE_MODE_FULL:
         return(HB_TRADE_MODE_FULL);
      default:
         return("");
     }
  }

class CSymbolMonitor
  {
private:
   string            m_symbols[];  // the symbols reported
   string            m_sent;       // the `symbols` list of the last SYMBOL_SPECS built
   ulong             m_lastCheck;
   int               m_intervalMs;

   bool              Tracked(const string symbol)
     {
      for(int i = 0; i < ArraySize(m_symbols); i++)
         if(m_symbols[i] == symbol)
            return(true);
      return(false);
     }

public:
                     CSymbolMonitor(void) : m_lastCheck(0), m_intervalMs(1000) { m_sent = ""; }

   void              Init(const int intervalMs) { m_intervalMs = intervalMs; }

   // report the rules of `symbol` from now on (a symbol the protocol cannot name is left out)
   void              Track(const string symbol)
     {
      if(!HbIsWireSymbol(symbol) || Tracked(symbol))
         return;
      int n = ArraySize(m_symbols);
      ArrayResize(m_symbols, n + 1);
      m_symbols[n] = symbol;
     }

   bool              Due(void) { return(m_intervalMs > 0 && GetTickCount64() - m_lastCheck >= (ulong)m_intervalMs); }

   // SYMBOL_SPECS of every symbol reported (the open positions' included) when a rule differs from the last
   // one built, or when `force` (a new session); "" when there is nothing new to say
   string            Build(const string accountId, const bool force)
     {
      m_lastCheck = GetTickCount64();
      for(int k = PositionsTotal() - 1; k >= 0; k--)
         if(PositionGetTicket(k) > 0)
            Track(PositionGetString(POSITION_SYMBOL));
      CJsonWriter items;
      items.BeginArray();
      int count = 0;
      for(int i = 0; i < ArraySize(m_symbols); i++)
        {
         string symbol = m_symbols[i];
         double lo = SymbolInfoDouble(symbol, SYMBOL_VOLUME_MIN);
         double hi = SymbolInfoDouble(symbol, SYMBOL_VOLUME_MAX);
         double step = SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP);
         string mode = HbTradeModeName((ENUM_SYMBOL_TRADE_MODE)SymbolInfoInteger(symbol, SYMBOL_TRADE_MODE));
         long digits = SymbolInfoInteger(symbol, SYMBOL_DIGITS);
         if(step <= 0.0 || hi <= 0.0 || lo < 0.0 || lo > hi || mode == "" || digits < 0 || digits > 16)
            continue;  // not known to the terminal (yet), or rules the protocol cannot carry
         long filling = SymbolInfoInteger(symbol, SYMBOL_FILLING_MODE);
         items.BeginObject();
         items.Str(HB_FIELD_SYMBOL, symbol);
         items.Num(HB_FIELD_VOLUME_MIN, lo, 8);
         items.Num(HB_FIELD_VOLUME_MAX, hi, 8);
         items.Num(HB_FIELD_VOLUME_STEP, step, 8);
         items.Num(HB_FIELD_CONTRACT_SIZE, MathMax(SymbolInfoDouble(symbol, SYMBOL_TRADE_CONTRACT_SIZE), 0.0), 8);
         items.Int(HB_FIELD_DIGITS, digits);
         items.Str(HB_FIELD_TRADE_MODE, mode);
         items.BeginArray(HB_FIELD_FILLING_MODES);
         if((filling & SYMBOL_FILLING_FOK) != 0)
            items.Item(HB_FILLING_MODES_FOK);
         if((filling & SYMBOL_FILLING_IOC) != 0)
            items.Item(HB_FILLING_MODES_IOC);
         if((filling & SYMBOL_FILLING_BOC) != 0)
            items.Item(HB_FILLING_MODES_BOC);
         items.EndArray();
         items.EndObject();
         count++;
        }
      items.EndArray();
      if(count == 0 || (!force && items.Text() == m_sent))
         return("");
      m_sent = items.Text();
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_SYMBOL_SPECS);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Str(HB_FIELD_ACCOUNT_ID, accountId);
      w.Raw(HB_FIELD_SYMBOLS, m_sent);
      w.EndObject();
      return(w.Text());
     }
  };

#endif // HEDGEBRIDGE_SYMBOLMONITOR_MQH
