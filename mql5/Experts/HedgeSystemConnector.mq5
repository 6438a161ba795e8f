//+------------------------------------------------------------------+
//| HedgeSystemConnector.mq5 - the hedgebridge Expert Advisor        |
//+------------------------------------------------------------------+
// Connects this terminal to a hedgebridge gateway over WebSocket, executes the OPEN, CLOSE and MODIFY
// commands it receives (each actionId at most once), and reports fills, positions, account figures, prices and the
// trading rules of the symbols it uses.
// Protocol: the top-level README ("Connecting a terminal") and Include/HedgeBridge/Protocol.mqh, which is
// generated from libs/protocol. Install guide: mql5/README.md.
#property copyright   "hedgebridge contributors"
#property version     "1.00"
#property description "Bridge between this MT5 terminal and a hedgebridge gateway (WebSocket, JSON frames)."

#include <HedgeBridge\Protocol.mqh>
#include <HedgeBridge\Json.mqh>
#include <HedgeBridge\WebSocketManager.mqh>
#include <HedgeBridge\OrderManager.mqh>
#include <HedgeBridge\PositionMonitor.mqh>
#include <HedgeBridge\AccountMonitor.mqh>
#include <HedgeBridge\SymbolMonitor.mqh>
#include <HedgeBridge\Outbox.mqh>

input string            InpGatewayUrl = "ws://127.0.0.1:8765/ea";  // Gateway URL (ws:// or wss://)
input string            InpToken = "";                             // Token (hedgebridge token --role ea --account <login>)
#ifdef HB_NO_DLL
input ENUM_HB_TRANSPORT InpTransport = HB_TRANSPORT_NATIVE;        // Transport (this build: Native only)
#else
input ENUM_HB_TRANSPORT InpTransport = HB_TRANSPORT_DLL;           // Transport
#endif
input ulong             InpMagic = 7700101;                        // Magic number of the EA's orders
input string            InpAccountId = "";                         // Account id in the token (empty: the login)
input uint              InpDeviationPoints = 10;                   // Maximum price deviation (points)
input string            InpPriceSymbols = "";                      // PRICE symbols, comma-separated (empty: the chart's)
input int               InpPriceIntervalMs = 250;                  // PRICE interval (ms, 0: no PRICE)
input int               InpAccountIntervalMs = 2000;               // ACCOUNT_UPDATE at least every (ms)
input int               InpPositionIntervalMs = 5000;              // POSITION_UPDATE at least every (ms)
input int               InpPollIntervalMs = 20;                    // Poll the connection every (ms)
input int               InpConnectTimeoutMs = 5000;                // Connect timeout (ms)
input int               InpReconnectMinMs = 500;                   // Reconnect backoff, first delay (ms)
input int               InpReconnectMaxMs = 30000;                 // Reconnect backoff, longest delay (ms)
input int               InpHistoryDays = 30;                       // Days of history searched for an actionId
input string            InpDllOptions = "";                        // DLL options, name=value;... (e.g. verify_tls=0)

//+------------------------------------------------------------------+
//| The EA                                                           |
//+------------------------------------------------------------------+
class CHedgeSystemConnector
  {
private:
   CWebSocketManager m_wsManager;
   COrderManager     m_orderManager;
   CPositionMonitor  m_positionMonitor;
   CAccountMonitor   m_accountMonitor;
   CSymbolMonitor    m_symbolMonitor;
   CJsonParser       m_parser;
   CReportOutbox     m_outbox;
   string            m_expectedAccount;  // the account this terminal is logged in to (or InpAccountId)
   string            m_accountId;        // the account WELCOME named
   string            m_sessionId;
   bool              m_welcomed;
   bool              m_halted;
   bool              m_ready;        // the terminal is logged in: the account, book and monitors are set up
   bool              m_waitingSaid;
   string            m_priceSymbols[];
   long              m_priceLastMsc[];
   ulong             m_lastPrices;

   bool              Send(const string json) { return(m_wsManager.SendMessage(json)); }

   // OPENED / CLOSED: kept in the outbox first, so it is sent again until the gateway has it
   void              Report(const string json)
     {
      int i = m_outbox.Add(json);
      if(m_welcomed && Send(json))
         m_outbox.Sent(i, m_wsManager.NextHeartbeatSeq());
     }

   // after WELCOME: what earlier connections (or runs) could not deliver, oldest first
   void              SendOutbox(void)
     {
      for(int i = 0; i < m_outbox.Size() && m_welcomed; i++)
         if(m_outbox.Unsent(i) && Send(m_outbox.Text(i)))
            m_outbox.Sent(i, m_wsManager.NextHeartbeatSeq());
     }

   void              SendError(const string code, const string message, const string field, const string refType,
                               const string refId)
     {
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_ERROR);
      w.Str(HB_FIELD_CODE, code);
      w.Str(HB_FIELD_MESSAGE, StringSubstr(message, 0, HB_MAXLEN_MESSAGE));
      if(field != "")
         w.Str(HB_FIELD_FIELD, StringSubstr(field, 0, HB_MAXLEN_FIELD));
      if(refType != "")
         w.Str(HB_FIELD_REF_TYPE, StringSubstr(refType, 0, HB_MAXLEN_REF_TYPE));
      if(refId != "")
         w.Str(HB_FIELD_REF_ID, StringSubstr(refId, 0, HB_MAXLEN_REF_ID));
      if(m_accountId != "")
         w.Str(HB_FIELD_ACCOUNT_ID, m_accountId);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.EndObject();
      Send(w.Text());
     }

   // OPENED, CLOSED or MODIFIED for a command's result
   void              SendOrderEvent(const string type, const string positionId, const string actionId,
                                    const string mtTicket, SHbOrderResult &r, const string symbol = "",
                                    const string side = "", const string traceparent = "")
     {
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, type);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Str(HB_FIELD_ACCOUNT_ID, m_accountId);
      w.Str(HB_FIELD_POSITION_ID, positionId);
      if(actionId != "")
         w.Str(HB_FIELD_ACTION_ID, actionId);
      if(r.ticket > 0)
         w.Str(HB_FIELD_MT_TICKET, IntegerToString((long)r.ticket));
      else
         if(mtTicket != "")
            w.Str(HB_FIELD_MT_TICKET, mtTicket);
      if(type == HB_MSG_MODIFIED && r.stops)  // the position's stops after the command (0: none)
        {
         w.Num(HB_FIELD_STOP_LOSS, r.sl, 8);
         w.Num(HB_FIELD_TAKE_PROFIT, r.tp, 8);
        }
      if(r.success && type != HB_MSG_MODIFIED)
        {
         w.Num(HB_FIELD_PRICE, r.price, 8);
         if(r.volume > 0.0)
            w.Num(HB_FIELD_VOLUME, r.volume, 8);
         if(type == HB_MSG_OPENED && symbol != "" && side != "")
           {
            w.Str(HB_FIELD_SYMBOL, symbol);  // the report alone describes the position
            w.Str(HB_FIELD_SIDE, side);
           }
         if(type == HB_MSG_OPENED && r.stops)
           {
            w.Num(HB_FIELD_STOP_LOSS, r.sl, 8);
            w.Num(HB_FIELD_TAKE_PROFIT, r.tp, 8);
           }
         if(type == HB_MSG_CLOSED)
           {
            w.Num(HB_FIELD_PROFIT, r.profit, 2);
            w.Num(HB_FIELD_REMAINING_VOLUME, MathMax(r.remaining, 0.0), 8);
           }
        }
      w.Str(HB_FIELD_STATUS, r.success ? HB_STATUS_SUCCESS : HB_STATUS_FAILED);
      if(r.message != "")
         w.Str(HB_FIELD_ERROR_MESSAGE, StringSubstr(r.message, 0, HB_MAXLEN_ERROR_MESSAGE));
      else
         if(!r.success)
            w.Str(HB_FIELD_ERROR_MESSAGE, "failed");
      if(r.retcode != 0)
         w.Int(HB_FIELD_ERROR_CODE, (long)r.retcode);
      if(r.alreadyExecuted)
         w.Bool(HB_FIELD_ALREADY_EXECUTED, true);
      if(traceparent != "")
         w.Str(HB_FIELD_TRACEPARENT, traceparent);  // the command's trace context, echoed
      w.EndObject();
      Report(w.Text());
     }

   void              OnWelcome(CJsonValue *msg)
     {
      long version = msg.GetLong(HB_FIELD_PROTOCOL_VERSION);
      if(version != HB_PROTOCOL_VERSION)
         PrintFormat("hedgebridge: the gateway speaks protocol %I64d, this EA %d", version, HB_PROTOCOL_VERSION);
      string account = msg.GetString(HB_FIELD_ACCOUNT_ID);
      if(account != m_expectedAccount)
        {
         // never trade or report one account's positions under another account's name
         string text = StringFormat("hedgebridge: the token is for account %s but this terminal is account %s; "
                                    "disconnected (get a token for this account, or set the account id input)",
                                    account, m_expectedAccount);
         Alert(text);
         m_halted = true;
         m_welcomed = false;
         m_wsManager.Disconnect();
         return;
        }
      m_accountId = account;
      m_sessionId = msg.GetString(HB_FIELD_SESSION_ID);
      m_wsManager.Configure(m_accountId, (int)msg.GetLong(HB_FIELD_HEARTBEAT_INTERVAL_MS),
                            (int)msg.GetLong(HB_FIELD_HEARTBEAT_TIMEOUT_MS), (int)msg.GetLong(HB_FIELD_MAX_FRAME_BYTES));
      m_welcomed = true;
      PrintFormat("hedgebridge: connected as %s (session %s, %s transport)", m_accountId, m_sessionId,
                  m_wsManager.TransportName());
      // a fresh picture for the new session, then the reports not delivered before, then what closed while
      // this EA could not see it
      SendAccountUpdate();
      MonitorPositions();
      SendSymbolSpecs(true);
      SendOutbox();
      string vanished[];
      for(int i = m_positionMonitor.ReportVanished(m_accountId, vanished) - 1; i >= 0; i--)
         Report(vanished[i]);
     }

   void              OnOpen(CJsonValue *msg)
     {
      string positionId = msg.GetString(HB_FIELD_POSITION_ID);
      string actionId = msg.GetString(HB_FIELD_ACTION_ID);
      if(positionId == "")
        {
         SendError(HB_ERR_MISSING_FIELD, "missing field `positionId`", HB_FIELD_POSITION_ID, HB_MSG_OPEN, actionId);
         return;
        }
      SHbOrderResult r;
      HbResetResult(r);
      string symbol = msg.GetString(HB_FIELD_SYMBOL);
      string side = msg.GetString(HB_FIELD_SIDE);
      double volume = msg.GetDouble(HB_FIELD_VOLUME);
      if(symbol == "" || volume <= 0.0)
         r.message = "an OPEN needs a symbol and a positive volume";
      else
        {
         m_symbolMonitor.Track(symbol);  // a symbol traded: its rules are reported from now on
         m_orderManager.Open(actionId, positionId, symbol, side, volume, r, msg.GetDouble(HB_FIELD_STOP_LOSS, 0.0),
                             msg.GetDouble(HB_FIELD_TAKE_PROFIT, 0.0));
        }
      if(!r.answered)
        {
         PrintFormat("hedgebridge: OPEN %s (%s): %s; the positions report will show the outcome", positionId,
                     actionId, r.message);
         return;
        }
      SendOrderEvent(HB_MSG_OPENED, positionId, actionId, "", r, symbol, side, msg.GetString(HB_FIELD_TRACEPARENT));
      MonitorPositions();
      SendAccountUpdate();
      SendSymbolSpecs(false);
     }

   void              OnClose(CJsonValue *msg)
     {
      string positionId = msg.GetString(HB_FIELD_POSITION_ID);
      string actionId = msg.GetString(HB_FIELD_ACTION_ID);
      string mtTicket = msg.GetString(HB_FIELD_MT_TICKET);
      if(positionId == "")
        {
         SendError(HB_ERR_MISSING_FIELD, "missing field `positionId`", HB_FIELD_POSITION_ID, HB_MSG_CLOSE, actionId);
         return;
        }
      SHbOrderResult r;
      HbResetResult(r);
      m_orderManager.Close(actionId, positionId, mtTicket, msg.GetDouble(HB_FIELD_VOLUME, 0.0), r);
      SendOrderEvent(HB_MSG_CLOSED, positionId, actionId, mtTicket, r, "", "", msg.GetString(HB_FIELD_TRACEPARENT));
      MonitorPositions();
      SendAccountUpdate();
     }

   // MODIFY: stopLoss / takeProfit absent keep the position's, 0 removes one
   void              OnModify(CJsonValue *msg)
     {
      string positionId = msg.GetString(HB_FIELD_POSITION_ID);
      string actionId = msg.GetString(HB_FIELD_ACTION_ID);
      string mtTicket = msg.GetString(HB_FIELD_MT_TICKET);
      bool hasSl = msg.IsNumber(HB_FIELD_STOP_LOSS);
      bool hasTp = msg.IsNumber(HB_FIELD_TAKE_PROFIT);
      if(positionId == "" || (!hasSl && !hasTp))
        {
         string missing = positionId == "" ? HB_FIELD_POSITION_ID : HB_FIELD_STOP_LOSS;
         SendError(HB_ERR_MISSING_FIELD, "missing field `" + missing + "`", missing, HB_MSG_MODIFY, actionId);
         return;
        }
      SHbOrderResult r;
      HbResetResult(r);
      m_orderManager.Modify(actionId, positionId, mtTicket, hasSl, msg.GetDouble(HB_FIELD_STOP_LOSS, 0.0), hasTp,
                            msg.GetDouble(HB_FIELD_TAKE_PROFIT, 0.0), r);
      SendOrderEvent(HB_MSG_MODIFIED, positionId, actionId, mtTicket, r, "", "", msg.GetString(HB_FIELD_TRACEPARENT));
      MonitorPositions();
     }

   void              OnGatewayError(CJsonValue *msg)
     {
      string code = msg.GetString(HB_FIELD_CODE);
      PrintFormat("hedgebridge: the gateway reports %s (%s): %s [field %s, about %s %s]", code,
                  HbErrorRecovery(code), msg.GetString(HB_FIELD_MESSAGE), msg.GetString(HB_FIELD_FIELD),
                  msg.GetString(HB_FIELD_REF_TYPE), msg.GetString(HB_FIELD_REF_ID));
     }

   void              Dispatch(const string text)
     {
      string error;
      CJsonValue *msg = m_parser.Parse(text, error);
      if(msg == NULL || msg.m_type != HB_JSON_OBJECT)
        {
         SendError(HB_ERR_MALFORMED_FRAME, "a frame must be a JSON object" + (error != "" ? ": " + error : ""), "",
                   "", "");
         if(msg != NULL)
            delete msg;
         return;
        }
      string type = msg.GetString(HB_TYPE_FIELD);
      if(!m_welcomed && (type == HB_MSG_OPEN || type == HB_MSG_CLOSE || type == HB_MSG_MODIFY || type == HB_MSG_SYNC))
        {
         // read after the connection it came on ended, before the next session's WELCOME: it belongs to no
         // session, so it is not executed; the executor reconciles it from the new session's snapshots
         PrintFormat("hedgebridge: %s %s read before WELCOME; not executed (the executor reconciles it)", type,
                     msg.GetString(HB_FIELD_ACTION_ID));
         delete msg;
         return;
        }
      if(type == HB_MSG_WELCOME)
         OnWelcome(msg);
      else
         if(type == HB_MSG_HEARTBEAT)
           {
            if(!msg.GetBool(HB_FIELD_REPLY))
               m_wsManager.AnswerHeartbeat(msg.GetLong(HB_FIELD_SEQ));
            else
               if(m_welcomed)
                  m_outbox.Proven(msg.GetLong(HB_FIELD_SEQ));  // the gateway has read all sent before it
           }
         else
            if(type == HB_MSG_OPEN)
               OnOpen(msg);
            else
               if(type == HB_MSG_CLOSE)
                  OnClose(msg);
               else
                  if(type == HB_MSG_MODIFY)
                     OnModify(msg);
                  else
                     if(type == HB_MSG_SYNC)
                       {
                        MonitorPositions(msg.GetString(HB_FIELD_SYNC_ID));
                        SendAccountUpdate();
                       }
                     else
                        if(type == HB_MSG_ERROR)
                           OnGatewayError(msg);
                        else
                           if(type == "")
                              SendError(HB_ERR_MISSING_FIELD, "missing field `type`", HB_TYPE_FIELD, "", "");
                           else
                              if(HbIsKnownType(type))
                                 SendError(HB_ERR_UNEXPECTED_TYPE, "a terminal does not accept " + type, HB_TYPE_FIELD,
                                           type, "");
                              else
                                 SendError(HB_ERR_UNKNOWN_TYPE, "unknown message type " + type, HB_TYPE_FIELD, type, "");
      delete msg;
     }

   void              SendPrices(void)
     {
      ulong now = GetTickCount64();
      if(InpPriceIntervalMs <= 0 || now - m_lastPrices < (ulong)InpPriceIntervalMs)
         return;
      m_lastPrices = now;
      for(int i = 0; i < ArraySize(m_priceSymbols); i++)
        {
         MqlTick tick;
         if(!SymbolInfoTick(m_priceSymbols[i], tick) || tick.bid <= 0.0 || tick.ask <= 0.0)
            continue;
         if(tick.time_msc == m_priceLastMsc[i])
            continue;
         m_priceLastMsc[i] = tick.time_msc;
         int digits = (int)SymbolInfoInteger(m_priceSymbols[i], SYMBOL_DIGITS);
         CJsonWriter w;
         w.BeginObject();
         w.Str(HB_TYPE_FIELD, HB_MSG_PRICE);
         w.Str(HB_FIELD_ACCOUNT_ID, m_accountId);
         w.Str(HB_FIELD_SYMBOL, m_priceSymbols[i]);
         w.Num(HB_FIELD_BID, tick.bid, digits);
         w.Num(HB_FIELD_ASK, tick.ask, digits);
         w.Str(HB_FIELD_TIME, HbServerMscToIso(tick.time_msc));
         w.EndObject();
         Send(w.Text());
        }
     }

   void              ReadPriceSymbols(void)
     {
      string names[];
      int n = StringSplit(InpPriceSymbols == "" ? _Symbol : InpPriceSymbols, ',', names);
      ArrayResize(m_priceSymbols, 0);
      for(int i = 0; i < n; i++)
        {
         string name = names[i];
         StringTrimLeft(name);
         StringTrimRight(name);
         if(name == "")
            continue;
         if(!HbIsWireSymbol(name) || !SymbolSelect(name, true))
           {
            PrintFormat("hedgebridge: no PRICE for %s (unknown here, or not a protocol symbol)", name);
            continue;
           }
         int k = ArraySize(m_priceSymbols);
         ArrayResize(m_priceSymbols, k + 1);
         m_priceSymbols[k] = name;
        }
      ArrayResize(m_priceLastMsc, ArraySize(m_priceSymbols));
      ArrayInitialize(m_priceLastMsc, 0);
     }

   // Everything the EA does regularly: keep the connection, read frames, heartbeat, reports.
   void              Pump(void)
     {
      if(m_halted || (!m_ready && !BecomeReady()))
         return;
      ENUM_HB_WS_EVENT event = m_wsManager.Service();
      if(event == HB_WS_OPENED)
         Print("hedgebridge: WebSocket open, waiting for WELCOME");
      if(event != HB_WS_NONE)
        {
         m_welcomed = false;
         m_accountId = "";
         m_outbox.Reset();  // what the last connection did not prove goes again after the next WELCOME
        }
      if(!m_wsManager.IsConnected())
         return;
      string text;
      for(int i = 0; i < 256 && !m_halted && m_wsManager.ReceiveMessage(text); i++)
         Dispatch(text);
      m_wsManager.CheckSilence();
      if(!m_welcomed)
         return;
      m_wsManager.SendHeartbeat();
      if(m_accountMonitor.Due())
         SendAccountUpdate();
      if(m_positionMonitor.Due())
         MonitorPositions();
      if(m_symbolMonitor.Due())
         SendSymbolSpecs(false);
      SendPrices();
     }

public:
                     CHedgeSystemConnector(void) : m_welcomed(false), m_halted(false), m_ready(false),
                     m_waitingSaid(false), m_lastPrices(0) {}

   bool              Initialize(void)
     {
      if(InpToken == "")
        {
         Alert("hedgebridge: set the Token input (hedgebridge token --role ea --account <login>)");
         return(false);
        }
      if(StringFind(InpGatewayUrl, "ws://") != 0 && StringFind(InpGatewayUrl, "wss://") != 0)
        {
         Alert("hedgebridge: the gateway URL must start with ws:// or wss://");
         return(false);
        }
      if(InpTransport == HB_TRANSPORT_DLL && !MQLInfoInteger(MQL_DLLS_ALLOWED))
        {
         Alert("hedgebridge: the DLL transport needs \"Allow DLL imports\" (or choose the native transport)");
         return(false);
        }
      if((ENUM_ACCOUNT_MARGIN_MODE)AccountInfoInteger(ACCOUNT_MARGIN_MODE) != ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
         Print("hedgebridge: this is not a hedging account; positions on one symbol are netted into one ticket");
      MathSrand((uint)(GetTickCount() ^ (uint)GetMicrosecondCount()));
      ReadPriceSymbols();
      if(!m_wsManager.Init(InpTransport, InpGatewayUrl, InpToken, InpDllOptions, InpConnectTimeoutMs,
                           InpReconnectMinMs, InpReconnectMaxMs))
         return(false);
      if(!EventSetMillisecondTimer(MathMax(InpPollIntervalMs, 10)))
         return(false);
      return(true);  // the first Pump after the account is known connects
     }

   // The account, the book and the monitors, once the terminal is connected to the trade server and logged
   // in: OnInit can run before that (a terminal just started), when the login still reads 0.
   bool              BecomeReady(void)
     {
      long login = AccountInfoInteger(ACCOUNT_LOGIN);
      if(!TerminalInfoInteger(TERMINAL_CONNECTED) || login == 0)
        {
         if(!m_waitingSaid)
            Print("hedgebridge: waiting for the terminal to connect to the trade server and log in");
         m_waitingSaid = true;
         return(false);
        }
      m_expectedAccount = InpAccountId != "" ? InpAccountId : IntegerToString(login);
      FolderCreate("HedgeBridge");
      m_orderManager.Init(InpMagic, InpDeviationPoints, InpHistoryDays,
                          "HedgeBridge\\book_" + IntegerToString(login) + ".jsonl");
      m_outbox.Init("HedgeBridge\\outbox_" + IntegerToString(login) + ".jsonl");
      m_positionMonitor.Init(GetPointer(m_orderManager), InpPositionIntervalMs, 100);
      m_accountMonitor.Init(InpAccountIntervalMs, 250);
      m_symbolMonitor.Init(1000);  // rules are read again every second: a change is reported within it
      for(int i = 0; i < ArraySize(m_priceSymbols); i++)
         m_symbolMonitor.Track(m_priceSymbols[i]);
      m_ready = true;
      return(true);
     }

   void              Deinitialize(void)
     {
      EventKillTimer();
      m_wsManager.Deinit();
     }

   bool              ConnectToSystem(void)
     {
      m_welcomed = false;
      return(m_wsManager.Connect());
     }

   void              OnTick(void) { Pump(); }
   void              OnTimer(void) { Pump(); }

   void              OnTradeTransaction(const MqlTradeTransaction &trans)
     {
      string closed;
      if(m_ready && m_positionMonitor.OnTransaction(trans, m_welcomed ? m_accountId : "", closed))
         Report(closed);
     }

   // POSITION_UPDATE now (syncId: the SYNC it answers)
   void              MonitorPositions(const string syncId = "")
     {
      if(m_welcomed)
         Send(m_positionMonitor.BuildSnapshot(m_accountId, syncId));
     }

   void              SendAccountUpdate(void)
     {
      if(m_welcomed)
         Send(m_accountMonitor.BuildUpdate(m_accountId));
     }

   // SYMBOL_SPECS when a symbol's rules changed (force: in any case, a new session)
   void              SendSymbolSpecs(const bool force)
     {
      if(!m_welcomed)
         return;
      string frame = m_symbolMonitor.Build(m_accountId, force);
      if(frame != "")
         Send(frame);
     }
  };

CHedgeSystemConnector g_connector;

//+------------------------------------------------------------------+
int OnInit(void)
  {
   return(g_connector.Initialize() ? INIT_SUCCEEDED : INIT_FAILED);
  }

void OnDeinit(const int reason)
  {
   g_connector.Deinitialize();
  }

void OnTick(void)
  {
   g_connector.OnTick();
  }

void OnTimer(void)
  {
   g_connector.OnTimer();
  }

void OnTradeTransaction(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   g_connector.OnTradeTransaction(trans);
  }
//+------------------------------------------------------------------+
