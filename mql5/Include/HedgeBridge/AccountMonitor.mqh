//+------------------------------------------------------------------+
//| AccountMonitor.mqh - ACCOUNT_UPDATE on change and on a timer     |
//+------------------------------------------------------------------+
// CAccountMonitor reads balance, equity, margin, free margin and margin level. An ACCOUNT_UPDATE is due
// when one of them changed by a cent or more (at most every `minIntervalMs`), and every `intervalMs`
// regardless.
#ifndef HEDGEBRIDGE_ACCOUNTMONITOR_MQH
#define HEDGEBRIDGE_ACCOUNTMONITOR_MQH

#include "Protocol.mqh"
#include "Json.mqh"

class CAccountMonitor
  {
private:
   double            m_balance;
   double            m_equity;
   double            m_margin;
   double            m_freeMargin;
   ulong             m_lastSent;
   int               m_intervalMs;
   int               m_minIntervalMs;
   bool              m_force;

   static bool       Moved(const double a, const double b) { return(MathAbs(a - b) >= 0.005); }

public:
                     CAccountMonitor(void) : m_balance(0), m_equity(0), m_margin(0), m_freeMargin(0), m_lastSent(0),
                     m_intervalMs(2000), m_minIntervalMs(250), m_force(true) {}

   void              Init(const int intervalMs, const int minIntervalMs)
     {
      m_intervalMs = intervalMs;
      m_minIntervalMs = minIntervalMs;
      m_force = true;
     }

   // the next check sends an update whatever changed (a new session, SYNC)
   void              Force(void) { m_force = true; }

   bool              Changed(void)
     {
      return(Moved(AccountInfoDouble(ACCOUNT_BALANCE), m_balance) || Moved(AccountInfoDouble(ACCOUNT_EQUITY), m_equity)
             || Moved(AccountInfoDouble(ACCOUNT_MARGIN), m_margin)
             || Moved(AccountInfoDouble(ACCOUNT_MARGIN_FREE), m_freeMargin));
     }

   bool              Due(void)
     {
      ulong now = GetTickCount64();
      if(m_force)
         return(true);
      if(m_intervalMs > 0 && now - m_lastSent >= (ulong)m_intervalMs)
         return(true);
      return(now - m_lastSent >= (ulong)m_minIntervalMs && Changed());
     }

   string            BuildUpdate(const string accountId)
     {
      m_balance = AccountInfoDouble(ACCOUNT_BALANCE);
      m_equity = AccountInfoDouble(ACCOUNT_EQUITY);
      m_margin = AccountInfoDouble(ACCOUNT_MARGIN);
      m_freeMargin = AccountInfoDouble(ACCOUNT_MARGIN_FREE);
      m_lastSent = GetTickCount64();
      m_force = false;
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_ACCOUNT_UPDATE);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Str(HB_FIELD_ACCOUNT_ID, accountId);
      w.Num(HB_FIELD_BALANCE, m_balance, 2);
      w.Num(HB_FIELD_EQUITY, m_equity, 2);
      w.Num(HB_FIELD_MARGIN, MathMax(m_margin, 0.0), 2);
      w.Num(HB_FIELD_FREE_MARGIN, m_freeMargin, 2);
      if(m_margin > 0.0)
         w.Num(HB_FIELD_MARGIN_LEVEL, AccountInfoDouble(ACCOUNT_MARGIN_LEVEL), 2);
      string currency = AccountInfoString(ACCOUNT_CURRENCY);
      if(currency != "" && StringLen(currency) <= HB_MAXLEN_CURRENCY)
         w.Str(HB_FIELD_CURRENCY, currency);
      w.EndObject();
      return(w.Text());
     }
  };

#endif // HEDGEBRIDGE_ACCOUNTMONITOR_MQH
