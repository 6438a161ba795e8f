// Linux transport: Boost.Beast WebSocket over Boost.Asio, TLS with OpenSSL. One io_context per session,
// run on the core's background thread; wake(), request_close() and abort() post into it from other threads.

// Masking keys (RFC 6455 §5.3) and the Sec-WebSocket-Key come from the kernel's generator (getrandom), one
// call per key. Beast draws both from detail::make_prng(); its own (boost/beast/websocket/detail/prng.ipp,
// Boost 1.74 as Debian 12 ships it) is a ChaCha20 generator in user space, seeded once per process from
// std::random_device, and it repeats: beast::detail::chacha puts ctr_ / 16 in the block counter but adds 1
// to ctr_ per block, so each block of 16 keys comes out 16 times (64 frames carried 16 distinct keys).
// Defining that file's include guard keeps it out, and make_prng is defined below instead. Should a later
// Beast rename the guard, its definition and ours collide and the build fails; should it stop calling
// make_prng, tests/dll/test_linux_session.py (test_masking_keys_come_from_getrandom) fails.
#define BOOST_BEAST_WEBSOCKET_DETAIL_PRNG_IPP

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <type_traits>

#include "platform.hpp"
#include "transport.hpp"

namespace boost {
namespace beast {
namespace websocket {
namespace detail {

inline std::uint32_t os_random_key() {
    std::uint32_t key = 0;
    hbws::os_random(&key, sizeof(key));
    return key;
}

// Only seed_prng() calls it, to seed Beast's own generator, which this build does not use.
inline std::uint32_t const* prng_seed(std::seed_seq*) {
    static std::uint32_t seed[8];
    static std::once_flag once;
    std::call_once(once, [] { hbws::os_random(seed, sizeof(seed)); });
    return seed;
}

inline generator make_prng(bool) { return &os_random_key; }

}  // namespace detail
}  // namespace websocket
}  // namespace beast
}  // namespace boost

namespace hbws {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = beast::error_code;

bool is_ip_literal(const std::string& host) {
    error_code ec;
    net::ip::make_address(host, ec);
    return !ec;
}

template <bool Tls>
class Session {
public:
    using Next = std::conditional_t<Tls, beast::ssl_stream<beast::tcp_stream>, beast::tcp_stream>;

    template <typename... StreamArgs>
    Session(net::io_context& ioc, const SessionParams& params, SessionHooks& hooks, StreamArgs&&... args)
        : ioc_(ioc), params_(params), hooks_(hooks), ws_(std::forward<StreamArgs>(args)...), resolver_(ioc),
          deadline_(ioc) {}

    void start() {
        deadline_.expires_after(std::chrono::milliseconds(params_.connect_timeout_ms));
        deadline_.async_wait([this](error_code ec) {
            if (ec || done_ || open_) return;
            fail(kConnectFailed, "timed out after " + std::to_string(params_.connect_timeout_ms) +
                                     " ms connecting to " + where());
        });
        resolver_.async_resolve(params_.endpoint.host, std::to_string(params_.endpoint.port),
                                [this](error_code ec, tcp::resolver::results_type results) {
                                    on_resolve(ec, std::move(results));
                                });
    }

    // --- requests from other threads, run on the io_context ---
    void wake() {
        if (done_) return;
        if (paused_ && hooks_.has_room()) {
            paused_ = false;
            do_read();
        }
        do_write();
    }

    void request_close() {
        if (done_ || close_requested_) return;
        close_requested_ = true;
        if (!open_) {
            finish();
            return;
        }
        // Only our deadline bounds the closing handshake. Beast's own timer (handshake_timeout also covers the
        // close) would end the close with a timeout while a read waits behind it, which Beast 1.74 does not
        // expect (an assertion in read_some_op); cutting the socket ends both with operation_aborted.
        websocket::stream_base::timeout untimed{};
        untimed.handshake_timeout = websocket::stream_base::none();
        untimed.idle_timeout = websocket::stream_base::none();
        untimed.keep_alive_pings = false;
        ws_.set_option(untimed);
        deadline_.expires_after(std::chrono::milliseconds(params_.close_timeout_ms));
        deadline_.async_wait([this](error_code ec) {
            if (!ec && !done_) finish();
        });
        do_write();
    }

    void abort() {
        close_requested_ = true;
        finish();
    }

    SessionResult result() const { return result_; }

private:
    std::string where() const { return params_.endpoint.host + ":" + std::to_string(params_.endpoint.port); }

    void fail(Error code, const std::string& message) {
        if (done_) return;
        if (!close_requested_ && result_.error == kNone) {
            result_.error = code;
            result_.message = message;
        }
        finish();
    }

    // Ends the session: pending operations are cancelled and the io_context stops once the completions
    // queued so far have run (the WebSocket layer's own timers would otherwise keep it busy until they
    // expire). Handlers left in the queue are destroyed with the io_context, never invoked.
    void finish() {
        if (done_) return;
        done_ = true;
        deadline_.cancel();
        resolver_.cancel();
        error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
        net::post(ioc_, [this] { ioc_.stop(); });
    }

    void on_resolve(error_code ec, tcp::resolver::results_type results) {
        if (done_) return;
        if (ec) return fail(kConnectFailed, "cannot resolve " + params_.endpoint.host + ": " + ec.message());
        beast::get_lowest_layer(ws_).async_connect(results, [this](error_code ec2, const tcp::endpoint&) {
            on_connect(ec2);
        });
    }

    void on_connect(error_code ec) {
        if (done_) return;
        if (ec) return fail(kConnectFailed, "cannot connect to " + where() + ": " + ec.message());
        error_code ignored;
        beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true), ignored);
        if constexpr (Tls) {
            SSL* ssl = ws_.next_layer().native_handle();
            const std::string& host = params_.endpoint.host;
            if (!is_ip_literal(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
            if (params_.verify_tls) {
                if (is_ip_literal(host)) {
                    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
                } else {
                    SSL_set1_host(ssl, host.c_str());
                }
                ws_.next_layer().set_verify_mode(ssl::verify_peer);
            } else {
                ws_.next_layer().set_verify_mode(ssl::verify_none);
            }
            ws_.next_layer().async_handshake(ssl::stream_base::client, [this](error_code ec2) { on_tls(ec2); });
        } else {
            on_transport_ready();
        }
    }

    void on_tls(error_code ec) {
        if (done_) return;
        if (ec) {
            std::string detail = ec.message();
            if constexpr (Tls) {
                const long verify = SSL_get_verify_result(ws_.next_layer().native_handle());
                if (verify != X509_V_OK) detail += " (" + std::string(X509_verify_cert_error_string(verify)) + ")";
            }
            return fail(kTls, "TLS handshake with " + where() + " failed: " + detail);
        }
        on_transport_ready();
    }

    void on_transport_ready() {
        beast::get_lowest_layer(ws_).expires_never();  // the WebSocket layer keeps its own timeouts
        websocket::stream_base::timeout timeouts{};
        timeouts.handshake_timeout = std::chrono::milliseconds(params_.connect_timeout_ms);
        if (params_.keepalive_ms > 0) {
            // a ping after keepalive_ms of silence; the connection is dropped after twice that
            timeouts.idle_timeout = std::chrono::milliseconds(2LL * params_.keepalive_ms);
            timeouts.keep_alive_pings = true;
        } else {
            timeouts.idle_timeout = websocket::stream_base::none();
            timeouts.keep_alive_pings = false;
        }
        ws_.set_option(timeouts);
        const std::string authorization = "Bearer " + params_.token;
        const std::string subprotocol = params_.subprotocol;
        ws_.set_option(websocket::stream_base::decorator([authorization, subprotocol](websocket::request_type& req) {
            req.set(http::field::user_agent, "hedgebridge-ws/1");
            req.set(http::field::authorization, authorization);
            req.set(http::field::sec_websocket_protocol, subprotocol);
        }));
        ws_.read_message_max(params_.max_message_bytes);
        ws_.async_handshake(response_, params_.endpoint.host_header(), params_.endpoint.target,
                            [this](error_code ec) { on_handshake(ec); });
    }

    void on_handshake(error_code ec) {
        if (done_) return;
        if (ec == websocket::error::upgrade_declined) {
            const auto header = response_.find(http::field::retry_after);
            const bool has_retry_after = header != response_.end();
            const std::string value =
                has_retry_after ? std::string(header->value().data(), header->value().size()) : std::string();
            const int retry_ms = parse_retry_after_ms(has_retry_after, value);
            const SessionResult refusal = refused_upgrade(response_.result_int(), retry_ms, response_.body());
            if (!close_requested_ && result_.error == kNone) {
                result_.http_status = refusal.http_status;
                result_.retry_after_ms = refusal.retry_after_ms;
            }
            return fail(refusal.error, refusal.message);
        }
        if (ec == beast::error::timeout) return fail(kConnectFailed, "the WebSocket handshake timed out");
        if (ec) return fail(kProtocol, "WebSocket handshake with " + where() + " failed: " + ec.message());
        const auto selected = response_[http::field::sec_websocket_protocol];
        if (std::string(selected.data(), selected.size()) != params_.subprotocol) {
            return fail(kProtocol, "the server did not accept the subprotocol " + params_.subprotocol);
        }
        deadline_.cancel();
        open_ = true;
        result_.opened = true;
        hooks_.on_open();
        if (close_requested_) return;
        do_read();
        do_write();
    }

    void do_read() {
        if (done_ || reading_ || !open_) return;
        if (!hooks_.has_room()) {
            paused_ = true;  // resumed by wake() once the application has taken a frame
            return;
        }
        reading_ = true;
        ws_.async_read(buffer_, [this](error_code ec, std::size_t) { on_read(ec); });
    }

    void on_read(error_code ec) {
        reading_ = false;
        if (ec) return on_read_error(ec);
        hooks_.on_message(beast::buffers_to_string(buffer_.data()));
        buffer_.consume(buffer_.size());
        do_read();
    }

    void on_read_error(error_code ec) {
        if (done_) return;
        if (close_requested_) return finish();
        if (ec == websocket::error::closed) {
            const auto& reason = ws_.reason();
            result_.close_code = reason.code;
            std::string text = "closed by the server with " + std::to_string(reason.code);
            if (!reason.reason.empty()) text += " (" + std::string(reason.reason.c_str()) + ")";
            return fail(kClosedByServer, text);
        }
        if (ec == websocket::error::message_too_big) {
            return fail(kMessageTooLarge, "received a frame over max_message_bytes (" +
                                              std::to_string(params_.max_message_bytes) + ")");
        }
        if (ec == beast::error::timeout) {
            return fail(kConnectionLost, "no answer to the keep-alive ping: connection lost");
        }
        return fail(kConnectionLost, "connection lost: " + ec.message());
    }

    void do_write() {
        if (done_ || writing_ || !open_) return;
        if (close_requested_) {
            if (close_sent_) return;
            close_sent_ = true;
            writing_ = true;
            ws_.async_close(websocket::close_code::normal, [this](error_code) {
                writing_ = false;
                finish();
            });
            return;
        }
        if (!hooks_.next_outgoing(out_)) return;
        writing_ = true;
        ws_.text(true);
        ws_.async_write(net::buffer(out_), [this](error_code ec, std::size_t) {
            writing_ = false;
            if (ec) {
                if (!done_ && !close_requested_) fail(kConnectionLost, "connection lost while sending: " + ec.message());
                return;
            }
            do_write();
        });
    }

    net::io_context& ioc_;
    SessionParams params_;
    SessionHooks& hooks_;
    websocket::stream<Next> ws_;
    tcp::resolver resolver_;
    net::steady_timer deadline_;
    beast::flat_buffer buffer_;
    websocket::response_type response_;
    std::string out_;
    bool open_ = false;
    bool done_ = false;
    bool reading_ = false;
    bool writing_ = false;
    bool paused_ = false;
    bool close_requested_ = false;
    bool close_sent_ = false;
    SessionResult result_;
};

class BeastTransport final : public Transport {
public:
    SessionResult run_session(const SessionParams& params, SessionHooks& hooks) override {
        if (params.endpoint.secure) {
            ssl::context ctx(ssl::context::tls_client);
            SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
            error_code ec;
            if (params.ca_file.empty()) {
                ctx.set_default_verify_paths(ec);
            } else {
                ctx.load_verify_file(params.ca_file, ec);
            }
            if (ec && params.verify_tls) {
                SessionResult failed;
                failed.error = kTls;
                failed.message = params.ca_file.empty() ? "cannot load the system's CA certificates: " + ec.message()
                                                        : "cannot load ca_file " + params.ca_file + ": " + ec.message();
                return failed;
            }
            return run<true>(params, hooks, ctx);
        }
        return run<false>(params, hooks);
    }

    void wake() override {
        std::lock_guard<std::mutex> lock(mu_);
        if (post_wake_) post_wake_();
    }

    void request_close() override {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        if (post_close_) post_close_();
    }

    void abort() override {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        if (post_abort_) post_abort_();
    }

private:
    template <bool Tls, typename... StreamArgs>
    SessionResult run(const SessionParams& params, SessionHooks& hooks, StreamArgs&... extra) {
        net::io_context ioc(1);
        Session<Tls> session(ioc, params, hooks, ioc, extra...);
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (closing_) return SessionResult{};
            post_wake_ = [&ioc, &session] { net::post(ioc, [&session] { session.wake(); }); };
            post_close_ = [&ioc, &session] { net::post(ioc, [&session] { session.request_close(); }); };
            post_abort_ = [&ioc, &session] { net::post(ioc, [&session] { session.abort(); }); };
            session.start();
        }
        ioc.run();
        {
            std::lock_guard<std::mutex> lock(mu_);
            post_wake_ = nullptr;
            post_close_ = nullptr;
            post_abort_ = nullptr;
        }
        return session.result();
    }

    std::mutex mu_;
    bool closing_ = false;
    std::function<void()> post_wake_;
    std::function<void()> post_close_;
    std::function<void()> post_abort_;
};

}  // namespace

std::unique_ptr<Transport> make_transport() { return std::make_unique<BeastTransport>(); }

}  // namespace hbws
