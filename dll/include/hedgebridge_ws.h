/*
 * hedgebridge_ws — the WebSocket client the hedgebridge Expert Advisor loads.
 *
 * One connection per loaded library. A background thread owns the socket: it connects, keeps the socket
 * alive, reconnects with decorrelated-jitter backoff (waiting out a refusal's Retry-After) until
 * DisconnectWebSocket, queues received text frames for ReceiveMessage and writes the frames queued by WsSend.
 * No function blocks on the network.
 *
 * Strings: the plain functions take and return UTF-8; the ...W functions take and return UTF-16 (MQL5's
 * string), converted to and from UTF-8 internally (surrogate pairs included; invalid input becomes U+FFFD).
 *
 * Buffers (ReceiveMessage, ReceiveMessageW, WsGetLastErrorMessage, WsGetLastErrorMessageW): bufferSize counts
 * characters of the buffer's type (bytes, or UTF-16 code units). On success the text and a terminating NUL
 * are written and the number of characters written (NUL excluded) is returned. When the buffer is too small
 * (or NULL), nothing is written and nothing is consumed: the result is -(size needed, NUL included), and
 * that result is the only report (WsGetLastError keeps the last real failure).
 * ReceiveMessage returns 0 both for an empty frame (it writes the NUL and consumes the frame) and when no
 * frame is waiting (it writes nothing): WsPendingMessages tells them apart.
 *
 * See dll/README.md for the error codes, options, threading model and the MQL5 #import block.
 */
#ifndef HEDGEBRIDGE_WS_H
#define HEDGEBRIDGE_WS_H

#ifdef _WIN32
#define HBWS_API __declspec(dllexport)
#define HBWS_CALL __stdcall
typedef wchar_t WCHAR16;
#else
#define HBWS_API __attribute__((visibility("default")))
#define HBWS_CALL
#ifdef __cplusplus
typedef char16_t WCHAR16;
#else
#include <uchar.h>
typedef char16_t WCHAR16;
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (WsGetLastError). */
#define WS_ERR_NONE 0               /* no error */
#define WS_ERR_INVALID_ARGUMENT 1   /* bad URL, empty token, unknown option, bad option value */
#define WS_ERR_CONNECT_FAILED 2     /* name resolution, TCP connect or timeout */
#define WS_ERR_UNAUTHORIZED 3       /* the gateway refused the token (HTTP 401) */
#define WS_ERR_TLS 4                /* TLS handshake or certificate verification failed */
#define WS_ERR_NOT_CONNECTED 5      /* WsSend while the connection is not open */
#define WS_ERR_QUEUE_FULL 6         /* WsSend: the outgoing queue holds max_queue frames */
#define WS_ERR_MESSAGE_TOO_LARGE 7  /* WsSend: over max_message_bytes (UTF-8), or a received frame over it */
#define WS_ERR_BUFFER_TOO_SMALL 8   /* no longer set: a too small buffer is reported by the result only */
#define WS_ERR_CLOSED_BY_SERVER 9   /* the server closed the connection; WsGetCloseCode says why */
#define WS_ERR_HANDSHAKE_REFUSED 10 /* the upgrade was refused with another HTTP status (404, 429, 503, ...) */
#define WS_ERR_CONNECTION_LOST 11   /* the connection dropped without a closing handshake */
#define WS_ERR_PROTOCOL 12          /* the server broke the WebSocket protocol or did not accept hedgebridge.v1 */
#define WS_ERR_INTERNAL 13          /* unexpected failure inside the library */

/* Connection states (WsGetState). */
#define WS_STATE_IDLE 0         /* never connected, or DisconnectWebSocket was called */
#define WS_STATE_CONNECTING 1   /* resolving, connecting, TLS and WebSocket handshakes */
#define WS_STATE_OPEN 2         /* open: WsSend accepts frames */
#define WS_STATE_BACKOFF 3      /* the last attempt failed or the connection ended; waiting to reconnect */

/* Connect to url (ws:// or wss://) with "Authorization: Bearer <token>" and the subprotocol hedgebridge.v1.
   Returns at once: 1 when the background thread was started (it keeps reconnecting until
   DisconnectWebSocket), 0 on an invalid argument. An existing connection is closed first. */
HBWS_API int HBWS_CALL ConnectWebSocket(const char* url, const char* token);
HBWS_API int HBWS_CALL ConnectWebSocketW(const WCHAR16* url, const WCHAR16* token);

/* Queue one text frame. 1 queued; 0 when not connected, the queue is full or the message is too large. */
HBWS_API int HBWS_CALL WsSend(const char* utf8_message);
HBWS_API int HBWS_CALL WsSendW(const WCHAR16* message);

/* Pop one received text frame into buffer (see the buffer rules above). 0 = an empty frame or none waiting. */
HBWS_API int HBWS_CALL ReceiveMessage(char* buffer, int bufferSize);
HBWS_API int HBWS_CALL ReceiveMessageW(WCHAR16* buffer, int bufferSize);

/* The number of received frames waiting to be read. With one reader, a frame is waiting when this is > 0,
   so a ReceiveMessage result of 0 then means an empty frame. */
HBWS_API int HBWS_CALL WsPendingMessages(void);

/* 1 while the connection is open, else 0. */
HBWS_API int HBWS_CALL IsConnected(void);

/* Close with 1000 and stop the background thread, without waiting: the state is WS_STATE_IDLE at once, and
   the retired thread finishes the closing handshake (close_timeout_ms at most) and ends by itself.
   Idempotent. Received frames not yet read stay readable (frames that arrive later are dropped); queued
   outgoing frames not yet written are dropped. */
HBWS_API void HBWS_CALL DisconnectWebSocket(void);

/* The code of the most recent failure (a call's or the background connection's); see WS_ERR_*.
   Successful calls do not clear it; ConnectWebSocket does. */
HBWS_API int HBWS_CALL WsGetLastError(void);
HBWS_API int HBWS_CALL WsGetLastErrorMessage(char* buffer, int bufferSize);
HBWS_API int HBWS_CALL WsGetLastErrorMessageW(WCHAR16* buffer, int bufferSize);

/* The close code of the server's most recent close frame (1001 going away, 1008 policy, 1009 too big,
   4001 heartbeat timeout, 4002 replaced, ...), 0 if none since ConnectWebSocket. */
HBWS_API int HBWS_CALL WsGetCloseCode(void);

/* Tuning, applied at the next (re)connect: ca_file, verify_tls, reconnect_min_ms, reconnect_max_ms,
   max_queue, max_message_bytes, connect_timeout_ms, keepalive_ms, close_timeout_ms. 1 ok, 0 unknown option
   or bad value. */
HBWS_API int HBWS_CALL WsSetOption(const char* name, const char* value);
HBWS_API int HBWS_CALL WsSetOptionW(const WCHAR16* name, const WCHAR16* value);

/* The connection state (WS_STATE_*). */
HBWS_API int HBWS_CALL WsGetState(void);

/* Reconnects scheduled since ConnectWebSocket (one per failed attempt or ended connection), and the delay in
   milliseconds chosen for the latest one (0 before the first). Read the count, the delay, then the count
   again: when both counts agree, the delay belongs to that reconnect. */
HBWS_API int HBWS_CALL WsGetReconnectCount(void);
HBWS_API int HBWS_CALL WsGetReconnectDelayMs(void);

/* Why the latest reconnect was scheduled, when the server refused the WebSocket upgrade: its HTTP status
   (401, 404, 429 too many connections, 503 gateway busy, ...), 0 when that attempt got no HTTP answer or the
   connection had opened (and 0 before the first reconnect); and the refusal's Retry-After in milliseconds,
   -1 when it had none. A Retry-After is waited out: the delay is at least that long, plus a random share of
   up to as long again (the longer of that and the jittered delay). Only delay-seconds up to 3600 are
   honoured; another value counts as none. Read them between two WsGetReconnectCount calls, like the delay.
   Added after the first version: an older library does not export them. */
HBWS_API int HBWS_CALL WsGetHttpStatus(void);
HBWS_API int HBWS_CALL WsGetRetryAfterMs(void);

#ifdef __cplusplus
}
#endif

#endif /* HEDGEBRIDGE_WS_H */
