// socket.hpp - MQL5's sockets for the test runtime: real TCP, and TLS over it with OpenSSL.
//
// TLS follows the MQL5 reference: SocketTlsHandshake(socket, host) secures a connected socket (SNI = host,
// the server's certificate verified against the system's CA store and --ca-file, and its name against host);
// SocketConnect to port 443 does that by itself. A secured connection is read and written only through the
// SocketTls* functions; SocketTlsCertificate describes the server's certificate.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <map>

#include "io.hpp"

#define ERR_NETSOCKET_INVALIDHANDLE 5270
#define ERR_NETSOCKET_TOO_MANY_OPENED 5271
#define ERR_NETSOCKET_CANNOT_CONNECT 5272
#define ERR_NETSOCKET_IO_ERROR 5273
#define ERR_NETSOCKET_HANDSHAKE_FAILED 5274
#define ERR_NETSOCKET_NO_CERTIFICATE 5275
#define SOCKET_DEFAULT 0

namespace mqlrt::io {
struct Socket {
    int fd = -1;
    bool connected = false;
    uint send_timeout = 0, recv_timeout = 0, connect_timeout = 0;
    SSL *ssl = nullptr;   // set once the connection is secured
    std::string rx;       // bytes decrypted and not yet read by the program
    bool closed = false;  // the server ended the TLS session (close_notify or end of stream)
};
inline std::map<int, Socket> &sockets() {
    static std::map<int, Socket> open;
    return open;
}
inline Socket *sock(int h) {
    auto it = sockets().find(h);
    if (it == sockets().end()) {
        set_last_error(ERR_NETSOCKET_INVALIDHANDLE);
        return nullptr;
    }
    return &it->second;
}
inline bool host_allowed(const std::string &host, uint port) {
    for (const std::string &a : options().allowed_hosts)
        if (a == host || a == host + ":" + std::to_string(port)) return true;
    return false;
}
// the connection ends: after an I/O error nothing more is said; SocketClose says goodbye (close_notify)
inline void drop(Socket &s, bool goodbye = false) {
    if (s.ssl != nullptr) {
        if (goodbye && !s.closed) SSL_shutdown(s.ssl);
        SSL_free(s.ssl);
        s.ssl = nullptr;
    }
    if (s.fd >= 0) ::close(s.fd);
    s.fd = -1;
    s.connected = false;
    s.rx.clear();
}
inline int io_error(Socket &s) {
    drop(s);
    set_last_error(ERR_NETSOCKET_IO_ERROR);
    return -1;
}
// bytes read into an MQL5 array: a dynamic one takes their size, a static one keeps its own
inline int deliver(MqlArray<uchar> &buffer, const char *bytes, size_t n) {
    if (buffer.is_fixed()) n = std::min(n, static_cast<size_t>(buffer.size()));
    else buffer.resize(static_cast<int>(n), 0);
    std::copy(bytes, bytes + n, buffer.data());
    return static_cast<int>(n);
}
inline long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace mqlrt::io

namespace mqlrt::tls {
// One client context: TLS 1.2 or later, the peer verified against the system's CA store (the terminal uses
// Windows' certificate store) and the harness's --ca-file. nullptr when --ca-file cannot be read.
inline SSL_CTX *context() {
    static SSL_CTX *ctx = [] {
        SSL_CTX *c = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_default_verify_paths(c);
        SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        const std::string &ca = io::options().ca_file;
        if (!ca.empty() && SSL_CTX_load_verify_locations(c, ca.c_str(), nullptr) != 1) {
            SSL_CTX_free(c);
            return static_cast<SSL_CTX *>(nullptr);
        }
        return c;
    }();
    ERR_clear_error();
    return ctx;
}
// wait until the socket can do what OpenSSL asked for (want: SSL_ERROR_WANT_READ / _WRITE), until deadline
inline bool wait(int fd, int want, long deadline) {
    long left = deadline - io::now_ms();
    if (left <= 0 || (want != SSL_ERROR_WANT_READ && want != SSL_ERROR_WANT_WRITE)) return false;
    pollfd p{fd, static_cast<short>(want == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    return ::poll(&p, 1, static_cast<int>(left)) == 1;
}
inline std::string openssl_reason(SSL *ssl) {
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "the connection closed";
    char text[256];
    ERR_error_string_n(e, text, sizeof text);
    return text;
}
// the TLS handshake on a connected socket: SNI and the name checked are host (an IP address is checked as one)
inline bool handshake(io::Socket &s, const std::string &host, uint timeout_ms) {
    auto fail = [&](const std::string &why) {
        journal() << "TLS handshake with '" << host << "' failed: " << why << std::endl;
        io::drop(s);
        set_last_error(ERR_NETSOCKET_HANDSHAKE_FAILED);
        return false;
    };
    SSL_CTX *ctx = context();
    if (ctx == nullptr) return fail("cannot read the CA file '" + io::options().ca_file + "'");
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, s.fd);
    in6_addr addr;
    bool ip = inet_pton(AF_INET, host.c_str(), &addr) == 1 || inet_pton(AF_INET6, host.c_str(), &addr) == 1;
    if (ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
        SSL_set_tlsext_host_name(ssl, host.c_str());
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(ssl, host.c_str());
    }
    long deadline = io::now_ms() + (timeout_ms ? timeout_ms : 10000);
    for (;;) {
        int rc = SSL_connect(ssl);
        if (rc == 1) break;
        int want = SSL_get_error(ssl, rc);
        if (wait(s.fd, want, deadline)) continue;
        std::string why = want == SSL_ERROR_WANT_READ || want == SSL_ERROR_WANT_WRITE ? "timed out" : openssl_reason(ssl);
        SSL_free(ssl);
        return fail(why);
    }
    s.ssl = ssl;
    s.rx.clear();
    s.closed = false;
    return true;
}
// decrypt what has arrived into s.rx without waiting; -1 when the connection failed (and is dropped)
inline int pump(io::Socket &s) {
    char buf[16384];
    while (!s.closed) {
        int n = SSL_read(s.ssl, buf, sizeof buf);
        if (n > 0) {
            s.rx.append(buf, static_cast<size_t>(n));
            continue;
        }
        int e = SSL_get_error(s.ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
        ERR_clear_error();
        s.closed = true;  // close_notify, or the stream ended (or broke) under the session
    }
    return 0;
}
// what the program reads: up to maxlen decrypted bytes; -1 when nothing is left of a connection that ended
inline int take(io::Socket &s, MqlArray<uchar> &buffer, uint maxlen) {
    if (s.rx.empty() && s.closed) return io::io_error(s);
    size_t n = std::min(s.rx.size(), static_cast<size_t>(maxlen));
    if (n == 0) return 0;  // nothing is written to buffer
    n = static_cast<size_t>(io::deliver(buffer, s.rx.data(), n));
    s.rx.erase(0, n);
    return static_cast<int>(n);
}
inline int write(io::Socket &s, const uchar *data, int len) {
    long deadline = io::now_ms() + (s.send_timeout ? s.send_timeout : 10000);
    int sent = 0;
    while (sent < len) {
        int n = SSL_write(s.ssl, data + sent, len - sent);
        if (n > 0) {
            sent += n;
            continue;
        }
        if (!wait(s.fd, SSL_get_error(s.ssl, n), deadline)) {  // an error, or a record half written at the deadline
            ERR_clear_error();
            return io::io_error(s);
        }
    }
    return sent;
}
inline std::string name_text(X509_NAME *name) {  // "CN=host, O=Org": the most specific part first
    BIO *bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, name, 0, (XN_FLAG_RFC2253 & ~XN_FLAG_SEP_MASK & ~ASN1_STRFLGS_ESC_MSB) | XN_FLAG_SEP_CPLUS_SPC);
    char *text = nullptr;
    long n = BIO_get_mem_data(bio, &text);
    std::string out(text, static_cast<size_t>(n));
    BIO_free(bio);
    return out;
}
inline std::string hex(const unsigned char *p, size_t n) {
    static const char digits[] = "0123456789ABCDEF";
    std::string out;
    for (size_t i = 0; i < n; i++) out += {digits[p[i] >> 4], digits[p[i] & 15]};
    return out;
}
// a refused plain call on a secured connection: the bytes would break the TLS stream, so it ends
inline int plain_on_tls(io::Socket &s, const char *call, const char *instead) {
    journal() << call << ": the connection is secured by TLS; use " << instead << std::endl;
    return io::io_error(s);
}
}  // namespace mqlrt::tls

MQL_BUILTIN int SocketCreate(uint flags = SOCKET_DEFAULT) {
    (void)flags;
    if (mqlrt::io::sockets().size() >= 128) {
        mqlrt::set_last_error(ERR_NETSOCKET_TOO_MANY_OPENED);
        return INVALID_HANDLE;
    }
    static int next = 1;
    int h = next++;
    mqlrt::io::sockets()[h] = mqlrt::io::Socket();
    return h;
}
MQL_BUILTIN bool SocketClose(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    mqlrt::io::drop(*s, true);
    mqlrt::io::sockets().erase(socket);
    return true;
}
MQL_BUILTIN bool SocketConnect(int socket, const string &server, uint port, uint timeout_receive_ms) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    std::string host = server.utf8();
    if (!mqlrt::io::host_allowed(host, port)) {
        mqlrt::journal() << "'" << host << ":" << port << "' is not in the list of allowed URLs" << std::endl;
        mqlrt::set_last_error(ERR_FUNCTION_NOT_ALLOWED);
        return false;
    }
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_CANNOT_CONNECT);
        return false;
    }
    int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        rc = ::poll(&p, 1, static_cast<int>(timeout_receive_ms)) == 1 ? 0 : -1;
        int err = 0;
        socklen_t len = sizeof err;
        if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) rc = -1;
    }
    if (rc != 0) {
        ::close(fd);
        mqlrt::set_last_error(ERR_NETSOCKET_CANNOT_CONNECT);
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->connected = true;
    s->connect_timeout = timeout_receive_ms;
    // "It is not necessary to call SocketTlsHandshake when connecting to port 443": the terminal secures it
    return port != 443 || mqlrt::tls::handshake(*s, host, timeout_receive_ms);
}
MQL_BUILTIN bool SocketTimeouts(int socket, uint timeout_send_ms, uint timeout_receive_ms) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    s->send_timeout = timeout_send_ms;
    s->recv_timeout = timeout_receive_ms;
    return true;
}
MQL_BUILTIN bool SocketIsConnected(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) return false;
    if (s->ssl != nullptr && s->closed) return !s->rx.empty();
    pollfd p{s->fd, POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
        char c;
        ssize_t n = ::recv(s->fd, &c, 1, MSG_PEEK);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) s->connected = false;
    }
    return s->connected;
}
// on a secured connection: the decrypted bytes SocketTlsRead can take without waiting
MQL_BUILTIN uint SocketIsReadable(const int socket) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || s->fd < 0) return 0;
    if (s->ssl != nullptr) {
        mqlrt::tls::pump(*s);
        return static_cast<uint>(s->rx.size());
    }
    int n = 0;
    if (ioctl(s->fd, FIONREAD, &n) != 0) return 0;
    return static_cast<uint>(n);
}
MQL_BUILTIN int SocketSend(int socket, const MqlArray<uchar> &buffer, uint buffer_len) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    if (s->ssl != nullptr) return mqlrt::tls::plain_on_tls(*s, "SocketSend", "SocketTlsSend");
    uint len = std::min(buffer_len, static_cast<uint>(buffer.size()));
    pollfd p{s->fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(s->send_timeout ? s->send_timeout : 1000)) != 1) return 0;
    ssize_t n = ::send(s->fd, buffer.data(), len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return mqlrt::io::io_error(*s);
    }
    return static_cast<int>(n);
}
MQL_BUILTIN int SocketRead(int socket, MqlArray<uchar> &buffer, uint buffer_maxlen, uint timeout) {
    auto *s = mqlrt::io::sock(socket);
    if (!s || !s->connected) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    if (s->ssl != nullptr) return mqlrt::tls::plain_on_tls(*s, "SocketRead", "SocketTlsRead or SocketTlsReadAvailable");
    pollfd p{s->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout)) != 1) {
        if (!buffer.is_fixed()) buffer.resize(0, 0);
        return 0;
    }
    std::vector<char> tmp(buffer_maxlen);
    ssize_t n = ::recv(s->fd, tmp.data(), buffer_maxlen, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return mqlrt::io::io_error(*s);
    }
    return mqlrt::io::deliver(buffer, tmp.data(), static_cast<size_t>(n));
}

// --- TLS ------------------------------------------------------------------------------------------------------
MQL_BUILTIN bool SocketTlsHandshake(int socket, const string &host) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    if (!s->connected) {
        mqlrt::set_last_error(ERR_NETSOCKET_HANDSHAKE_FAILED);
        return false;
    }
    return s->ssl != nullptr || mqlrt::tls::handshake(*s, host.utf8(), s->recv_timeout ? s->recv_timeout : s->connect_timeout);
}
// subject and issuer as "CN=…, O=…", serial and thumbprint (SHA-1 of the whole certificate) in hex, expiration UTC
MQL_BUILTIN bool SocketTlsCertificate(int socket, string &subject, string &issuer, string &serial, string &thumbprint, datetime &expiration) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return false;
    X509 *cert = s->ssl != nullptr ? SSL_get1_peer_certificate(s->ssl) : nullptr;
    if (cert == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_NO_CERTIFICATE);
        return false;
    }
    subject = string::from_utf8(mqlrt::tls::name_text(X509_get_subject_name(cert)));
    issuer = string::from_utf8(mqlrt::tls::name_text(X509_get_issuer_name(cert)));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr);
    char *digits = BN_bn2hex(bn);
    serial = string(digits);
    OPENSSL_free(digits);
    BN_free(bn);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(cert, EVP_sha1(), md, &n);
    thumbprint = string(mqlrt::tls::hex(md, n).c_str());
    std::tm tm{};
    ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
    expiration = static_cast<datetime>(timegm(&tm));
    X509_free(cert);
    return true;
}
MQL_BUILTIN int SocketTlsSend(int socket, const MqlArray<uchar> &buffer, uint buffer_len) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return -1;
    if (s->ssl == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);  // not a secured connection
        return -1;
    }
    return mqlrt::tls::write(*s, buffer.data(), static_cast<int>(std::min(buffer_len, static_cast<uint>(buffer.size()))));
}
// waits (up to the SocketTimeouts receive timeout, 120 s when none) for buffer_maxlen bytes; returns what came
MQL_BUILTIN int SocketTlsRead(int socket, MqlArray<uchar> &buffer, uint buffer_maxlen) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return -1;
    if (s->ssl == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    if (buffer.is_fixed()) buffer_maxlen = std::min(buffer_maxlen, static_cast<uint>(buffer.size()));
    long deadline = mqlrt::io::now_ms() + (s->recv_timeout ? s->recv_timeout : 120000);
    mqlrt::tls::pump(*s);
    while (s->rx.size() < buffer_maxlen && !s->closed && mqlrt::tls::wait(s->fd, SSL_ERROR_WANT_READ, deadline))
        mqlrt::tls::pump(*s);
    return mqlrt::tls::take(*s, buffer, buffer_maxlen);
}
MQL_BUILTIN int SocketTlsReadAvailable(int socket, MqlArray<uchar> &buffer, const uint buffer_maxlen) {
    auto *s = mqlrt::io::sock(socket);
    if (!s) return -1;
    if (s->ssl == nullptr) {
        mqlrt::set_last_error(ERR_NETSOCKET_IO_ERROR);
        return -1;
    }
    mqlrt::tls::pump(*s);
    return mqlrt::tls::take(*s, buffer, buffer_maxlen);
}
