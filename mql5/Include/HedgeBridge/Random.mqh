//+------------------------------------------------------------------+
//| Random.mqh - unpredictable bytes for the native WebSocket client |
//+------------------------------------------------------------------+
// RFC 6455 asks for masking keys (section 5.3) and handshake nonces (section 4.1) that an observer cannot predict.
// MathRand is a 15-bit linear congruential generator: one masking key gives away every later one. MQL5 has
// no operating-system random source, so CHbRandom keeps a 32-byte pool hashed with SHA-256 (CryptEncode):
//  - the pool starts from what differs between terminals and runs (account, chart, data folder, clocks);
//  - every 32 bytes handed out come from SHA-256(pool | 0x01 | counter), so output never reveals the pool;
//  - the pool then moves on to SHA-256(pool | 0x00 | counter | microsecond clock | tick count), which also
//    mixes in the timing of each use.
#ifndef HEDGEBRIDGE_RANDOM_MQH
#define HEDGEBRIDGE_RANDOM_MQH

class CHbRandom
  {
private:
   uchar             m_pool[];
   uchar             m_block[];
   int               m_used;
   ulong             m_counter;

   void              AppendLong(uchar &data[], const ulong value)
     {
      int n = ArraySize(data);
      ArrayResize(data, n + 8);
      for(int i = 0; i < 8; i++)
         data[n + i] = (uchar)((value >> (8 * i)) & 0xFF);
     }
   void              AppendText(uchar &data[], const string text)
     {
      uchar bytes[];
      int n = StringToCharArray(text, bytes, 0, WHOLE_ARRAY, CP_UTF8);
      int size = ArraySize(data);
      ArrayResize(data, size + n);
      for(int i = 0; i < n; i++)
         data[size + i] = bytes[i];
     }
   bool              Hash(const uchar &data[], uchar &digest[])
     {
      uchar key[];
      return(CryptEncode(CRYPT_HASH_SHA256, data, key, digest) == 32);
     }
   // the next 32 output bytes, then the pool moves on
   void              Refill(void)
     {
      uchar data[];
      ArrayCopy(data, m_pool);
      int n = ArraySize(data);
      ArrayResize(data, n + 1);
      data[n] = 0x01;
      AppendLong(data, m_counter);
      if(!Hash(data, m_block))
         ArrayResize(m_block, 0);
      uchar next[];
      ArrayCopy(next, m_pool);
      n = ArraySize(next);
      ArrayResize(next, n + 1);
      next[n] = 0x00;
      AppendLong(next, m_counter);
      AppendLong(next, GetMicrosecondCount());
      AppendLong(next, GetTickCount64());
      uchar digest[];
      if(Hash(next, digest))
         ArrayCopy(m_pool, digest);
      m_counter++;
      m_used = 0;
     }

public:
                     CHbRandom(void) : m_used(32), m_counter(0) { Seed(""); }

   // Mixes in what differs between terminals and runs; `extra` adds anything else the caller has.
   void              Seed(const string extra)
     {
      uchar data[];
      ArrayCopy(data, m_pool);
      AppendLong(data, GetMicrosecondCount());
      AppendLong(data, GetTickCount64());
      AppendLong(data, (ulong)TimeLocal());
      AppendLong(data, (ulong)AccountInfoInteger(ACCOUNT_LOGIN));
      AppendLong(data, (ulong)ChartID());
      AppendText(data, TerminalInfoString(TERMINAL_DATA_PATH));
      AppendText(data, extra);
      uchar digest[];
      if(Hash(data, digest))
         ArrayCopy(m_pool, digest);
      m_used = 32;
     }

   // Fills out[start .. start+count-1]; false when SHA-256 is unavailable.
   bool              Fill(uchar &out[], const int start, const int count)
     {
      for(int i = 0; i < count; i++)
        {
         if(m_used >= ArraySize(m_block))
           {
            Refill();
            if(ArraySize(m_block) < 32)
               return(false);
           }
         out[start + i] = m_block[m_used];
         m_used++;
        }
      return(true);
     }
  };

#endif
