// The connection manager and the exported C API. Platform-independent: the socket lives in a Transport.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "hedgebridge_ws.h"
#include "platform.hpp"
#include "transport.hpp"
#include "utf.hpp"

namespace hbws {
namespace {

constexpr const char* kSubprotocol = "hedgebridge.v1";  // libs/protocol: version.subprotocol()

struct Options {
    bool verify_tls = true;
    std::string ca_file;
    int reconnect_min_ms = 500;
    int reconnect_max_ms = 30000;
    std::size_t max_queue = 1024;
    std::size_t max_message_bytes = 1 << 20;
    int connect_timeout_ms = 10000;
    int keepalive_ms = 20000;
};

bool parse_int(const char* text, long long min, long long max, long long& out) {
    if (text == nullptr || *text == '\0') return false;
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) return false;
    out = value;
    return true;
}

// Copies text and its NUL into buffer when it fits; otherwise returns -(needed) and writes nothing.
template <typename Char>
int copy_out(const std::basic_string<Char>& text, Char* buffer, int size) {
    const std::size_t needed = text.size() + 1;
    if (needed > static_cast<std::size_t>(INT_MAX)) return INT_MIN;
    if (buffer == nullptr || size < 0 || static_cast<std::size_t>(size) < needed) return -static_cast<int>(needed);
    if (!text.empty()) std::memcpy(buffer, text.data(), text.size() * sizeof(Char));
    buffer[text.size()] = Char(0);
    return static_cast<int>(text.size());
}

class Connection final : public SessionHooks {
public:
    Connection() : transport_(make_transport()), rng_(std::random_device{}()) {}

    int connect(const std::string& url, const std::string& token) {
        std::lock_guard<std::mutex> api(api_mu_);
        Endpoint ep;
        std::string reason;
        if (!parse_url(url, ep, reason)) return fail(kInvalidArgument, "invalid URL: " + reason);
        if (token.empty()) return fail(kInvalidArgument, "the token is empty");
        for (char c : token) {
            const auto u = static_cast<unsigned char>(c);
            if (u < 0x21 || u > 0x7E) return fail(kInvalidArgument, "the token contains spaces or control characters");
        }
        stop_locked();
        {
            std::lock_guard<std::mutex> lock(mu_);
            inbox_.clear();
            outbox_.clear();
            error_ = kNone;
            error_message_.clear();
            close_code_ = 0;
            stop_ = false;
            state_ = WS_STATE_CONNECTING;
            endpoint_ = ep;
            token_ = token;
        }
        transport_->reset();
        try {
            thread_ = std::thread([this] { run(); });
        } catch (const std::exception& exc) {
            std::lock_guard<std::mutex> lock(mu_);
            state_ = WS_STATE_IDLE;
            set_error_locked(kInternal, std::string("cannot start the connection thread: ") + exc.what());
            return 0;
        }
        pin_module();
        pinned_ = true;
        return 1;
    }

    void disconnect() {
        std::lock_guard<std::mutex> api(api_mu_);
        stop_locked();
    }

    int send(std::string&& text) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (state_ != WS_STATE_OPEN) return fail_locked(kNotConnected, "not connected");
            if (text.size() > options_.max_message_bytes) {
                return fail_locked(kMessageTooLarge, "the message is " + std::to_string(text.size()) +
                                                         " bytes; max_message_bytes is " +
                                                         std::to_string(options_.max_message_bytes));
            }
            if (outbox_.size() >= options_.max_queue) {
                return fail_locked(kQueueFull, "the outgoing queue is full (" + std::to_string(outbox_.size()) +
                                                   " frames)");
            }
            outbox_.push_back(std::move(text));
        }
        transport_->wake();
        return 1;
    }

    template <typename Char, typename Convert>
    int receive(Char* buffer, int size, Convert convert) {
        bool was_full = false;
        int result = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (inbox_.empty()) return 0;
            const std::basic_string<Char> text = convert(inbox_.front());
            result = copy_out(text, buffer, size);
            if (result < 0) {
                set_error_locked(kBufferTooSmall, "the buffer holds " + std::to_string(size < 0 ? 0 : size) +
                                                      " characters; the message needs " +
                                                      std::to_string(-static_cast<long long>(result)) +
                                                      " with its NUL");
                return result;
            }
            was_full = inbox_.size() >= options_.max_queue;
            inbox_.pop_front();
        }
        if (was_full) transport_->wake();
        return result;
    }

    template <typename Char, typename Convert>
    int error_message(Char* buffer, int size, Convert convert) {
        // leaves the error as it is, so that the caller can ask again with a larger buffer
        std::lock_guard<std::mutex> lock(mu_);
        return copy_out(convert(error_message_), buffer, size);
    }

    int is_connected() {
        std::lock_guard<std::mutex> lock(mu_);
        return state_ == WS_STATE_OPEN ? 1 : 0;
    }

    int state() {
        std::lock_guard<std::mutex> lock(mu_);
        return state_;
    }

    int last_error() {
        std::lock_guard<std::mutex> lock(mu_);
        return error_;
    }

    int close_code() {
        std::lock_guard<std::mutex> lock(mu_);
        return close_code_;
    }

    int set_option(const std::string& name, const char* value) {
        std::lock_guard<std::mutex> lock(mu_);
        if (value == nullptr) return fail_locked(kInvalidArgument, "option " + name + ": the value is NULL");
        long long n = 0;
        auto bad = [&](const std::string& expected) {
            return fail_locked(kInvalidArgument, "option " + name + ": expected " + expected);
        };
        if (name == "verify_tls") {
            const std::string v(value);
            if (v == "1" || v == "true") {
                options_.verify_tls = true;
            } else if (v == "0" || v == "false") {
                options_.verify_tls = false;
            } else {
                return bad("1 or 0");
            }
        } else if (name == "ca_file") {
            const std::string path(value);
            std::string content;
            if (!path.empty() && !read_file(path, content)) return bad("a readable PEM file (" + path + ")");
            options_.ca_file = path;
        } else if (name == "reconnect_min_ms") {
            if (!parse_int(value, 1, 3600000, n)) return bad("milliseconds between 1 and 3600000");
            options_.reconnect_min_ms = static_cast<int>(n);
        } else if (name == "reconnect_max_ms") {
            if (!parse_int(value, 1, 3600000, n)) return bad("milliseconds between 1 and 3600000");
            options_.reconnect_max_ms = static_cast<int>(n);
        } else if (name == "max_queue") {
            if (!parse_int(value, 1, 1000000, n)) return bad("a number of frames between 1 and 1000000");
            options_.max_queue = static_cast<std::size_t>(n);
        } else if (name == "max_message_bytes") {
            if (!parse_int(value, 1024, 256LL << 20, n)) return bad("bytes between 1024 and 268435456");
            options_.max_message_bytes = static_cast<std::size_t>(n);
        } else if (name == "connect_timeout_ms") {
            if (!parse_int(value, 100, 600000, n)) return bad("milliseconds between 100 and 600000");
            options_.connect_timeout_ms = static_cast<int>(n);
        } else if (name == "keepalive_ms") {
            if (!parse_int(value, 0, 3600000, n) || (n != 0 && n < 1000)) return bad("0 (off) or 1000 to 3600000");
            options_.keepalive_ms = static_cast<int>(n);
        } else {
            return fail_locked(kInvalidArgument, "unknown option " + name);
        }
        return 1;
    }

    int fail(Error code, const std::string& message) {
        std::lock_guard<std::mutex> lock(mu_);
        return fail_locked(code, message);
    }

    // --- SessionHooks (called on the transport's threads) ---
    void on_open() override {
        std::lock_guard<std::mutex> lock(mu_);
        state_ = WS_STATE_OPEN;
    }

    void on_message(std::string&& text) override {
        std::lock_guard<std::mutex> lock(mu_);
        inbox_.push_back(std::move(text));
    }

    bool has_room() override {
        std::lock_guard<std::mutex> lock(mu_);
        return inbox_.size() < options_.max_queue;
    }

    bool next_outgoing(std::string& out) override {
        std::lock_guard<std::mutex> lock(mu_);
        if (outbox_.empty()) return false;
        out = std::move(outbox_.front());
        outbox_.pop_front();
        return true;
    }

private:
    int fail_locked(Error code, const std::string& message) {
        set_error_locked(code, message);
        return 0;
    }

    void set_error_locked(Error code, const std::string& message) {
        error_ = code;
        error_message_ = message;
    }

    // Stops the background thread, if any. Caller holds api_mu_.
    void stop_locked() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        transport_->request_close();
        if (thread_.joinable()) thread_.join();
        {
            std::lock_guard<std::mutex> lock(mu_);
            state_ = WS_STATE_IDLE;
            outbox_.clear();
        }
        if (pinned_) {
            pinned_ = false;
            unpin_module();
        }
    }

    int backoff_ms(int attempt, const Options& o) {
        const long long lo = o.reconnect_min_ms;
        const long long hi = std::max<long long>(o.reconnect_max_ms, lo);
        long long base = lo;
        for (int i = 0; i < attempt && base < hi; ++i) base *= 2;
        base = std::min(base, hi);
        // "equal jitter": half fixed, half random, so that terminals do not reconnect in lockstep
        std::uniform_int_distribution<long long> jitter(0, base / 2);
        return static_cast<int>(base - base / 2 + jitter(rng_));
    }

    void run() {
        int attempt = 0;
        for (;;) {
            SessionParams params;
            Options opts;
            {
                std::lock_guard<std::mutex> lock(mu_);
                if (stop_) break;
                state_ = WS_STATE_CONNECTING;
                opts = options_;
                params.endpoint = endpoint_;
                params.token = token_;
            }
            params.subprotocol = kSubprotocol;
            params.verify_tls = opts.verify_tls;
            params.ca_file = opts.ca_file;
            params.connect_timeout_ms = opts.connect_timeout_ms;
            params.keepalive_ms = opts.keepalive_ms;
            params.max_message_bytes = opts.max_message_bytes;
            SessionResult result;
            try {
                result = transport_->run_session(params, *this);
            } catch (const std::exception& exc) {
                result.error = kInternal;
                result.message = std::string("transport failure: ") + exc.what();
            } catch (...) {
                result.error = kInternal;
                result.message = "transport failure";
            }
            std::unique_lock<std::mutex> lock(mu_);
            outbox_.clear();  // frames for a session that has ended are not replayed on the next one
            if (result.close_code != 0) close_code_ = result.close_code;
            if (stop_) break;
            if (result.error != kNone) {
                set_error_locked(result.error, result.message);
            } else {
                set_error_locked(kConnectionLost, "the connection ended");
            }
            state_ = WS_STATE_BACKOFF;
            if (result.opened) attempt = 0;
            const int delay = backoff_ms(attempt, opts);
            if (attempt < 30) ++attempt;
            cv_.wait_for(lock, std::chrono::milliseconds(delay), [this] { return stop_; });
        }
    }

    std::mutex api_mu_;  // serialises connect and disconnect
    std::mutex mu_;      // everything below
    std::condition_variable cv_;
    std::unique_ptr<Transport> transport_;
    std::thread thread_;
    std::mt19937_64 rng_;
    bool pinned_ = false;
    bool stop_ = true;
    int state_ = WS_STATE_IDLE;
    Endpoint endpoint_;
    std::string token_;
    Options options_;
    std::deque<std::string> inbox_;
    std::deque<std::string> outbox_;
    int error_ = kNone;
    std::string error_message_;
    int close_code_ = 0;
};

// Never destroyed: a static destructor would run at unload/exit, possibly under the loader lock, while the
// background thread may still exist. DisconnectWebSocket is the orderly way to stop.
Connection& connection() {
    static Connection* instance = new Connection();
    return *instance;
}

const char16_t* as_u16(const WCHAR16* text) { return reinterpret_cast<const char16_t*>(text); }

std::u16string to_u16(const std::string& s) { return utf8_to_utf16(s); }
std::string same(const std::string& s) { return s; }

template <typename F>
auto guarded(F&& f, decltype(f()) on_failure) -> decltype(f()) {
    try {
        return f();
    } catch (const std::exception& exc) {
        connection().fail(kInternal, std::string("internal error: ") + exc.what());
    } catch (...) {
        connection().fail(kInternal, "internal error");
    }
    return on_failure;
}

}  // namespace
}  // namespace hbws

using hbws::connection;
using hbws::guarded;

static_assert(sizeof(WCHAR16) == 2, "WCHAR16 must be a UTF-16 code unit");

extern "C" {

HBWS_API int HBWS_CALL ConnectWebSocket(const char* url, const char* token) {
    return guarded(
        [&] {
            if (url == nullptr || token == nullptr) return connection().fail(hbws::kInvalidArgument, "url or token is NULL");
            return connection().connect(url, token);
        },
        0);
}

HBWS_API int HBWS_CALL ConnectWebSocketW(const WCHAR16* url, const WCHAR16* token) {
    return guarded(
        [&] {
            if (url == nullptr || token == nullptr) return connection().fail(hbws::kInvalidArgument, "url or token is NULL");
            return connection().connect(hbws::utf16z_to_utf8(hbws::as_u16(url)),
                                        hbws::utf16z_to_utf8(hbws::as_u16(token)));
        },
        0);
}

HBWS_API int HBWS_CALL WsSend(const char* utf8_message) {
    return guarded(
        [&] {
            if (utf8_message == nullptr) return connection().fail(hbws::kInvalidArgument, "the message is NULL");
            return connection().send(std::string(utf8_message));
        },
        0);
}

HBWS_API int HBWS_CALL WsSendW(const WCHAR16* message) {
    return guarded(
        [&] {
            if (message == nullptr) return connection().fail(hbws::kInvalidArgument, "the message is NULL");
            return connection().send(hbws::utf16z_to_utf8(hbws::as_u16(message)));
        },
        0);
}

HBWS_API int HBWS_CALL ReceiveMessage(char* buffer, int bufferSize) {
    return guarded([&] { return connection().receive(buffer, bufferSize, hbws::same); }, 0);
}

HBWS_API int HBWS_CALL ReceiveMessageW(WCHAR16* buffer, int bufferSize) {
    return guarded(
        [&] {
            return connection().receive(reinterpret_cast<char16_t*>(buffer), bufferSize, hbws::to_u16);
        },
        0);
}

HBWS_API int HBWS_CALL IsConnected(void) {
    return guarded([] { return connection().is_connected(); }, 0);
}

HBWS_API void HBWS_CALL DisconnectWebSocket(void) {
    guarded(
        [] {
            connection().disconnect();
            return 0;
        },
        0);
}

HBWS_API int HBWS_CALL WsGetLastError(void) {
    return guarded([] { return connection().last_error(); }, hbws::kInternal);
}

HBWS_API int HBWS_CALL WsGetLastErrorMessage(char* buffer, int bufferSize) {
    return guarded([&] { return connection().error_message(buffer, bufferSize, hbws::same); }, 0);
}

HBWS_API int HBWS_CALL WsGetLastErrorMessageW(WCHAR16* buffer, int bufferSize) {
    return guarded(
        [&] {
            return connection().error_message(reinterpret_cast<char16_t*>(buffer), bufferSize, hbws::to_u16);
        },
        0);
}

HBWS_API int HBWS_CALL WsGetCloseCode(void) {
    return guarded([] { return connection().close_code(); }, 0);
}

HBWS_API int HBWS_CALL WsSetOption(const char* name, const char* value) {
    return guarded(
        [&] {
            if (name == nullptr) return connection().fail(hbws::kInvalidArgument, "the option name is NULL");
            return connection().set_option(name, value);
        },
        0);
}

HBWS_API int HBWS_CALL WsSetOptionW(const WCHAR16* name, const WCHAR16* value) {
    return guarded(
        [&] {
            if (name == nullptr) return connection().fail(hbws::kInvalidArgument, "the option name is NULL");
            if (value == nullptr) return connection().set_option(hbws::utf16z_to_utf8(hbws::as_u16(name)), nullptr);
            const std::string narrow_value = hbws::utf16z_to_utf8(hbws::as_u16(value));
            return connection().set_option(hbws::utf16z_to_utf8(hbws::as_u16(name)), narrow_value.c_str());
        },
        0);
}

HBWS_API int HBWS_CALL WsGetState(void) {
    return guarded([] { return connection().state(); }, 0);
}

}  // extern "C"
