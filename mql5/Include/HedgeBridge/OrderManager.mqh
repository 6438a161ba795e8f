//+------------------------------------------------------------------+
//| OrderManager.mqh - executes OPEN, CLOSE and MODIFY exactly once  |
//+------------------------------------------------------------------+
// Every order the EA sends carries the EA's magic number and a comment that identifies the command:
//
//    "hb" + tag(actionId) + tag(positionId)        (26 characters; MT5 keeps at most 31)
//    tag(s) = the first 12 characters of base64url(SHA-256(UTF-8 bytes of s)); "------------" for none
//
// Before executing a command with an actionId, the order manager looks for an earlier execution of it:
// its own record of this run's results, then the open positions (POSITION_COMMENT), then the deal history
// (HistorySelect, DEAL_COMMENT) of the last `historyDays` days. A command found there is answered with the
// first result again (alreadyExecuted true) and never sent to the trade server twice. Only executions
// count: a command the trade server refused (requote, rejected...) leaves no deal, so the same actionId
// sent again (the executor's retry) is executed.
//
// A MODIFY (TRADE_ACTION_SLTP) leaves no deal: its result is remembered for this run, and setting the same
// stops again changes nothing (the trade server answers 10025 TRADE_RETCODE_NO_CHANGES), so a repeat is
// harmless. Both stops are always sent: a field left 0 in the request removes that stop.
//
// CPositionBook remembers which hedge-system positionId/actionId each position belongs to, in
// MQL5/Files/HedgeBridge/book_<login>.jsonl, so that reports keep naming them after a restart.
//
// A position is named by its POSITION_IDENTIFIER everywhere (the book, mtTicket on the wire, the deals'
// DEAL_POSITION_ID): it never changes during the position's life, while its POSITION_TICKET can (a swap
// charged by re-opening the position gives it a new ticket). Only a trade request names the current ticket.
#ifndef HEDGEBRIDGE_ORDERMANAGER_MQH
#define HEDGEBRIDGE_ORDERMANAGER_MQH

#include <Trade\Trade.mqh>
#include "Protocol.mqh"
#include "Json.mqh"

#define HB_COMMENT_PREFIX "hb"
#define HB_TAG_LENGTH     12
#define HB_NO_TAG         "------------"

// tag(s): see the top of this file
string HbTag(const string s)
  {
   if(s == "")
      return(HB_NO_TAG);
   uchar data[];
   uchar key[];
   uchar digest[];
   uchar text[];
   int n = StringToCharArray(s, data, 0, WHOLE_ARRAY, CP_UTF8);
   ArrayResize(data, MathMax(n - 1, 0));
   if(CryptEncode(CRYPT_HASH_SHA256, data, key, digest) <= 0 || CryptEncode(CRYPT_BASE64, digest, key, text) <= 0)
      return(HB_NO_TAG);
   string tag = CharArrayToString(text, 0, HB_TAG_LENGTH, CP_ACP);
   StringReplace(tag, "+", "-");
   StringReplace(tag, "/", "_");
   return(tag);
  }

string HbOrderComment(const string actionId, const string positionId)
  {
   return(HB_COMMENT_PREFIX + HbTag(actionId) + HbTag(positionId));
  }

// the positionId tag inside a comment written by HbOrderComment ("" when the comment is not one)
string HbCommentPositionTag(const string comment)
  {
   if(StringLen(comment) < 2 + 2 * HB_TAG_LENGTH || StringFind(comment, HB_COMMENT_PREFIX) != 0)
      return("");
   return(StringSubstr(comment, 2 + HB_TAG_LENGTH, HB_TAG_LENGTH));
  }

// the open position whose POSITION_IDENTIFIER is `identifier`, selected; its current ticket, or 0
ulong HbSelectPosition(const ulong identifier)
  {
   if(identifier == 0)
      return(0);
   if(PositionSelectByTicket(identifier) && (ulong)PositionGetInteger(POSITION_IDENTIFIER) == identifier)
      return(identifier);
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong ticket = PositionGetTicket(i);
      if(ticket > 0 && (ulong)PositionGetInteger(POSITION_IDENTIFIER) == identifier)
         return(ticket);
     }
   return(0);
  }

bool HbIsOwnComment(const string comment)
  {
   return(HbCommentPositionTag(comment) != "");
  }

//+------------------------------------------------------------------+
//| The outcome of one OPEN or CLOSE                                 |
//+------------------------------------------------------------------+
struct SHbOrderResult
  {
   bool              answered;        // false: the outcome is not known yet (order placed, no deal yet)
   bool              success;
   bool              alreadyExecuted;
   ulong             ticket;          // POSITION_IDENTIFIER (mtTicket)
   double            price;
   double            volume;          // filled (OPEN) or closed (CLOSE) volume
   double            remaining;       // CLOSE: volume left open
   double            profit;          // CLOSE: realised profit, swap and commission included
   uint              retcode;         // MT5 trade server return code, 0 when none
   string            message;
   bool              stops;           // sl and tp are known (OPEN with stops, MODIFY with its position)
   double            sl;              // the position's stop loss after the command, 0 for none
   double            tp;              // its take profit, 0 for none
  };

void HbResetResult(SHbOrderResult &r)
  {
   r.answered = true;
   r.success = false;
   r.alreadyExecuted = false;
   r.ticket = 0;
   r.price = 0.0;
   r.volume = 0.0;
   r.remaining = 0.0;
   r.profit = 0.0;
   r.retcode = 0;
   r.message = "";
   r.stops = false;
   r.sl = 0.0;
   r.tp = 0.0;
  }

//+------------------------------------------------------------------+
//| Position identifier -> the hedge system's positionId and actionId|
//+------------------------------------------------------------------+
class CPositionBook
  {
private:
   ulong             m_tickets[];
   string            m_positionIds[];
   string            m_actionIds[];
   string            m_file;

   string            Line(const int i)
     {
      return("[" + HbJsonQuote(IntegerToString((long)m_tickets[i])) + "," + HbJsonQuote(m_positionIds[i]) + ","
             + HbJsonQuote(m_actionIds[i]) + "]");
     }

   void              Put(const ulong ticket, const string positionId, const string actionId)
     {
      int i = IndexOf(ticket);
      if(i < 0)
        {
         i = ArraySize(m_tickets);
         ArrayResize(m_tickets, i + 1, 64);
         ArrayResize(m_positionIds, i + 1, 64);
         ArrayResize(m_actionIds, i + 1, 64);
        }
      m_tickets[i] = ticket;
      m_positionIds[i] = positionId;
      m_actionIds[i] = actionId;
     }

public:
   void              Init(const string file)
     {
      m_file = file;
      Load();
     }

   int               IndexOf(const ulong ticket)
     {
      for(int i = ArraySize(m_tickets) - 1; i >= 0; i--)
         if(m_tickets[i] == ticket)
            return(i);
      return(-1);
     }

   bool              Lookup(const ulong ticket, string &positionId, string &actionId)
     {
      int i = IndexOf(ticket);
      if(i < 0)
         return(false);
      positionId = m_positionIds[i];
      actionId = m_actionIds[i];
      return(true);
     }

   int               Size(void) { return(ArraySize(m_tickets)); }
   ulong             TicketAt(const int i) { return(m_tickets[i]); }

   ulong             TicketOf(const string positionId)
     {
      for(int i = ArraySize(m_tickets) - 1; i >= 0; i--)
         if(m_positionIds[i] == positionId)
            return(m_tickets[i]);
      return(0);
     }

   void              Remember(const ulong ticket, const string positionId, const string actionId)
     {
      Put(ticket, positionId, actionId);
      int h = FileOpen(m_file, FILE_READ | FILE_WRITE | FILE_TXT | FILE_ANSI | FILE_SHARE_READ, 0, CP_UTF8);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("hedgebridge: cannot write %s (error %d)", m_file, GetLastError());
         return;
        }
      FileSeek(h, 0, SEEK_END);
      FileWriteString(h, Line(IndexOf(ticket)) + "\r\n");
      FileClose(h);
     }

   void              Forget(const ulong ticket)
     {
      int i = IndexOf(ticket);
      if(i < 0)
         return;
      int last = ArraySize(m_tickets) - 1;
      m_tickets[i] = m_tickets[last];
      m_positionIds[i] = m_positionIds[last];
      m_actionIds[i] = m_actionIds[last];
      ArrayResize(m_tickets, last);
      ArrayResize(m_positionIds, last);
      ArrayResize(m_actionIds, last);
      Rewrite();
     }

   // the whole book, written to a new file that then replaces the old one
   void              Rewrite(void)
     {
      string temporary = m_file + ".new";
      int h = FileOpen(temporary, FILE_WRITE | FILE_TXT | FILE_ANSI, 0, CP_UTF8);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("hedgebridge: cannot write %s (error %d)", temporary, GetLastError());
         return;
        }
      for(int i = 0; i < ArraySize(m_tickets); i++)
         FileWriteString(h, Line(i) + "\r\n");
      FileClose(h);
      if(!FileMove(temporary, 0, m_file, FILE_REWRITE))
         PrintFormat("hedgebridge: cannot replace %s (error %d)", m_file, GetLastError());
     }

   // read the book (a position that closed while the EA was stopped stays in it until its CLOSED is reported)
   // and write it back compacted
   void              Load(void)
     {
      ArrayResize(m_tickets, 0);
      ArrayResize(m_positionIds, 0);
      ArrayResize(m_actionIds, 0);
      int h = FileOpen(m_file, FILE_READ | FILE_TXT | FILE_ANSI | FILE_SHARE_READ, 0, CP_UTF8);
      if(h != INVALID_HANDLE)
        {
         CJsonParser parser;
         while(!FileIsEnding(h))
           {
            string line = FileReadString(h);
            if(StringLen(line) < 2)
               continue;
            string error;
            CJsonValue *row = parser.Parse(line, error);
            if(row == NULL)
               continue;
            if(row.m_type == HB_JSON_ARRAY && row.Size() == 3)
              {
               ulong identifier = (ulong)StringToInteger(row.At(0).m_text);
               if(identifier > 0)
                  Put(identifier, row.At(1).m_text, row.At(2).m_text);
              }
            delete row;
           }
         FileClose(h);
        }
      Rewrite();
     }
  };

//+------------------------------------------------------------------+
//| Orders: OPEN and CLOSE commands through CTrade                   |
//+------------------------------------------------------------------+
class COrderManager
  {
private:
   CTrade            m_trade;
   ulong             m_magic;
   ulong             m_deviation;
   int               m_historyDays;
   CPositionBook     m_book;
   // results of this run by actionId (only executed orders: a refused one may be sent again)
   string            m_doneIds[];
   string            m_doneKinds[];
   SHbOrderResult    m_doneResults[];

   void              RememberResult(const string kind, const string actionId, const SHbOrderResult &r)
     {
      if(actionId == "" || !r.success)
         return;
      int n = ArraySize(m_doneIds);
      if(n >= 10000)
        {
         // a cache of this run: the positions and the deal history still answer for older actionIds
         ArrayResize(m_doneIds, 0);
         ArrayResize(m_doneKinds, 0);
         ArrayResize(m_doneResults, 0);
         n = 0;
        }
      ArrayResize(m_doneIds, n + 1, 256);
      ArrayResize(m_doneKinds, n + 1, 256);
      ArrayResize(m_doneResults, n + 1, 256);
      m_doneIds[n] = actionId;
      m_doneKinds[n] = kind;
      m_doneResults[n] = r;
     }

   bool              RecalledResult(const string kind, const string actionId, SHbOrderResult &r)
     {
      for(int i = ArraySize(m_doneIds) - 1; i >= 0; i--)
         if(m_doneIds[i] == actionId && m_doneKinds[i] == kind)
           {
            r = m_doneResults[i];
            r.alreadyExecuted = true;
            return(true);
           }
      return(false);
     }

   bool              SelectHistory(void)
     {
      datetime now = TimeCurrent();
      return(HistorySelect(now - (datetime)((long)m_historyDays * 86400), now + 86400));
     }

   // an earlier OPEN of actionId: an open position, else the opening deal in the history
   bool              FindOpen(const string actionId, SHbOrderResult &r)
     {
      string prefix = HB_COMMENT_PREFIX + HbTag(actionId);
      for(int i = PositionsTotal() - 1; i >= 0; i--)
        {
         ulong ticket = PositionGetTicket(i);
         if(ticket == 0 || (ulong)PositionGetInteger(POSITION_MAGIC) != m_magic)
            continue;
         if(StringFind(PositionGetString(POSITION_COMMENT), prefix) != 0)
            continue;
         r.success = true;
         r.ticket = (ulong)PositionGetInteger(POSITION_IDENTIFIER);
         r.price = PositionGetDouble(POSITION_PRICE_OPEN);
         r.volume = PositionGetDouble(POSITION_VOLUME);
         return(true);
        }
      if(!SelectHistory())
         return(false);
      for(int i = HistoryDealsTotal() - 1; i >= 0; i--)
        {
         ulong deal = HistoryDealGetTicket(i);
         if(deal == 0 || (ENUM_DEAL_ENTRY)HistoryDealGetInteger(deal, DEAL_ENTRY) != DEAL_ENTRY_IN)
            continue;
         if((ulong)HistoryDealGetInteger(deal, DEAL_MAGIC) != m_magic)
            continue;
         if(StringFind(HistoryDealGetString(deal, DEAL_COMMENT), prefix) != 0)
            continue;
         r.success = true;
         r.ticket = (ulong)HistoryDealGetInteger(deal, DEAL_POSITION_ID);
         r.price = HistoryDealGetDouble(deal, DEAL_PRICE);
         r.volume = HistoryDealGetDouble(deal, DEAL_VOLUME);
         return(true);
        }
      return(false);
     }

   // an earlier CLOSE of actionId: its closing deals in the history
   bool              FindClose(const string actionId, SHbOrderResult &r)
     {
      if(!SelectHistory())
         return(false);
      string prefix = HB_COMMENT_PREFIX + HbTag(actionId);
      double volume = 0.0;
      double notional = 0.0;
      double profit = 0.0;
      ulong position = 0;
      for(int i = HistoryDealsTotal() - 1; i >= 0; i--)
        {
         ulong deal = HistoryDealGetTicket(i);
         if(deal == 0)
            continue;
         ENUM_DEAL_ENTRY entry = (ENUM_DEAL_ENTRY)HistoryDealGetInteger(deal, DEAL_ENTRY);
         if(entry != DEAL_ENTRY_OUT && entry != DEAL_ENTRY_OUT_BY)
            continue;
         if((ulong)HistoryDealGetInteger(deal, DEAL_MAGIC) != m_magic)
            continue;
         if(StringFind(HistoryDealGetString(deal, DEAL_COMMENT), prefix) != 0)
            continue;
         double v = HistoryDealGetDouble(deal, DEAL_VOLUME);
         volume += v;
         notional += v * HistoryDealGetDouble(deal, DEAL_PRICE);
         profit += HistoryDealGetDouble(deal, DEAL_PROFIT) + HistoryDealGetDouble(deal, DEAL_SWAP)
                   + HistoryDealGetDouble(deal, DEAL_COMMISSION);
         position = (ulong)HistoryDealGetInteger(deal, DEAL_POSITION_ID);
        }
      if(volume <= 0.0)
         return(false);
      r.success = true;
      r.ticket = position;
      r.volume = volume;
      r.price = notional / volume;
      r.profit = profit;
      r.remaining = HbSelectPosition(position) > 0 ? PositionGetDouble(POSITION_VOLUME) : 0.0;
      return(true);
     }

   // a deal in the history (just after OrderSend it may take a moment to appear)
   bool              WaitForDeal(const ulong deal)
     {
      if(deal == 0)
         return(false);
      for(int attempt = 0; attempt < 25; attempt++)
        {
         if(HistoryDealSelect(deal))
            return(true);
         Sleep(20);
        }
      return(false);
     }

   static ENUM_ORDER_TYPE_FILLING Filling(const string symbol)
     {
      long modes = SymbolInfoInteger(symbol, SYMBOL_FILLING_MODE);
      if((modes & SYMBOL_FILLING_FOK) != 0)
         return(ORDER_FILLING_FOK);
      if((modes & SYMBOL_FILLING_IOC) != 0)
         return(ORDER_FILLING_IOC);
      return(ORDER_FILLING_RETURN);
     }

   static int        VolumeDigits(const double step)
     {
      int digits = 0;
      double s = step;
      while(digits < 8 && MathAbs(s - MathRound(s)) > 1e-9)
        {
         s *= 10.0;
         digits++;
        }
      return(digits);
     }

   bool              CheckVolume(const string symbol, const double volume, SHbOrderResult &r)
     {
      double lo = SymbolInfoDouble(symbol, SYMBOL_VOLUME_MIN);
      double hi = SymbolInfoDouble(symbol, SYMBOL_VOLUME_MAX);
      double step = SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP);
      bool ok = volume >= lo - 1e-9 && (hi <= 0.0 || volume <= hi + 1e-9);
      if(ok && step > 0.0)
         ok = MathAbs(volume / step - MathRound(volume / step)) < 1e-6;
      if(!ok)
        {
         r.retcode = TRADE_RETCODE_INVALID_VOLUME;
         r.message = StringFormat("volume %s is not tradable on %s (min %s, max %s, step %s)",
                                  HbJsonNumber(volume, 8), symbol, HbJsonNumber(lo, 8), HbJsonNumber(hi, 8),
                                  HbJsonNumber(step, 8));
        }
      return(ok);
     }

   bool              CheckTradingAllowed(SHbOrderResult &r)
     {
      if(!TerminalInfoInteger(TERMINAL_TRADE_ALLOWED) || !MQLInfoInteger(MQL_TRADE_ALLOWED))
        {
         r.retcode = TRADE_RETCODE_CLIENT_DISABLES_AT;
         r.message = "algorithmic trading is disabled in the terminal or for this EA";
         return(false);
        }
      if(!AccountInfoInteger(ACCOUNT_TRADE_EXPERT))
        {
         r.retcode = TRADE_RETCODE_SERVER_DISABLES_AT;
         r.message = "the trade server does not allow expert trading on this account";
         return(false);
        }
      return(true);
     }

   static string     Describe(const MqlTradeResult &res)
     {
      string text = res.comment != "" ? res.comment : "trade server answer";
      return(StringFormat("%s (retcode %u)", text, res.retcode));
     }

   bool              Send(MqlTradeRequest &request, MqlTradeResult &result)
     {
      ResetLastError();
      bool sent = m_trade.OrderSend(request, result);
      if(!sent && result.retcode == 0)
         result.comment = StringFormat("OrderSend failed in the terminal (error %d)", GetLastError());
      return(sent);
     }

   // the identifier of the open position a CLOSE names: mtTicket when given, else positionId (book, then
   // order comments); 0 when there is none
   ulong             FindPosition(const string mtTicket, const string positionId)
     {
      if(mtTicket != "")
        {
         ulong identifier = (ulong)StringToInteger(mtTicket);
         if(identifier > 0 && IntegerToString((long)identifier) == mtTicket && HbSelectPosition(identifier) > 0)
            return(identifier);
         return(0);
        }
      ulong known = m_book.TicketOf(positionId);
      if(HbSelectPosition(known) > 0)
         return(known);
      string tag = HbTag(positionId);
      for(int i = PositionsTotal() - 1; i >= 0; i--)
        {
         ulong ticket = PositionGetTicket(i);
         if(ticket > 0 && HbCommentPositionTag(PositionGetString(POSITION_COMMENT)) == tag)
            return((ulong)PositionGetInteger(POSITION_IDENTIFIER));
        }
      return(0);
     }

public:
                     COrderManager(void) : m_magic(0), m_deviation(10), m_historyDays(30) {}

   void              Init(const ulong magic, const ulong deviationPoints, const int historyDays, const string bookFile)
     {
      m_magic = magic;
      m_deviation = deviationPoints;
      m_historyDays = MathMax(historyDays, 1);
      m_trade.SetExpertMagicNumber(magic);
      m_trade.SetDeviationInPoints(deviationPoints);
      m_trade.SetAsyncMode(false);
      m_trade.LogLevel(LOG_LEVEL_ERRORS);
      m_book.Init(bookFile);
     }

   ulong             Magic(void) { return(m_magic); }

   CPositionBook    *Book(void) { return(GetPointer(m_book)); }

   // OPEN: a market position of volume lots on symbol ("BUY" or "SELL"), with its stops (0: none)
   void              Open(const string actionId, const string positionId, const string symbol, const string side,
                          const double volume, SHbOrderResult &r, const double sl = 0.0, const double tp = 0.0)
     {
      HbResetResult(r);
      if(actionId != "" && (RecalledResult(HB_MSG_OPEN, actionId, r) || FindOpen(actionId, r)))
        {
         r.alreadyExecuted = true;
         return;
        }
      if(side != HB_SIDE_BUY && side != HB_SIDE_SELL)
        {
         r.message = "side must be BUY or SELL";
         return;
        }
      if(!SymbolSelect(symbol, true))
        {
         r.message = "symbol " + symbol + " is not available on this account";
         return;
        }
      if(!CheckTradingAllowed(r) || !CheckVolume(symbol, volume, r))
         return;
      MqlTick tick;
      if(!SymbolInfoTick(symbol, tick) || tick.bid <= 0.0 || tick.ask <= 0.0)
        {
         r.retcode = TRADE_RETCODE_PRICE_OFF;
         r.message = "no current price for " + symbol;
         return;
        }
      double step = SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP);
      MqlTradeRequest request;
      MqlTradeResult result;
      ZeroMemory(request);
      ZeroMemory(result);
      request.action = TRADE_ACTION_DEAL;
      request.symbol = symbol;
      request.volume = NormalizeDouble(volume, VolumeDigits(step));
      request.type = side == HB_SIDE_BUY ? ORDER_TYPE_BUY : ORDER_TYPE_SELL;
      request.price = side == HB_SIDE_BUY ? tick.ask : tick.bid;
      request.deviation = m_deviation;
      request.magic = m_magic;
      request.comment = HbOrderComment(actionId, positionId);
      request.type_filling = Filling(symbol);
      request.type_time = ORDER_TIME_GTC;
      int digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
      request.sl = sl > 0.0 ? NormalizeDouble(sl, digits) : 0.0;
      request.tp = tp > 0.0 ? NormalizeDouble(tp, digits) : 0.0;
      Send(request, result);
      r.retcode = result.retcode;
      if(result.retcode == TRADE_RETCODE_PLACED)
        {
         // exchange execution: the order waits for its deal
         for(int i = 0; i < 100 && HbSelectPosition(result.order) == 0; i++)
            Sleep(30);
         if(HbSelectPosition(result.order) == 0)
           {
            r.answered = false;
            r.message = "order placed, no deal yet";
            return;
           }
         result.price = PositionGetDouble(POSITION_PRICE_OPEN);
         result.volume = PositionGetDouble(POSITION_VOLUME);
         r.retcode = TRADE_RETCODE_DONE;
        }
      if(r.retcode != TRADE_RETCODE_DONE && r.retcode != TRADE_RETCODE_DONE_PARTIAL)
        {
         r.message = Describe(result);
         return;
        }
      r.success = true;
      r.ticket = result.order;
      r.price = result.price;
      r.volume = result.volume;
      r.stops = request.sl > 0.0 || request.tp > 0.0;
      r.sl = request.sl;
      r.tp = request.tp;
      if(WaitForDeal(result.deal))
        {
         r.ticket = (ulong)HistoryDealGetInteger(result.deal, DEAL_POSITION_ID);
         if(r.price <= 0.0)
            r.price = HistoryDealGetDouble(result.deal, DEAL_PRICE);
         if(r.volume <= 0.0)
            r.volume = HistoryDealGetDouble(result.deal, DEAL_VOLUME);
        }
      if((r.price <= 0.0 || r.volume <= 0.0) && HbSelectPosition(r.ticket) > 0)
        {
         if(r.price <= 0.0)
            r.price = PositionGetDouble(POSITION_PRICE_OPEN);
         if(r.volume <= 0.0)
            r.volume = PositionGetDouble(POSITION_VOLUME);
        }
      if(r.volume <= 0.0)
         r.volume = request.volume;
      if(r.retcode == TRADE_RETCODE_DONE_PARTIAL)
         r.message = StringFormat("partially filled: %s of %s lots", HbJsonNumber(r.volume, 8),
                                  HbJsonNumber(request.volume, 8));
      else
         r.retcode = 0;
      m_book.Remember(r.ticket, positionId, actionId);
      RememberResult(HB_MSG_OPEN, actionId, r);
     }

   // CLOSE: the position named by mtTicket (or positionId); volume 0 closes all of it
   void              Close(const string actionId, const string positionId, const string mtTicket, const double volume,
                           SHbOrderResult &r)
     {
      HbResetResult(r);
      if(actionId != "" && (RecalledResult(HB_MSG_CLOSE, actionId, r) || FindClose(actionId, r)))
        {
         r.alreadyExecuted = true;
         return;
        }
      ulong identifier = FindPosition(mtTicket, positionId);
      ulong ticket = HbSelectPosition(identifier);
      if(ticket == 0)
        {
         r.retcode = TRADE_RETCODE_POSITION_CLOSED;
         r.message = "position not found or already closed";
         return;
        }
      r.ticket = identifier;
      string symbol = PositionGetString(POSITION_SYMBOL);
      double openVolume = PositionGetDouble(POSITION_VOLUME);
      double floating = PositionGetDouble(POSITION_PROFIT);
      ENUM_POSITION_TYPE type = (ENUM_POSITION_TYPE)PositionGetInteger(POSITION_TYPE);
      double wanted = (volume <= 0.0 || volume >= openVolume - 1e-9) ? openVolume : volume;
      if(wanted < openVolume && !CheckVolume(symbol, wanted, r))
         return;
      if(!CheckTradingAllowed(r))
         return;
      MqlTick tick;
      if(!SymbolInfoTick(symbol, tick) || tick.bid <= 0.0 || tick.ask <= 0.0)
        {
         r.retcode = TRADE_RETCODE_PRICE_OFF;
         r.message = "no current price for " + symbol;
         return;
        }
      MqlTradeRequest request;
      MqlTradeResult result;
      ZeroMemory(request);
      ZeroMemory(result);
      request.action = TRADE_ACTION_DEAL;
      request.position = ticket;
      request.symbol = symbol;
      request.volume = NormalizeDouble(wanted, VolumeDigits(SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP)));
      request.type = type == POSITION_TYPE_BUY ? ORDER_TYPE_SELL : ORDER_TYPE_BUY;
      request.price = type == POSITION_TYPE_BUY ? tick.bid : tick.ask;
      request.deviation = m_deviation;
      request.magic = m_magic;
      request.comment = HbOrderComment(actionId, positionId);
      request.type_filling = Filling(symbol);
      request.type_time = ORDER_TIME_GTC;
      Send(request, result);
      r.retcode = result.retcode;
      if(r.retcode != TRADE_RETCODE_DONE && r.retcode != TRADE_RETCODE_DONE_PARTIAL)
        {
         r.message = Describe(result);
         return;
        }
      r.success = true;
      r.price = result.price;
      r.volume = result.volume > 0.0 ? result.volume : request.volume;
      bool estimated = !WaitForDeal(result.deal);
      if(!estimated)
        {
         if(r.price <= 0.0)
            r.price = HistoryDealGetDouble(result.deal, DEAL_PRICE);
         r.profit = HistoryDealGetDouble(result.deal, DEAL_PROFIT) + HistoryDealGetDouble(result.deal, DEAL_SWAP)
                    + HistoryDealGetDouble(result.deal, DEAL_COMMISSION);
        }
      else
         r.profit = openVolume > 0.0 ? floating * r.volume / openVolume : 0.0;  // the deal is not in the history yet
      if(r.price <= 0.0)
         r.price = request.price;
      r.remaining = HbSelectPosition(identifier) > 0 ? PositionGetDouble(POSITION_VOLUME) : 0.0;
      if(r.retcode == TRADE_RETCODE_DONE_PARTIAL)
         r.message = StringFormat("partially closed: %s of %s lots", HbJsonNumber(r.volume, 8),
                                  HbJsonNumber(request.volume, 8));
      else
         r.retcode = 0;
      if(estimated)  // said, never passed off as the deal's: no commission or swap in it
         r.message = (r.message != "" ? r.message + "; " : "")
                     + "profit estimated from the position's floating profit: its closing deal was not in the history yet";
      if(r.remaining <= 0.0)
         m_book.Forget(identifier);
      RememberResult(HB_MSG_CLOSE, actionId, r);
     }

   // MODIFY: the stops of the position named by mtTicket (or positionId); a stop not given is kept, 0 removes
   void              Modify(const string actionId, const string positionId, const string mtTicket, const bool hasSl,
                            const double sl, const bool hasTp, const double tp, SHbOrderResult &r)
     {
      HbResetResult(r);
      if(actionId != "" && RecalledResult(HB_MSG_MODIFY, actionId, r))
         return;
      ulong identifier = FindPosition(mtTicket, positionId);
      ulong ticket = HbSelectPosition(identifier);
      if(ticket == 0)
        {
         r.retcode = TRADE_RETCODE_POSITION_CLOSED;
         r.message = "position not found or already closed";
         return;
        }
      r.ticket = identifier;
      string symbol = PositionGetString(POSITION_SYMBOL);
      int digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
      r.stops = true;
      r.sl = PositionGetDouble(POSITION_SL);
      r.tp = PositionGetDouble(POSITION_TP);
      if(!CheckTradingAllowed(r))
         return;
      MqlTradeRequest request;
      MqlTradeResult result;
      ZeroMemory(request);
      ZeroMemory(result);
      request.action = TRADE_ACTION_SLTP;
      request.position = ticket;
      request.symbol = symbol;
      request.sl = hasSl ? NormalizeDouble(MathMax(sl, 0.0), digits) : r.sl;
      request.tp = hasTp ? NormalizeDouble(MathMax(tp, 0.0), digits) : r.tp;
      request.magic = m_magic;
      Send(request, result);
      r.retcode = result.retcode;
      if(result.retcode != TRADE_RETCODE_DONE)
        {
         r.message = Describe(result);
         return;
        }
      r.success = true;
      r.retcode = 0;
      r.sl = request.sl;
      r.tp = request.tp;
      RememberResult(HB_MSG_MODIFY, actionId, r);
     }
  };

#endif // HEDGEBRIDGE_ORDERMANAGER_MQH
