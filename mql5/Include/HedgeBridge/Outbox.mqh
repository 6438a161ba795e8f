//+------------------------------------------------------------------+
//| Outbox.mqh - reports kept until the gateway has them             |
//+------------------------------------------------------------------+
// A report (OPENED, CLOSED) is written to the outbox file before it is sent, and stays there until the
// gateway has provably read it. The gateway handles a connection's frames in order and answers every
// HEARTBEAT, so the reply to the first heartbeat sent after a report proves that the report arrived. A report
// not proven when the connection ends, or when the EA or the terminal stops, is sent again after the next
// WELCOME, behind the fresh snapshots; the gateway's event stream drops a repeat it already holds (the same
// report id within its duplicate window).
#ifndef HEDGEBRIDGE_OUTBOX_MQH
#define HEDGEBRIDGE_OUTBOX_MQH

class CReportOutbox
  {
private:
   string            m_texts[];
   long              m_proofs[];   // 0: not sent on this connection; else the heartbeat seq whose reply proves it
   string            m_file;

   // the whole outbox, written to a new file that then replaces the old one (never half a file)
   bool              Rewrite(void)
     {
      string temporary = m_file + ".new";
      int h = FileOpen(temporary, FILE_WRITE | FILE_TXT | FILE_ANSI, 0, CP_UTF8);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("hedgebridge: cannot write %s (error %d)", temporary, GetLastError());
         return(false);
        }
      for(int i = 0; i < ArraySize(m_texts); i++)
         FileWriteString(h, m_texts[i] + "\r\n");
      FileClose(h);
      if(!FileMove(temporary, 0, m_file, FILE_REWRITE))
        {
         PrintFormat("hedgebridge: cannot replace %s (error %d)", m_file, GetLastError());
         return(false);
        }
      return(true);
     }

public:
   // the reports a previous run left unproven
   void              Init(const string file)
     {
      m_file = file;
      ArrayResize(m_texts, 0);
      ArrayResize(m_proofs, 0);
      int h = FileOpen(m_file, FILE_READ | FILE_TXT | FILE_ANSI | FILE_SHARE_READ, 0, CP_UTF8);
      if(h == INVALID_HANDLE)
         return;
      while(!FileIsEnding(h))
        {
         string line = FileReadString(h);
         if(StringLen(line) < 2)
            continue;
         int n = ArraySize(m_texts);
         ArrayResize(m_texts, n + 1, 16);
         ArrayResize(m_proofs, n + 1, 16);
         m_texts[n] = line;
         m_proofs[n] = 0;
        }
      FileClose(h);
      if(ArraySize(m_texts) > 0)
         PrintFormat("hedgebridge: %d report(s) from before are sent after the next WELCOME", ArraySize(m_texts));
     }

   int               Size(void) { return(ArraySize(m_texts)); }
   string            Text(const int i) { return(m_texts[i]); }
   bool              Unsent(const int i) { return(m_proofs[i] == 0); }

   // keep a report (a line of JSON) before it is sent; its index
   int               Add(const string text)
     {
      int n = ArraySize(m_texts);
      ArrayResize(m_texts, n + 1, 16);
      ArrayResize(m_proofs, n + 1, 16);
      m_texts[n] = text;
      m_proofs[n] = 0;
      int h = FileOpen(m_file, FILE_READ | FILE_WRITE | FILE_TXT | FILE_ANSI | FILE_SHARE_READ, 0, CP_UTF8);
      if(h == INVALID_HANDLE)
        {
         PrintFormat("hedgebridge: cannot write %s (error %d); the report is kept in memory only", m_file,
                     GetLastError());
         return(n);
        }
      FileSeek(h, 0, SEEK_END);
      FileWriteString(h, text + "\r\n");
      FileClose(h);
      return(n);
     }

   // sent on this connection: the reply to heartbeat `proofSeq` proves it arrived
   void              Sent(const int i, const long proofSeq) { m_proofs[i] = proofSeq; }

   // the reply to heartbeat `seq`: every report sent before that heartbeat has arrived
   void              Proven(const long seq)
     {
      int kept = 0;
      for(int i = 0; i < ArraySize(m_texts); i++)
        {
         if(m_proofs[i] > 0 && m_proofs[i] <= seq)
            continue;
         m_texts[kept] = m_texts[i];
         m_proofs[kept] = m_proofs[i];
         kept++;
        }
      if(kept == ArraySize(m_texts))
         return;
      ArrayResize(m_texts, kept);
      ArrayResize(m_proofs, kept);
      Rewrite();
     }

   // a new connection: nothing is proven by its heartbeats until it is sent on it
   void              Reset(void)
     {
      for(int i = 0; i < ArraySize(m_proofs); i++)
         m_proofs[i] = 0;
     }
  };

#endif // HEDGEBRIDGE_OUTBOX_MQH
