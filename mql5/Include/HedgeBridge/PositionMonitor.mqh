//+------------------------------------------------------------------+
//| PositionMonitor.mqh - POSITION_UPDATE snapshots and outside closes|
//+------------------------------------------------------------------+
// CPositionMonitor follows OnTradeTransaction:
//  - any new deal or position change marks the snapshot dirty; the EA then sends POSITION_UPDATE (the full
//    list of open positions, not a delta) at most every `minIntervalMs`, and at least every `intervalMs`;
//  - a position the hedge system opened that closes without a command (stop loss, take profit, stop out,
//    closed by hand or by another EA) is reported as CLOSED with its reason, so the system never waits for
//    a position that is gone. Closes the EA made itself are reported by the command's own CLOSED.
#ifndef HEDGEBRIDGE_POSITIONMONITOR_MQH
#define HEDGEBRIDGE_POSITIONMONITOR_MQH

#include "Protocol.mqh"
#include "Json.mqh"
#include "OrderManager.mqh"

// the gateway's pattern for symbols: 1 to 32 of A-Z a-z 0-9 . _ # + -
bool HbIsWireSymbol(const string symbol)
  {
   int n = StringLen(symbol);
   if(n < 1 || n > HB_MAXLEN_SYMBOL)
      return(false);
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(symbol, i);
      bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_'
                || c == '#' || c == '+' || c == '-';
      if(!ok)
         return(false);
     }
   return(true);
  }

string HbDealReason(const ENUM_DEAL_REASON reason)
  {
   switch(reason)
     {
      case DEAL_REASON_SL:
         return("stop_loss");
      case DEAL_REASON_TP:
         return("take_profit");
      case DEAL_REASON_SO:
         return("stop_out");
      case DEAL_REASON_CLIENT:
      case DEAL_REASON_MOBILE:
      case DEAL_REASON_WEB:
         return("manual");
      case DEAL_REASON_EXPERT:
         return("expert");
      default:
         return("other");
     }
  }

class CPositionMonitor
  {
private:
   COrderManager    *m_orders;
   bool              m_dirty;
   ulong             m_lastSent;
   int               m_intervalMs;
   int               m_minIntervalMs;
   string            m_skipped;   // symbols already reported as not sendable

public:
                     CPositionMonitor(void) : m_orders(NULL), m_dirty(true), m_lastSent(0), m_intervalMs(5000),
                     m_minIntervalMs(100) {}

   void              Init(COrderManager *orders, const int intervalMs, const int minIntervalMs)
     {
      m_orders = orders;
      m_intervalMs = intervalMs;
      m_minIntervalMs = minIntervalMs;
      m_dirty = true;
     }

   void              MarkDirty(void) { m_dirty = true; }

   // A snapshot is due: something changed (and minIntervalMs passed), or intervalMs passed.
   bool              Due(void)
     {
      ulong now = GetTickCount64();
      if(m_dirty && now - m_lastSent >= (ulong)m_minIntervalMs)
         return(true);
      return(m_intervalMs > 0 && now - m_lastSent >= (ulong)m_intervalMs);
     }

   // POSITION_UPDATE: every open position of the account (syncId: the SYNC it answers, if any)
   string            BuildSnapshot(const string accountId, const string syncId = "")
     {
      m_dirty = false;
      m_lastSent = GetTickCount64();
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_POSITION_UPDATE);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Str(HB_FIELD_ACCOUNT_ID, accountId);
      w.BeginArray(HB_FIELD_POSITIONS);
      int total = PositionsTotal();
      for(int i = 0; i < total; i++)
        {
         ulong ticket = PositionGetTicket(i);
         if(ticket == 0)
            continue;
         string symbol = PositionGetString(POSITION_SYMBOL);
         double volume = PositionGetDouble(POSITION_VOLUME);
         if(!HbIsWireSymbol(symbol) || volume <= 0.0)
           {
            if(StringFind(m_skipped, "|" + symbol + "|") < 0)
              {
               m_skipped += "|" + symbol + "|";
               PrintFormat("hedgebridge: positions on %s are not reported (the protocol's symbols are 1-32 of "
                           "A-Z a-z 0-9 . _ # + -)", symbol);
              }
            continue;
           }
         int digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
         ulong identifier = (ulong)PositionGetInteger(POSITION_IDENTIFIER);
         string positionId = "";
         string actionId = "";
         if(m_orders != NULL)
            m_orders.Book().Lookup(identifier, positionId, actionId);
         w.BeginObject();
         w.Str(HB_FIELD_MT_TICKET, IntegerToString((long)identifier));
         if(positionId != "")
            w.Str(HB_FIELD_POSITION_ID, positionId);
         if(actionId != "")
            w.Str(HB_FIELD_ACTION_ID, actionId);
         w.Str(HB_FIELD_SYMBOL, symbol);
         w.Str(HB_FIELD_SIDE, PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY ? HB_SIDE_BUY : HB_SIDE_SELL);
         w.Num(HB_FIELD_VOLUME, volume, 8);
         w.Num(HB_FIELD_OPEN_PRICE, PositionGetDouble(POSITION_PRICE_OPEN), digits);
         w.Num(HB_FIELD_CURRENT_PRICE, PositionGetDouble(POSITION_PRICE_CURRENT), digits);
         w.Num(HB_FIELD_PROFIT, PositionGetDouble(POSITION_PROFIT), 2);
         w.Str(HB_FIELD_OPEN_TIME, HbServerMscToIso(PositionGetInteger(POSITION_TIME_MSC)));
         double sl = PositionGetDouble(POSITION_SL);
         double tp = PositionGetDouble(POSITION_TP);
         if(sl > 0.0)
            w.Num(HB_FIELD_STOP_LOSS, sl, digits);
         if(tp > 0.0)
            w.Num(HB_FIELD_TAKE_PROFIT, tp, digits);
         w.EndObject();
        }
      w.EndArray();
      if(syncId != "")
         w.Str(HB_FIELD_SYNC_ID, syncId);
      w.EndObject();
      return(w.Text());
     }

   // CLOSED for a position of the hedge system that something other than this EA's CLOSE ended: the closing
   // deal's price, profit (with swap and commission) and reason
   string            ClosedReport(const ulong deal, const ulong position, const string positionId,
                                  const string accountId)
     {
      string symbol = HistoryDealGetString(deal, DEAL_SYMBOL);
      int digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
      double profit = HistoryDealGetDouble(deal, DEAL_PROFIT) + HistoryDealGetDouble(deal, DEAL_SWAP)
                      + HistoryDealGetDouble(deal, DEAL_COMMISSION);
      double volume = HistoryDealGetDouble(deal, DEAL_VOLUME);
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_CLOSED);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Str(HB_FIELD_ACCOUNT_ID, accountId);
      w.Str(HB_FIELD_POSITION_ID, positionId);
      w.Str(HB_FIELD_MT_TICKET, IntegerToString((long)position));
      w.Num(HB_FIELD_PRICE, HistoryDealGetDouble(deal, DEAL_PRICE), digits);
      w.Num(HB_FIELD_PROFIT, profit, 2);
      if(volume > 0.0)
         w.Num(HB_FIELD_VOLUME, volume, 8);
      w.Num(HB_FIELD_REMAINING_VOLUME, 0.0, 8);
      w.Str(HB_FIELD_STATUS, HB_STATUS_SUCCESS);
      w.Str(HB_FIELD_REASON, HbDealReason((ENUM_DEAL_REASON)HistoryDealGetInteger(deal, DEAL_REASON)));
      w.EndObject();
      return(w.Text());
     }

   // At WELCOME: CLOSED for every position of the book that closed while this EA was disconnected or stopped
   // (its closing deal is in the history); such positions leave the book.
   int               ReportVanished(const string accountId, string &reports[])
     {
      ArrayResize(reports, 0);
      if(m_orders == NULL || !HistorySelect(0, TimeCurrent() + 86400))
         return(0);
      CPositionBook *book = m_orders.Book();
      for(int i = book.Size() - 1; i >= 0; i--)
        {
         ulong ticket = book.TicketAt(i);
         if(HbSelectPosition(ticket) > 0)
            continue;
         ulong closing = 0;
         for(int d = HistoryDealsTotal() - 1; d >= 0 && closing == 0; d--)
           {
            ulong deal = HistoryDealGetTicket(d);
            ENUM_DEAL_ENTRY entry = (ENUM_DEAL_ENTRY)HistoryDealGetInteger(deal, DEAL_ENTRY);
            if((ulong)HistoryDealGetInteger(deal, DEAL_POSITION_ID) == ticket
               && (entry == DEAL_ENTRY_OUT || entry == DEAL_ENTRY_OUT_BY))
               closing = deal;
           }
         string positionId = "";
         string actionId = "";
         if(closing == 0 || !book.Lookup(ticket, positionId, actionId))
            continue;  // not in the history (yet): the next WELCOME looks again
         int n = ArraySize(reports);
         ArrayResize(reports, n + 1);
         reports[n] = ClosedReport(closing, ticket, positionId, accountId);
         book.Forget(ticket);
        }
      return(ArraySize(reports));
     }

   // A transaction: marks the snapshot dirty; returns true with a CLOSED event in `closed` when a position
   // the hedge system opened was closed completely by something other than this EA's CLOSE.
   bool              OnTransaction(const MqlTradeTransaction &trans, const string accountId, string &closed)
     {
      if(trans.type == TRADE_TRANSACTION_DEAL_ADD || trans.type == TRADE_TRANSACTION_POSITION
         || trans.type == TRADE_TRANSACTION_HISTORY_ADD)
         m_dirty = true;
      if(trans.type != TRADE_TRANSACTION_DEAL_ADD || trans.deal == 0 || m_orders == NULL || accountId == "")
         return(false);
      if(!HistoryDealSelect(trans.deal))
         return(false);
      ENUM_DEAL_ENTRY entry = (ENUM_DEAL_ENTRY)HistoryDealGetInteger(trans.deal, DEAL_ENTRY);
      if(entry != DEAL_ENTRY_OUT && entry != DEAL_ENTRY_OUT_BY)
         return(false);
      ulong position = (ulong)HistoryDealGetInteger(trans.deal, DEAL_POSITION_ID);
      string positionId = "";
      string actionId = "";
      if(!m_orders.Book().Lookup(position, positionId, actionId) || positionId == "")
         return(false);  // not a position of the hedge system
      bool ownClose = (ulong)HistoryDealGetInteger(trans.deal, DEAL_MAGIC) == m_orders.Magic()
                      && HbIsOwnComment(HistoryDealGetString(trans.deal, DEAL_COMMENT));
      if(ownClose || HbSelectPosition(position) > 0)
         return(false);  // reported by the command, or only partly closed (the snapshot shows the rest)
      closed = ClosedReport(trans.deal, position, positionId, accountId);
      m_orders.Book().Forget(position);
      return(true);
     }
  };

#endif // HEDGEBRIDGE_POSITIONMONITOR_MQH
