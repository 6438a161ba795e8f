//+------------------------------------------------------------------+
//| WebSocketManager.mqh - the EA's connection to the gateway        |
//+------------------------------------------------------------------+
// Two transports behind one interface (CWsTransport):
//  - CDllTransport: hedgebridge_ws.dll (MQL5/Libraries). Its background thread owns the socket, queues
//    received frames and reconnects by itself; the EA polls it. Needs "Allow DLL imports".
//  - CNativeTransport: MQL5's own sockets (SocketCreate/SocketConnect/SocketTlsHandshake/...). Speaks the
//    WebSocket client protocol itself (RFC 6455: handshake, masking, fragments, ping/pong, close). Needs
//    the gateway host in Tools > Options > Expert Advisors > "Allow WebRequest for listed URL".
// CWebSocketManager adds what both need: reconnect with backoff ("decorrelated jitter", a refusal's
// Retry-After waited out: Backoff.mqh), heartbeats at the interval WELCOME gives, answers to the gateway's
// heartbeats, and a silence timeout.
#ifndef HEDGEBRIDGE_WEBSOCKETMANAGER_MQH
#define HEDGEBRIDGE_WEBSOCKETMANAGER_MQH

#include "Protocol.mqh"
#include "Json.mqh"
#include "Random.mqh"
#include "Backoff.mqh"

// HB_NO_DLL (HedgeSystemConnectorNative.mq5): no #import at all, so the EA loads where DLLs are not allowed
// (an #import is bound when the EA loads, whichever transport it then uses).
#ifndef HB_NO_DLL
#import "hedgebridge_ws.dll"
int  ConnectWebSocketW(string url, string token);
int  WsSendW(string message);
int  ReceiveMessageW(ushort &buffer[], int bufferSize);
int  IsConnected(void);
void DisconnectWebSocket(void);
int  WsGetLastError(void);
int  WsGetLastErrorMessageW(ushort &buffer[], int bufferSize);
int  WsGetCloseCode(void);
int  WsGetState(void);
int  WsSetOption(uchar &name[], uchar &value[]);
int  WsPendingMessages(void);
int  WsGetReconnectCount(void);
int  WsGetReconnectDelayMs(void);
int  WsGetHttpStatus(void);
int  WsGetRetryAfterMs(void);
#import
#endif

#define HB_DLL_STATE_IDLE 0  // WS_STATE_IDLE of hedgebridge_ws.h: not connecting and not connected

enum ENUM_HB_TRANSPORT
  {
   HB_TRANSPORT_DLL = 0,    // DLL (hedgebridge_ws.dll)
   HB_TRANSPORT_NATIVE = 1  // Native MQL5 sockets
  };

//+------------------------------------------------------------------+
//| What every transport offers                                      |
//+------------------------------------------------------------------+
class CWsTransport
  {
public:
   virtual          ~CWsTransport(void) {}
   // start connecting to url (ws:// or wss://) with the token as a Bearer credential
   virtual bool      Open(const string url, const string token, const int timeoutMs) = 0;
   // send one text frame
   virtual bool      Write(const string text) = 0;
   // take one received text frame: true when text holds one
   virtual bool      Read(string &text) = 0;
   // the WebSocket is open
   virtual bool      IsOpen(void) = 0;
   // open, or connecting/reconnecting by itself (no Open call needed)
   virtual bool      IsAlive(void) = 0;
   virtual void      Close(void) = 0;
   // the close code of the server's last close frame, 0 if none
   virtual int       CloseCode(void) = 0;
   // a transport that reconnects by itself: true once for each reconnect it scheduled, with its number
   // (since Open) and delay
   virtual bool      RetryScheduled(int &count, int &delayMs) { return(false); }
   // the HTTP status that refused the latest attempt's upgrade (401, 429, 503, ...), 0 when none did; for a
   // transport that reconnects by itself, the attempt that the reconnect RetryScheduled last reported follows
   virtual int       RefusalStatus(void) = 0;
   // that refusal's Retry-After in milliseconds, -1 when it had none (see HbRetryAfterMs)
   virtual int       RetryAfterMs(void) = 0;
   virtual string    LastError(void) = 0;
   virtual string    Name(void) = 0;
  };

#ifndef HB_NO_DLL
//+------------------------------------------------------------------+
//| hedgebridge_ws.dll                                               |
//+------------------------------------------------------------------+
class CDllTransport : public CWsTransport
  {
private:
   ushort            m_buffer[];
   string            m_options;
   int               m_backoffMinMs;
   int               m_backoffMaxMs;
   int               m_retriesSeen;
   int               m_refusalStatus;
   int               m_retryAfterMs;

   void              SetOption(const string key, const string value)
     {
      uchar k[];
      uchar v[];
      StringToCharArray(key, k, 0, WHOLE_ARRAY, CP_UTF8);
      StringToCharArray(value, v, 0, WHOLE_ARRAY, CP_UTF8);
      if(WsSetOption(k, v) != 1)
         PrintFormat("hedgebridge: the DLL refused option %s=%s", key, value);
     }

   // InpDllOptions: name=value;... set after the inputs, so that they can override them
   void              ApplyOptions(void)
     {
      string pairs[];
      int n = StringSplit(m_options, ';', pairs);
      for(int i = 0; i < n; i++)
        {
         int eq = StringFind(pairs[i], "=");
         if(eq <= 0)
            continue;
         string key = StringSubstr(pairs[i], 0, eq);
         string value = StringSubstr(pairs[i], eq + 1);
         StringTrimLeft(key);
         StringTrimRight(key);
         StringTrimLeft(value);
         StringTrimRight(value);
         SetOption(key, value);
        }
     }

public:
                     CDllTransport(const string options, const int backoffMinMs, const int backoffMaxMs)
                     : m_options(options), m_backoffMinMs(backoffMinMs), m_backoffMaxMs(backoffMaxMs),
                     m_retriesSeen(0), m_refusalStatus(0), m_retryAfterMs(-1) { ArrayResize(m_buffer, 65536); }

   virtual bool      Open(const string url, const string token, const int timeoutMs)
     {
      // the EA's connect timeout and backoff inputs, in the DLL's ranges; the DLL reconnects by itself
      SetOption("connect_timeout_ms", IntegerToString(MathMax(100, MathMin(timeoutMs, 600000))));
      SetOption("reconnect_min_ms", IntegerToString(MathMax(1, MathMin(m_backoffMinMs, 3600000))));
      SetOption("reconnect_max_ms", IntegerToString(MathMax(1, MathMin(m_backoffMaxMs, 3600000))));
      if(m_options != "")
         ApplyOptions();
      m_retriesSeen = 0;
      m_refusalStatus = 0;
      m_retryAfterMs = -1;
      return(ConnectWebSocketW(url, token) == 1);
     }

   virtual bool      RetryScheduled(int &count, int &delayMs)
     {
      // the delay and the refusal belong to the count when the count is the same before and after reading them
      int status = 0;
      int retryAfterMs = -1;
      for(int i = 0; i < 3; i++)
        {
         count = WsGetReconnectCount();
         delayMs = WsGetReconnectDelayMs();
         status = WsGetHttpStatus();
         retryAfterMs = WsGetRetryAfterMs();
         if(WsGetReconnectCount() == count)
            break;
        }
      if(count == m_retriesSeen)
         return(false);
      m_retriesSeen = count;
      m_refusalStatus = status;
      m_retryAfterMs = retryAfterMs;
      return(count > 0);
     }

   virtual bool      Write(const string text) { return(WsSendW(text) == 1); }

   virtual bool      Read(string &text)
     {
      // ReceiveMessageW returns 0 for an empty frame as well as for none: ask first (this EA is the only
      // reader, so a waiting frame is still there when it reads)
      if(WsPendingMessages() <= 0)
         return(false);
      int n = ReceiveMessageW(m_buffer, ArraySize(m_buffer));
      if(n < 0)
        {
         // too small: -n is the size needed (NUL included); the message is still queued
         ArrayResize(m_buffer, -n);
         n = ReceiveMessageW(m_buffer, ArraySize(m_buffer));
        }
      if(n < 0)
         return(false);
      text = n > 0 ? ShortArrayToString(m_buffer, 0, n) : "";
      return(true);
     }

   virtual bool      IsOpen(void) { return(IsConnected() == 1); }
   virtual bool      IsAlive(void) { return(WsGetState() != HB_DLL_STATE_IDLE); }
   virtual void      Close(void) { DisconnectWebSocket(); }
   virtual int       CloseCode(void) { return(WsGetCloseCode()); }
   virtual int       RefusalStatus(void) { return(m_refusalStatus); }
   virtual int       RetryAfterMs(void) { return(m_retryAfterMs); }

   virtual string    LastError(void)
     {
      ushort text[];
      ArrayResize(text, 512);
      int n = WsGetLastErrorMessageW(text, ArraySize(text));
      if(n < 0)
        {
         ArrayResize(text, -n);
         n = WsGetLastErrorMessageW(text, ArraySize(text));
        }
      return(StringFormat("DLL error %d: %s", WsGetLastError(), n > 0 ? ShortArrayToString(text, 0, n) : ""));
     }

   virtual string    Name(void) { return("dll"); }
  };
#endif

//+------------------------------------------------------------------+
//| WebSocket client over MQL5 sockets                               |
//+------------------------------------------------------------------+
class CNativeTransport : public CWsTransport
  {
private:
   int               m_socket;
   bool              m_tls;
   bool              m_open;
   int               m_closeCode;
   int               m_refusalStatus;  // the HTTP status that refused the latest upgrade, 0 if none
   int               m_retryAfterMs;   // its Retry-After, -1 if none
   int               m_maxMessageBytes;
   string            m_error;
   uchar             m_rx[];        // bytes received and not yet parsed
   uchar             m_message[];   // payload of a fragmented message being reassembled
   bool              m_fragmented;
   string            m_queue[];     // complete text messages, oldest first, from m_queueHead on
   int               m_queueHead;
   CHbRandom         m_random;      // masking keys and handshake nonces

   bool              Fail(const string what)
     {
      m_error = StringFormat("%s (error %d)", what, GetLastError());
      return(false);
     }

   bool              SendBytes(const uchar &data[], const int length)
     {
      int sent = 0;
      ulong deadline = GetTickCount64() + 5000;
      while(sent < length)
        {
         uchar chunk[];
         ArrayCopy(chunk, data, 0, sent, length - sent);
         int n = m_tls ? SocketTlsSend(m_socket, chunk, length - sent) : SocketSend(m_socket, chunk, length - sent);
         if(n < 0)
            return(Fail("socket write failed"));
         sent += n;
         if(sent < length)
           {
            if(GetTickCount64() > deadline)
               return(Fail("socket write timed out"));
            Sleep(1);
           }
        }
      return(true);
     }

   // read what the socket has; -1 when the connection is gone
   int               Pull(void)
     {
      uchar chunk[];
      int n = 0;
      if(m_tls)
         n = SocketTlsReadAvailable(m_socket, chunk, 1048576);
      else
        {
         uint available = SocketIsReadable(m_socket);
         if(available > 0)
            n = SocketRead(m_socket, chunk, available, 10);
        }
      if(n < 0 || (n == 0 && !SocketIsConnected(m_socket)))
        {
         Fail("connection lost");
         return(-1);
        }
      if(n > 0)
        {
         int have = ArraySize(m_rx);
         ArrayResize(m_rx, have + n, 65536);
         ArrayCopy(m_rx, chunk, have, 0, n);
        }
      return(n);
     }

   // a frame from the client: FIN set, the given opcode, masked with a fresh key
   bool              SendFrame(const int opcode, const uchar &payload[], const int length)
     {
      uchar frame[];
      int header = length < 126 ? 2 : (length <= 65535 ? 4 : 10);
      ArrayResize(frame, header + 4 + length);
      frame[0] = (uchar)(0x80 | opcode);
      if(length < 126)
         frame[1] = (uchar)(0x80 | length);
      else
         if(length <= 65535)
           {
            frame[1] = (uchar)(0x80 | 126);
            frame[2] = (uchar)((length >> 8) & 0xFF);
            frame[3] = (uchar)(length & 0xFF);
           }
         else
           {
            frame[1] = (uchar)(0x80 | 127);
            for(int i = 0; i < 8; i++)
               frame[2 + i] = (uchar)(((long)length >> (8 * (7 - i))) & 0xFF);
           }
      uchar mask[4];
      if(!m_random.Fill(mask, 0, 4))
         return(Fail("no random masking key (SHA-256 unavailable)"));
      for(int i = 0; i < 4; i++)
         frame[header + i] = mask[i];
      for(int i = 0; i < length; i++)
         frame[header + 4 + i] = (uchar)(payload[i] ^ mask[i % 4]);
      return(SendBytes(frame, ArraySize(frame)));
     }

   void              Enqueue(const uchar &payload[], const int start, const int length)
     {
      int n = ArraySize(m_queue);
      ArrayResize(m_queue, n + 1, 64);
      m_queue[n] = length > 0 ? CharArrayToString(payload, start, length, CP_UTF8) : "";
     }

   // parse every complete frame in m_rx; false on a protocol violation
   bool              ParseFrames(void)
     {
      int pos = 0;
      int total = ArraySize(m_rx);
      bool ok = true;
      while(ok && total - pos >= 2)
        {
         int b0 = m_rx[pos];
         int b1 = m_rx[pos + 1];
         bool fin = (b0 & 0x80) != 0;
         int opcode = b0 & 0x0F;
         bool masked = (b1 & 0x80) != 0;
         long length = b1 & 0x7F;
         int header = 2;
         if(length == 126)
           {
            if(total - pos < 4)
               break;
            length = ((long)m_rx[pos + 2] << 8) | m_rx[pos + 3];
            header = 4;
           }
         else
            if(length == 127)
              {
               if(total - pos < 10)
                  break;
               length = 0;
               for(int i = 0; i < 8; i++)
                  length = (length << 8) | m_rx[pos + 2 + i];
               header = 10;
              }
         if(masked)
           {
            m_error = "the server sent a masked frame";
            ok = false;
            break;
           }
         if(length > m_maxMessageBytes)
           {
            m_error = StringFormat("a frame of %I64d bytes is over the limit", length);
            ok = false;
            break;
           }
         if(total - pos < header + length)
            break;
         int start = pos + header;
         int size = (int)length;
         pos = start + size;
         if(opcode == 0x1 || opcode == 0x2)
           {
            if(fin)
               Enqueue(m_rx, start, size);
            else
              {
               ArrayResize(m_message, 0);
               ArrayCopy(m_message, m_rx, 0, start, size);
               m_fragmented = true;
              }
           }
         else
            if(opcode == 0x0)
              {
               if(!m_fragmented)
                 {
                  m_error = "a continuation frame without a first fragment";
                  ok = false;
                  break;
                 }
               int have = ArraySize(m_message);
               if(have + size > m_maxMessageBytes)
                 {
                  m_error = "a fragmented message over the limit";
                  ok = false;
                  break;
                 }
               ArrayCopy(m_message, m_rx, have, start, size);
               if(fin)
                 {
                  Enqueue(m_message, 0, ArraySize(m_message));
                  ArrayResize(m_message, 0);
                  m_fragmented = false;
                 }
              }
            else
               if(opcode == 0x8)
                 {
                  m_closeCode = size >= 2 ? ((int)m_rx[start] << 8) | m_rx[start + 1] : 1005;
                  uchar reply[2];
                  reply[0] = (uchar)((m_closeCode >> 8) & 0xFF);
                  reply[1] = (uchar)(m_closeCode & 0xFF);
                  SendFrame(0x8, reply, size >= 2 ? 2 : 0);
                  m_error = StringFormat("closed by the gateway with %d", m_closeCode);
                  m_open = false;
                  break;
                 }
               else
                  if(opcode == 0x9)
                    {
                     uchar pong[];
                     ArrayCopy(pong, m_rx, 0, start, size);
                     SendFrame(0xA, pong, size);
                    }
                  // 0xA (pong) and reserved opcodes carry nothing for the EA
        }
      if(pos > 0)
         ArrayRemove(m_rx, 0, pos);
      return(ok);
     }

   static string     Base64(const uchar &data[])
     {
      uchar key[];
      uchar out[];
      if(CryptEncode(CRYPT_BASE64, data, key, out) <= 0)
         return("");
      return(CharArrayToString(out, 0, ArraySize(out), CP_ACP));
     }

   static string     HeaderValue(const string headers, const string name)
     {
      string text = headers;
      StringReplace(text, "\r", "");
      string lines[];
      int n = StringSplit(text, '\n', lines);
      string wanted = name;
      StringToLower(wanted);
      for(int i = 1; i < n; i++)
        {
         int colon = StringFind(lines[i], ":");
         if(colon <= 0)
            continue;
         string key = StringSubstr(lines[i], 0, colon);
         StringToLower(key);
         StringTrimRight(key);
         if(key != wanted)
            continue;
         string value = StringSubstr(lines[i], colon + 1);
         StringTrimLeft(value);
         StringTrimRight(value);
         return(value);
        }
      return("");
     }

public:
                     CNativeTransport(void) : m_socket(INVALID_HANDLE), m_tls(false), m_open(false), m_closeCode(0),
                     m_refusalStatus(0), m_retryAfterMs(-1), m_maxMessageBytes(16 * 1048576), m_fragmented(false),
                     m_queueHead(0) {}
                    ~CNativeTransport(void) { Close(); }

   virtual bool      Open(const string url, const string token, const int timeoutMs)
     {
      Close();
      m_closeCode = 0;
      m_refusalStatus = 0;
      m_retryAfterMs = -1;
      m_error = "";
      // ws[s]://host[:port][/path]
      string rest = url;
      if(StringFind(url, "wss://") == 0)
        {
         m_tls = true;
         rest = StringSubstr(url, 6);
        }
      else
         if(StringFind(url, "ws://") == 0)
           {
            m_tls = false;
            rest = StringSubstr(url, 5);
           }
         else
           {
            m_error = "the gateway URL must start with ws:// or wss://";
            return(false);
           }
      int slash = StringFind(rest, "/");
      string authority = slash >= 0 ? StringSubstr(rest, 0, slash) : rest;
      string path = slash >= 0 ? StringSubstr(rest, slash) : "/";
      string host = authority;
      uint port = m_tls ? 443 : 80;
      int colon = StringFind(authority, ":", StringFind(authority, "]") + 1);
      if(colon > 0)
        {
         host = StringSubstr(authority, 0, colon);
         port = (uint)StringToInteger(StringSubstr(authority, colon + 1));
        }
      if(host == "" || port == 0)
        {
         m_error = "cannot read host and port from " + url;
         return(false);
        }
      m_socket = SocketCreate();
      if(m_socket == INVALID_HANDLE)
         return(Fail("SocketCreate failed"));
      if(!SocketConnect(m_socket, host, port, timeoutMs))
        {
         Fail("cannot connect to " + authority + " (is the host in the terminal's allowed URL list?)");
         Close();
         return(false);
        }
      SocketTimeouts(m_socket, timeoutMs, timeoutMs);
      if(m_tls)
        {
         string subject, issuer, serial, thumbprint;
         datetime expiration;
         // on port 443 the terminal has already secured the connection; elsewhere ask for it
         if(!SocketTlsCertificate(m_socket, subject, issuer, serial, thumbprint, expiration))
           {
            ResetLastError();
            if(!SocketTlsHandshake(m_socket, host))
              {
               Fail("TLS handshake with " + host + " failed");
               Close();
               return(false);
              }
           }
        }
      // the opening handshake
      uchar nonce[16];
      if(!m_random.Fill(nonce, 0, 16))
        {
         m_error = "no random handshake key (SHA-256 unavailable)";
         Close();
         return(false);
        }
      string key = Base64(nonce);
      string request = "GET " + path + " HTTP/1.1\r\n"
                       + "Host: " + authority + "\r\n"
                       + "Upgrade: websocket\r\n"
                       + "Connection: Upgrade\r\n"
                       + "Sec-WebSocket-Key: " + key + "\r\n"
                       + "Sec-WebSocket-Version: 13\r\n"
                       + "Sec-WebSocket-Protocol: " + HB_SUBPROTOCOL + "\r\n"
                       + "Authorization: Bearer " + token + "\r\n"
                       + "User-Agent: hedgebridge-ea\r\n\r\n";
      uchar bytes[];
      int length = StringToCharArray(request, bytes, 0, WHOLE_ARRAY, CP_UTF8) - 1;
      if(!SendBytes(bytes, length))
        {
         Close();
         return(false);
        }
      // the response head, up to the blank line; bytes after it are frames
      ArrayResize(m_rx, 0);
      int end = -1;
      ulong deadline = GetTickCount64() + (ulong)timeoutMs;
      while(end < 0)
        {
         if(Pull() < 0)
           {
            Close();
            return(false);
           }
         int size = ArraySize(m_rx);
         for(int i = 3; i < size; i++)
            if(m_rx[i - 3] == '\r' && m_rx[i - 2] == '\n' && m_rx[i - 1] == '\r' && m_rx[i] == '\n')
              {
               end = i + 1;
               break;
              }
         if(end < 0)
           {
            if(GetTickCount64() > deadline || size > 65536)
              {
               m_error = "no handshake response from the gateway";
               Close();
               return(false);
              }
            Sleep(5);
           }
        }
      string head = CharArrayToString(m_rx, 0, end, CP_UTF8);
      string body = CharArrayToString(m_rx, end, MathMin(ArraySize(m_rx) - end, 512), CP_UTF8);
      StringTrimRight(body);  // one journal line
      ArrayRemove(m_rx, 0, end);
      string parts[];
      if(StringSplit(head, ' ', parts) < 2 || parts[1] != "101")
        {
         string status = ArraySize(parts) >= 2 ? parts[1] : "?";
         m_refusalStatus = (int)StringToInteger(status);
         m_retryAfterMs = HbRetryAfterMs(HeaderValue(head, "Retry-After"));
         m_error = "the gateway refused the connection: HTTP " + status + " " + body
                   + (status == "401" ? " (token missing, invalid or expired)" : "");
         Close();
         return(false);
        }
      // Sec-WebSocket-Accept = base64(SHA-1(key + GUID))
      uchar seed[];
      uchar empty[];
      uchar digest[];
      StringToCharArray(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", seed, 0, StringLen(key) + 36, CP_UTF8);
      if(CryptEncode(CRYPT_HASH_SHA1, seed, empty, digest) <= 0
         || HeaderValue(head, "Sec-WebSocket-Accept") != Base64(digest))
        {
         m_error = "the gateway's Sec-WebSocket-Accept does not match the key";
         Close();
         return(false);
        }
      if(HeaderValue(head, "Sec-WebSocket-Protocol") != HB_SUBPROTOCOL)
        {
         m_error = "the gateway did not accept the subprotocol " + HB_SUBPROTOCOL;
         Close();
         return(false);
        }
      m_open = true;
      ArrayResize(m_message, 0);
      m_fragmented = false;
      ArrayResize(m_queue, 0);
      m_queueHead = 0;
      ParseFrames(); // frames that came with the handshake response (WELCOME)
      return(true);
     }

   virtual bool      Write(const string text)
     {
      if(!m_open)
         return(false);
      uchar payload[];
      int length = StringToCharArray(text, payload, 0, WHOLE_ARRAY, CP_UTF8) - 1;
      if(length < 0)
         length = 0;
      if(!SendFrame(0x1, payload, length))
        {
         m_open = false;
         return(false);
        }
      return(true);
     }

   virtual bool      Read(string &text)
     {
      if(m_open && m_socket != INVALID_HANDLE)
        {
         if(Pull() < 0)
            m_open = false;
         if(ArraySize(m_rx) > 0 && !ParseFrames())
           {
            uchar code[2];
            code[0] = (uchar)(1002 >> 8);
            code[1] = (uchar)(1002 & 0xFF);
            SendFrame(0x8, code, 2);
            m_open = false;
           }
        }
      if(m_queueHead >= ArraySize(m_queue))
        {
         ArrayResize(m_queue, 0);
         m_queueHead = 0;
         return(false);
        }
      text = m_queue[m_queueHead];
      m_queue[m_queueHead] = "";
      m_queueHead++;
      return(true);
     }

   virtual bool      IsOpen(void) { return(m_open); }
   virtual bool      IsAlive(void) { return(m_open); }

   virtual void      Close(void)
     {
      if(m_socket != INVALID_HANDLE)
        {
         if(m_open)
           {
            uchar code[2];
            code[0] = (uchar)(1000 >> 8);
            code[1] = (uchar)(1000 & 0xFF);
            SendFrame(0x8, code, 2);
           }
         SocketClose(m_socket);
        }
      m_socket = INVALID_HANDLE;
      m_open = false;
     }

   virtual int       CloseCode(void) { return(m_closeCode); }
   virtual int       RefusalStatus(void) { return(m_refusalStatus); }
   virtual int       RetryAfterMs(void) { return(m_retryAfterMs); }
   virtual string    LastError(void) { return(m_error); }
   virtual string    Name(void) { return("native"); }
  };

//+------------------------------------------------------------------+
//| The connection as the EA sees it                                 |
//+------------------------------------------------------------------+
enum ENUM_HB_WS_EVENT
  {
   HB_WS_NONE,       // nothing changed
   HB_WS_OPENED,     // the WebSocket opened (WELCOME follows)
   HB_WS_LOST        // the connection ended; a reconnect is scheduled
  };

class CWebSocketManager
  {
private:
   CWsTransport     *m_transport;
   string            m_url;
   string            m_token;
   int               m_timeoutMs;
   int               m_backoffMinMs;
   int               m_backoffMaxMs;
   int               m_backoffMs;
   ulong             m_nextAttempt;
   bool              m_connected;
   ulong             m_lastReceived;
   ulong             m_lastHeartbeat;
   long              m_seq;
   string            m_accountId;
   int               m_heartbeatIntervalMs;
   int               m_heartbeatTimeoutMs;
   int               m_maxFrameBytes;

   // the next attempt after a random delay (Backoff.mqh), at least retryAfterMs and a random share of it when
   // the refusal named one
   int               Schedule(const int retryAfterMs)
     {
      int delay = HbReconnectDelayMs(HbDecorrelatedJitterMs(m_backoffMs, m_backoffMinMs, m_backoffMaxMs),
                                     retryAfterMs);
      m_nextAttempt = GetTickCount64() + (ulong)delay;
      m_backoffMs = delay;
      return(delay);
     }

   // " (HTTP 503, Retry-After 2000 ms)" for a log line, "" when the attempt was not refused over HTTP
   static string     RefusalText(const int status, const int retryAfterMs)
     {
      if(status <= 0)
         return("");
      if(retryAfterMs < 0)
         return(StringFormat(" (HTTP %d)", status));
      return(StringFormat(" (HTTP %d, Retry-After %d ms)", status, retryAfterMs));
     }

public:
                     CWebSocketManager(void) : m_transport(NULL), m_timeoutMs(5000), m_backoffMinMs(500),
                     m_backoffMaxMs(30000), m_backoffMs(500), m_nextAttempt(0), m_connected(false), m_lastReceived(0),
                     m_lastHeartbeat(0), m_seq(0), m_heartbeatIntervalMs(1000), m_heartbeatTimeoutMs(3500),
                     m_maxFrameBytes(1048576) {}
                    ~CWebSocketManager(void) { Deinit(); }

   bool              Init(const ENUM_HB_TRANSPORT kind, const string url, const string token, const string dllOptions,
                          const int timeoutMs, const int backoffMinMs, const int backoffMaxMs)
     {
      Deinit();
      m_url = url;
      m_token = token;
      m_timeoutMs = timeoutMs;
      m_backoffMinMs = MathMax(backoffMinMs, 50);
      m_backoffMaxMs = MathMax(backoffMaxMs, m_backoffMinMs);
      m_backoffMs = m_backoffMinMs;
      m_nextAttempt = 0;
#ifdef HB_NO_DLL
      if(kind == HB_TRANSPORT_DLL)
        {
         Print("hedgebridge: this build has no DLL transport (HedgeSystemConnectorNative); use the native transport");
         return(false);
        }
      m_transport = new CNativeTransport();
#else
      if(kind == HB_TRANSPORT_DLL)
         m_transport = new CDllTransport(dllOptions, m_backoffMinMs, m_backoffMaxMs);
      else
         m_transport = new CNativeTransport();
#endif
      return(m_transport != NULL);
     }

   void              Deinit(void)
     {
      if(CheckPointer(m_transport) == POINTER_DYNAMIC)
        {
         m_transport.Close();
         delete m_transport;
        }
      m_transport = NULL;
      m_connected = false;
     }

   string            TransportName(void) { return(m_transport != NULL ? m_transport.Name() : ""); }

   // Start (or restart) the connection now.
   bool              Connect(void)
     {
      if(m_transport == NULL)
         return(false);
      if(!m_transport.Open(m_url, m_token, m_timeoutMs))
        {
         int status = m_transport.RefusalStatus();
         int retryAfterMs = m_transport.RetryAfterMs();
         int delay = Schedule(retryAfterMs);
         PrintFormat("hedgebridge: cannot connect (%s transport): %s; next attempt in %d ms%s", m_transport.Name(),
                     m_transport.LastError(), delay, RefusalText(status, retryAfterMs));
         return(false);
        }
      return(true);
     }

   void              Disconnect(void)
     {
      if(m_transport != NULL)
         m_transport.Close();
      m_connected = false;
     }

   // Keep the connection: reconnect when due, notice when it opened or was lost. Call often (timer, ticks).
   ENUM_HB_WS_EVENT  Service(void)
     {
      if(m_transport == NULL)
         return(HB_WS_NONE);
      ulong now = GetTickCount64();
      // a transport that reconnects by itself says when it will; not after 4002, which stops it (below)
      int retry = 0;
      int retryDelayMs = 0;
      if(m_transport.CloseCode() != HB_CLOSE_SESSION_REPLACED && m_transport.RetryScheduled(retry, retryDelayMs))
         PrintFormat("hedgebridge: %s; the %s transport reconnects in %d ms (reconnect %d)%s", m_transport.LastError(),
                     m_transport.Name(), retryDelayMs, retry,
                     RefusalText(m_transport.RefusalStatus(), m_transport.RetryAfterMs()));
      bool isOpen = m_transport.IsOpen();
      if(isOpen && !m_connected)
        {
         m_connected = true;
         m_backoffMs = m_backoffMinMs;
         m_lastReceived = now;
         m_lastHeartbeat = now;
         m_seq = 0;
         m_accountId = "";
         return(HB_WS_OPENED);
        }
      if(!isOpen && m_connected)
        {
         m_connected = false;
         int code = m_transport.CloseCode();
         PrintFormat("hedgebridge: connection lost (close code %d): %s", code, m_transport.LastError());
         if(code == HB_CLOSE_SESSION_REPLACED)
           {
            // Another EA connected for this account. Taking it back at once would replace that one, which
            // would do the same: wait the longest reconnect delay, and stop the DLL's own reconnecting.
            PrintFormat("hedgebridge: another terminal took over account %s; this EA tries again in %d s "
                        "(run one EA per account: remove this one or the other)", m_accountId,
                        m_backoffMaxMs / 1000);
            m_transport.Close();
            m_backoffMs = m_backoffMaxMs;
            m_nextAttempt = now + (ulong)m_backoffMaxMs;
            return(HB_WS_LOST);
           }
         Schedule(-1);
         return(HB_WS_LOST);
        }
      if(!isOpen && !m_transport.IsAlive() && now >= m_nextAttempt)
         Connect();
      return(HB_WS_NONE);
     }

   bool              IsConnected(void) { return(m_connected); }

   // the seq of the next heartbeat this EA sends on the connection (its reply proves what was sent before it)
   long              NextHeartbeatSeq(void) { return(m_seq + 1); }

   // Close the connection when the gateway has been silent longer than the heartbeat timeout (it answers
   // every heartbeat, so silence means a dead connection). Call after reading the waiting frames.
   void              CheckSilence(void)
     {
      ulong now = GetTickCount64();
      if(!m_connected || m_heartbeatTimeoutMs <= 0 || now - m_lastReceived <= (ulong)m_heartbeatTimeoutMs)
         return;
      PrintFormat("hedgebridge: nothing from the gateway for %d ms; reconnecting", (int)(now - m_lastReceived));
      m_transport.Close();
     }

   // WELCOME's settings for this session
   void              Configure(const string accountId, const int intervalMs, const int timeoutMs, const int maxFrameBytes)
     {
      m_accountId = accountId;
      if(intervalMs > 0)
         m_heartbeatIntervalMs = intervalMs;
      if(timeoutMs > 0)
         m_heartbeatTimeoutMs = timeoutMs;
      if(maxFrameBytes > 0)
         m_maxFrameBytes = maxFrameBytes;
     }

   bool              SendMessage(const string json)
     {
      if(!m_connected)
         return(false);
      if(StringLen(json) * 3 > m_maxFrameBytes)
        {
         uchar bytes[];
         int length = StringToCharArray(json, bytes, 0, WHOLE_ARRAY, CP_UTF8) - 1;
         if(length > m_maxFrameBytes)
           {
            PrintFormat("hedgebridge: a frame of %d bytes is over the gateway's limit of %d; not sent", length,
                        m_maxFrameBytes);
            return(false);
           }
        }
      if(!m_transport.Write(json))
        {
         PrintFormat("hedgebridge: send failed: %s", m_transport.LastError());
         return(false);
        }
      return(true);
     }

   // One received frame, if any.
   bool              ReceiveMessage(string &json)
     {
      if(m_transport == NULL || !m_transport.Read(json))
         return(false);
      m_lastReceived = GetTickCount64();
      return(true);
     }

   // A heartbeat every heartbeatIntervalMs (after WELCOME named the account).
   void              SendHeartbeat(void)
     {
      ulong now = GetTickCount64();
      if(!m_connected || m_accountId == "" || now - m_lastHeartbeat < (ulong)m_heartbeatIntervalMs)
         return;
      m_lastHeartbeat = now;
      m_seq++;
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_HEARTBEAT);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Int(HB_FIELD_SEQ, m_seq);
      w.Str(HB_FIELD_ACCOUNT_ID, m_accountId);
      w.EndObject();
      SendMessage(w.Text());
     }

   // The gateway's heartbeat (reply false) is answered at once with the same seq and reply true.
   void              AnswerHeartbeat(const long seq)
     {
      CJsonWriter w;
      w.BeginObject();
      w.Str(HB_TYPE_FIELD, HB_MSG_HEARTBEAT);
      w.Str(HB_FIELD_TIMESTAMP, HbNowIso());
      w.Int(HB_FIELD_SEQ, seq);
      w.Bool(HB_FIELD_REPLY, true);
      if(m_accountId != "")
         w.Str(HB_FIELD_ACCOUNT_ID, m_accountId);
      w.EndObject();
      SendMessage(w.Text());
     }

   bool              HandleReconnection(void) { return(Service() == HB_WS_OPENED); }
  };

#endif // HEDGEBRIDGE_WEBSOCKETMANAGER_MQH
