//+------------------------------------------------------------------+
//| Backoff.mqh - the EA's reconnect delays                          |
//+------------------------------------------------------------------+
// "Decorrelated jitter", as the DLL does (dll/src/backoff.hpp): a random delay between the shortest and three
// times the previous one, capped at the longest; terminals that lost the gateway together spread out.
// A refusal with a Retry-After (HTTP 503: the gateway is busy) is waited out as the DLL and the Python
// terminals do (libs/common/hedgebridge/common/backoff.py): at least that long, plus a random share of up to as
// long again, or the jittered delay when that is longer. Only a number of seconds up to HB_RETRY_AFTER_MAX_S is
// honoured: another value (an HTTP date, a longer wait) counts as none, and the normal backoff applies.
#ifndef HEDGEBRIDGE_BACKOFF_MQH
#define HEDGEBRIDGE_BACKOFF_MQH

#define HB_RETRY_AFTER_MAX_S 3600  // the longest Retry-After honoured, in seconds

// a random number in [0, 1]
double HbUnitRandom(void) { return(MathRand() / 32767.0); }

// the delay after previousMs, between minMs and maxMs (maxMs >= minMs)
int HbDecorrelatedJitterMs(const int previousMs, const int minMs, const int maxMs)
  {
   long hi = 3 * (long)MathMax(previousMs, minMs);
   if(hi > maxMs)
      hi = maxMs;
   return(minMs + (int)((hi - minMs) * HbUnitRandom()));
  }

// the delay after a refusal whose Retry-After was retryAfterMs (-1: none): at least that plus a random share
// of up to as long again, or jitteredMs when that is longer
int HbReconnectDelayMs(const int jitteredMs, const int retryAfterMs)
  {
   if(retryAfterMs < 0)
      return(jitteredMs);
   long waited = retryAfterMs + (long)(retryAfterMs * HbUnitRandom());
   return(waited > jitteredMs ? (int)waited : jitteredMs);
  }

// The milliseconds of a Retry-After header's value ("2", "1.5", blanks around), -1 when it is empty, not a
// number of seconds, or over HB_RETRY_AFTER_MAX_S. A fraction past the milliseconds rounds up.
int HbRetryAfterMs(const string header)
  {
   string value = header;
   StringTrimLeft(value);
   StringTrimRight(value);
   int n = StringLen(value);
   int at = 0;
   long seconds = 0;
   while(at < n)
     {
      ushort c = StringGetCharacter(value, at);
      if(c < '0' || c > '9')
         break;
      seconds = seconds * 10 + (c - '0');
      if(seconds > HB_RETRY_AFTER_MAX_S)
         return(-1);
      at++;
     }
   if(at == 0)
      return(-1);
   long ms = seconds * 1000;
   if(at < n && StringGetCharacter(value, at) == '.')
     {
      at++;
      int from = at;
      long scale = 100;
      bool rest = false;
      while(at < n)
        {
         ushort c = StringGetCharacter(value, at);
         if(c < '0' || c > '9')
            break;
         if(scale > 0)
           {
            ms += (c - '0') * scale;
            scale /= 10;
           }
         else
            if(c != '0')
               rest = true;
         at++;
        }
      if(at == from)
         return(-1);
      if(rest)
         ms++;
     }
   if(at != n || ms > (long)HB_RETRY_AFTER_MAX_S * 1000)
      return(-1);
   return((int)ms);
  }

#endif // HEDGEBRIDGE_BACKOFF_MQH
