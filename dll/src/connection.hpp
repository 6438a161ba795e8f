// The connection manager behind the C API: its state, its background threads (one current, and retired ones
// finishing a close) and its options. Platform-independent: the socket lives in a Transport. Included by
// core.cpp only.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backoff.hpp"
#include "hedgebridge_ws.h"
#include "platform.hpp"
#include "transport.hpp"

namespace hbws {

inline constexpr const char* kSubprotocol = "hedgebridge.v1";  // libs/protocol: version.subprotocol()

struct Options {
    bool verify_tls = true;
    std::string ca_file;
    int reconnect_min_ms = 500;
    int reconnect_max_ms = 30000;
    std::size_t max_queue = 1024;
    std::size_t max_message_bytes = 1 << 20;
    int connect_timeout_ms = 10000;
    int keepalive_ms = 20000;
    int close_timeout_ms = 3000;
};

inline bool parse_int(const char* text, long long min, long long max, long long& out) {
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
inline int copy_out(const std::basic_string<Char>& text, Char* buffer, int size) {
    const std::size_t needed = text.size() + 1;
    if (needed > static_cast<std::size_t>(INT_MAX)) return INT_MIN;
    if (buffer == nullptr || size < 0 || static_cast<std::size_t>(size) < needed) return -static_cast<int>(needed);
    if (!text.empty()) std::memcpy(buffer, text.data(), text.size() * sizeof(Char));
    buffer[text.size()] = Char(0);
    return static_cast<int>(text.size());
}

class Connection final {
public:
    Connection() { on_process_exit(&Connection::at_exit); }

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
        retire_locked();
        auto worker = std::make_shared<Worker>(*this, make_transport());
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (exiting_) return fail_locked(kInternal, "the process is exiting");
            inbox_.clear();
            outbox_.clear();
            error_ = kNone;
            error_message_.clear();
            close_code_ = 0;
            reconnects_ = 0;
            last_delay_ms_ = 0;
            http_status_ = 0;
            retry_after_ms_ = -1;
            state_ = WS_STATE_CONNECTING;
            endpoint_ = ep;
            token_ = token;
            current_ = worker;
            live_.push_back(worker);
        }
        std::string why;
        const bool started = spawn_detached(
            [this, worker] {
                try {
                    run(*worker);
                } catch (...) {
                    std::lock_guard<std::mutex> lock(mu_);
                    if (!worker->retired) set_error_locked(kInternal, "the connection thread failed");
                }
                finished(*worker);
            },
            why);
        if (!started) {
            std::lock_guard<std::mutex> lock(mu_);
            worker->retired = true;
            current_.reset();
            forget_locked(*worker);
            state_ = WS_STATE_IDLE;
            return fail_locked(kInternal, "cannot start the connection thread: " + why);
        }
        return 1;
    }

    // Returns at once: the retired background thread sends the close frame, waits for the server's answer
    // (close_timeout_ms at most) and ends by itself.
    void disconnect() {
        std::lock_guard<std::mutex> api(api_mu_);
        retire_locked();
    }

    int send(std::string&& text) {
        std::shared_ptr<Worker> worker;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (state_ != WS_STATE_OPEN || !current_) return fail_locked(kNotConnected, "not connected");
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
            worker = current_;
        }
        worker->transport->wake();
        return 1;
    }

    // A buffer too small is said by the result alone: the last error stays the last real failure.
    template <typename Char, typename Convert>
    int receive(Char* buffer, int size, Convert convert) {
        std::shared_ptr<Worker> wake;
        int result = 0;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (inbox_.empty()) return 0;
            const std::basic_string<Char> text = convert(inbox_.front());
            result = copy_out(text, buffer, size);
            if (result < 0) return result;
            if (inbox_.size() >= options_.max_queue) wake = current_;
            inbox_.pop_front();
        }
        if (wake) wake->transport->wake();
        return result;
    }

    int pending() {
        std::lock_guard<std::mutex> lock(mu_);
        return static_cast<int>(std::min<std::size_t>(inbox_.size(), INT_MAX));
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

    int state() { return locked(state_); }
    int last_error() { return locked(error_); }
    int close_code() { return locked(close_code_); }
    int reconnects() { return locked(reconnects_); }
    int last_delay_ms() { return locked(last_delay_ms_); }
    int http_status() { return locked(http_status_); }
    int retry_after_ms() { return locked(retry_after_ms_); }

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
        } else if (name == "close_timeout_ms") {
            if (!parse_int(value, 0, 600000, n)) return bad("milliseconds between 0 and 600000");
            options_.close_timeout_ms = static_cast<int>(n);
        } else {
            return fail_locked(kInvalidArgument, "unknown option " + name);
        }
        return 1;
    }

    int fail(Error code, const std::string& message) {
        std::lock_guard<std::mutex> lock(mu_);
        return fail_locked(code, message);
    }

private:
    // One background thread and its transport. Current from ConnectWebSocket until DisconnectWebSocket or the
    // next ConnectWebSocket retires it; once retired it finishes its close on its own and never touches the
    // connection's state again (frames it still receives are dropped). Shared by the connection and the
    // thread, so whichever lets go last frees it.
    struct Worker final : SessionHooks {
        Worker(Connection& owner, std::unique_ptr<Transport> t) : owner(owner), transport(std::move(t)) {}

        void on_open() override {
            std::lock_guard<std::mutex> lock(owner.mu_);
            if (!retired) owner.state_ = WS_STATE_OPEN;
        }

        void on_message(std::string&& text) override {
            std::lock_guard<std::mutex> lock(owner.mu_);
            if (!retired) owner.inbox_.push_back(std::move(text));
        }

        bool has_room() override {
            std::lock_guard<std::mutex> lock(owner.mu_);
            return retired || owner.inbox_.size() < owner.options_.max_queue;
        }

        bool next_outgoing(std::string& out) override {
            std::lock_guard<std::mutex> lock(owner.mu_);
            if (retired || owner.outbox_.empty()) return false;
            out = std::move(owner.outbox_.front());
            owner.outbox_.pop_front();
            return true;
        }

        Connection& owner;
        const std::unique_ptr<Transport> transport;
        bool retired = false;  // guarded by owner.mu_
    };

    // One field of the state below, read under the lock.
    int locked(const int& field) {
        std::lock_guard<std::mutex> lock(mu_);
        return field;
    }

    int fail_locked(Error code, const std::string& message) {
        set_error_locked(code, message);
        return 0;
    }

    void set_error_locked(Error code, const std::string& message) {
        error_ = code;
        error_message_ = message;
    }

    // Retires the current background thread, if any, without waiting for it. Caller holds api_mu_.
    void retire_locked() {
        std::shared_ptr<Worker> worker;
        {
            std::lock_guard<std::mutex> lock(mu_);
            worker = std::move(current_);
            current_.reset();
            if (worker) worker->retired = true;
            state_ = WS_STATE_IDLE;
            outbox_.clear();
        }
        cv_.notify_all();
        if (worker) worker->transport->request_close();
    }

    void forget_locked(const Worker& worker) {
        live_.erase(std::remove_if(live_.begin(), live_.end(),
                                   [&](const std::shared_ptr<Worker>& w) { return w.get() == &worker; }),
                    live_.end());
        exit_cv_.notify_all();
    }

    void finished(const Worker& worker) {
        std::lock_guard<std::mutex> lock(mu_);
        forget_locked(worker);
    }

    // At exit, background threads still running (retired ones finishing a close, or a connection the host
    // never closed) are cut at once and given a moment to end before the TLS library is torn down.
    static void at_exit() { connection_at_exit(); }
    static void connection_at_exit();

    void abort_all(std::chrono::milliseconds wait) {
        std::vector<std::shared_ptr<Worker>> workers;
        {
            std::lock_guard<std::mutex> lock(mu_);
            exiting_ = true;
            for (const auto& w : live_) w->retired = true;
            workers = live_;
        }
        cv_.notify_all();
        for (const auto& w : workers) w->transport->abort();
        std::unique_lock<std::mutex> lock(mu_);
        exit_cv_.wait_for(lock, wait, [this] { return live_.empty(); });
    }

    void run(Worker& worker) {
        int previous_delay = 0;
        for (;;) {
            SessionParams params;
            Options opts;
            {
                std::lock_guard<std::mutex> lock(mu_);
                if (worker.retired) break;
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
            params.close_timeout_ms = opts.close_timeout_ms;
            params.max_message_bytes = opts.max_message_bytes;
            SessionResult result;
            try {
                result = worker.transport->run_session(params, worker);
            } catch (const std::exception& exc) {
                result.error = kInternal;
                result.message = std::string("transport failure: ") + exc.what();
            } catch (...) {
                result.error = kInternal;
                result.message = "transport failure";
            }
            std::unique_lock<std::mutex> lock(mu_);
            if (worker.retired) break;
            outbox_.clear();  // frames for a session that has ended are not replayed on the next one
            if (result.close_code != 0) close_code_ = result.close_code;
            if (result.error != kNone) {
                set_error_locked(result.error, result.message);
            } else {
                set_error_locked(kConnectionLost, "the connection ended");
            }
            state_ = WS_STATE_BACKOFF;
            if (result.opened) previous_delay = 0;
            const int delay = reconnect_delay_ms(
                decorrelated_jitter_ms(previous_delay, opts.reconnect_min_ms, opts.reconnect_max_ms),
                result.retry_after_ms);
            previous_delay = delay;
            if (reconnects_ < INT_MAX) ++reconnects_;
            last_delay_ms_ = delay;
            http_status_ = result.http_status;
            retry_after_ms_ = result.retry_after_ms;
            cv_.wait_for(lock, std::chrono::milliseconds(delay), [&worker] { return worker.retired; });
        }
    }

    std::mutex api_mu_;  // serialises connect and disconnect
    std::mutex mu_;      // everything below, and every worker's retired flag
    std::condition_variable cv_;       // a worker waiting to reconnect was retired
    std::condition_variable exit_cv_;  // a worker ended
    std::shared_ptr<Worker> current_;
    std::vector<std::shared_ptr<Worker>> live_;  // every worker whose thread has not ended yet
    bool exiting_ = false;
    int state_ = WS_STATE_IDLE;
    Endpoint endpoint_;
    std::string token_;
    Options options_;
    std::deque<std::string> inbox_;
    std::deque<std::string> outbox_;
    int error_ = kNone;
    std::string error_message_;
    int close_code_ = 0;
    int reconnects_ = 0;     // reconnects scheduled since ConnectWebSocket
    int last_delay_ms_ = 0;  // the delay chosen for the latest one
    int http_status_ = 0;      // the HTTP status that refused the attempt the latest reconnect follows (0: none)
    int retry_after_ms_ = -1;  // that refusal's Retry-After (-1: none)
};

// The one connection of this library (never destroyed).
Connection& connection();

}  // namespace hbws
