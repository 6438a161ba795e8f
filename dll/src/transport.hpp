// The internal transport interface: one WebSocket session from connect to close, driven by the core's
// background thread. Two implementations: Boost.Beast (Linux) and WinHTTP (Windows). The core makes one
// transport per background thread: a thread retired by DisconnectWebSocket finishes its close on its own
// transport while a new connection uses another.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace hbws {

// Error codes shared with the C API (WS_ERR_* in hedgebridge_ws.h).
enum Error : int {
    kNone = 0,
    kInvalidArgument = 1,
    kConnectFailed = 2,
    kUnauthorized = 3,
    kTls = 4,
    kNotConnected = 5,
    kQueueFull = 6,
    kMessageTooLarge = 7,
    kBufferTooSmall = 8,
    kClosedByServer = 9,
    kHandshakeRefused = 10,
    kConnectionLost = 11,
    kProtocol = 12,
    kInternal = 13,
};

struct Endpoint {
    bool secure = false;
    std::string host;    // without brackets for IPv6 literals
    std::uint16_t port = 0;
    std::string target;  // path and query, starting with '/'
    std::string host_header() const;  // host[:port] as sent in the Host header
};

// Parses ws://host[:port]/path or wss://...; returns false with a reason on anything else.
bool parse_url(const std::string& url, Endpoint& out, std::string& reason);

struct SessionParams {
    Endpoint endpoint;
    std::string token;        // sent as "Authorization: Bearer <token>"
    std::string subprotocol;  // offered in Sec-WebSocket-Protocol; the server must select it
    bool verify_tls = true;
    std::string ca_file;      // PEM bundle that replaces the system roots when not empty
    int connect_timeout_ms = 10000;
    int keepalive_ms = 20000;  // WebSocket ping after this much silence; 0 disables
    int close_timeout_ms = 3000;  // after request_close: how long to wait for the server's close frame
    std::size_t max_message_bytes = 1 << 20;
};

// What a session reports back to the core. Called on the session's own thread(s).
class SessionHooks {
public:
    virtual ~SessionHooks() = default;
    virtual void on_open() = 0;
    // A complete received frame. The transport reads the next frame only while has_room() is true.
    virtual void on_message(std::string&& text) = 0;
    virtual bool has_room() = 0;
    // Pops the next frame to write; false when there is none.
    virtual bool next_outgoing(std::string& out) = 0;
};

struct SessionResult {
    Error error = kNone;      // kNone when closed on request
    std::string message;      // human-readable reason
    int close_code = 0;       // the server's close code, when it sent one
    bool opened = false;      // the WebSocket handshake succeeded
    int http_status = 0;      // the HTTP status that refused the upgrade (401, 429, 503, ...); 0 when none did
    int retry_after_ms = -1;  // that refusal's Retry-After, when it had one the library honours; else -1
};

// The longest Retry-After honoured, in seconds. A longer one, an HTTP date or anything but a number of
// seconds is ignored (the normal backoff applies), as in libs/common/hedgebridge/common/backoff.py.
inline constexpr int kRetryAfterMaxS = 3600;

// The milliseconds of a Retry-After header's value (delay-seconds: "2", "1.5", blanks around), or -1 when it
// is absent (has_header false), not a number of seconds, or over kRetryAfterMaxS.
int parse_retry_after_ms(bool has_header, const std::string& value);

// The result of an upgrade answered with `status` (not 101): 401 is kUnauthorized, any other status
// kHandshakeRefused; the message names the status, the Retry-After and the start of the body.
SessionResult refused_upgrade(int status, int retry_after, const std::string& body);

class Transport {
public:
    virtual ~Transport() = default;
    // Runs one session to its end on the calling thread: connect, handshake, then exchange frames until the
    // peer closes, the connection fails, or request_close() is called.
    virtual SessionResult run_session(const SessionParams& params, SessionHooks& hooks) = 0;
    // Thread-safe: there are frames to write, or room in the receive queue again.
    virtual void wake() = 0;
    // Thread-safe: end the current session (close 1000 when open, waiting at most close_timeout_ms for the
    // server's answer) and make every later run_session return at once.
    virtual void request_close() = 0;
    // Thread-safe: like request_close, but cut the connection now, without the closing handshake.
    virtual void abort() = 0;
};

std::unique_ptr<Transport> make_transport();

}  // namespace hbws
