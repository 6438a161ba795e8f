// Windows transport: the WinHTTP WebSocket API (OS TLS and certificate store, system proxy settings).
// Synchronous WinHTTP: the session thread connects and receives; a writer thread per session sends, so that
// one send and one receive may be outstanding at a time, as WinHTTP allows.
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#include <wincrypt.h>
#include <winhttp.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "platform.hpp"
#include "transport.hpp"
#include "utf.hpp"

#ifndef WINHTTP_ACCESS_TYPE_AUTOMATIC_PROXY
#define WINHTTP_ACCESS_TYPE_AUTOMATIC_PROXY 4
#endif

namespace hbws {

namespace {

std::wstring widen(const std::string& utf8) {
    const std::u16string u16 = utf8_to_utf16(utf8);
    return std::wstring(u16.begin(), u16.end());
}

std::string narrow(const wchar_t* text, std::size_t length) {
    return utf16_to_utf8(reinterpret_cast<const char16_t*>(text), length);
}

std::string describe(DWORD code) {
    wchar_t* text = nullptr;
    DWORD flags = FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_IGNORE_INSERTS | FORMAT_MESSAGE_FROM_SYSTEM;
    HMODULE winhttp = GetModuleHandleW(L"winhttp.dll");
    if (code >= 12000 && code < 13000 && winhttp != nullptr) flags |= FORMAT_MESSAGE_FROM_HMODULE;
    const DWORD length = FormatMessageW(flags, winhttp, code, 0, reinterpret_cast<LPWSTR>(&text), 0, nullptr);
    std::string message;
    if (length > 0 && text != nullptr) {
        message = narrow(text, length);
        while (!message.empty() && (message.back() == '\n' || message.back() == '\r' || message.back() == ' ')) {
            message.pop_back();
        }
    }
    if (text != nullptr) LocalFree(text);
    return (message.empty() ? std::string("error") : message) + " (" + std::to_string(code) + ")";
}

}  // namespace


namespace {

Error classify(DWORD code) {
    switch (code) {
        case ERROR_WINHTTP_SECURE_FAILURE:
        case ERROR_WINHTTP_SECURE_CERT_DATE_INVALID:
        case ERROR_WINHTTP_SECURE_CERT_CN_INVALID:
        case ERROR_WINHTTP_SECURE_INVALID_CA:
        case ERROR_WINHTTP_SECURE_CERT_REV_FAILED:
        case ERROR_WINHTTP_SECURE_CHANNEL_ERROR:
        case ERROR_WINHTTP_SECURE_INVALID_CERT:
        case ERROR_WINHTTP_SECURE_CERT_REVOKED:
        case ERROR_WINHTTP_SECURE_CERT_WRONG_USAGE:
        case ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED:
            return kTls;
        default:
            return kConnectFailed;
    }
}

// Certificates from a PEM file, in a memory store.
HCERTSTORE load_pem_store(const std::string& path, std::string& why) {
    std::string pem;
    if (!read_file(path, pem)) {
        why = "cannot read ca_file " + path;
        return nullptr;
    }
    HCERTSTORE store = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, 0, nullptr);
    if (store == nullptr) {
        why = "cannot create a certificate store: " + describe(GetLastError());
        return nullptr;
    }
    const std::string begin = "-----BEGIN CERTIFICATE-----";
    const std::string end = "-----END CERTIFICATE-----";
    int count = 0;
    for (std::size_t at = pem.find(begin); at != std::string::npos; at = pem.find(begin, at + 1)) {
        const std::size_t stop = pem.find(end, at);
        if (stop == std::string::npos) break;
        const std::string block = pem.substr(at, stop + end.size() - at);
        DWORD size = 0;
        if (!CryptStringToBinaryA(block.c_str(), static_cast<DWORD>(block.size()), CRYPT_STRING_BASE64HEADER, nullptr,
                                  &size, nullptr, nullptr)) {
            continue;
        }
        std::vector<BYTE> der(size);
        if (CryptStringToBinaryA(block.c_str(), static_cast<DWORD>(block.size()), CRYPT_STRING_BASE64HEADER,
                                 der.data(), &size, nullptr, nullptr) &&
            CertAddEncodedCertificateToStore(store, X509_ASN_ENCODING, der.data(), size, CERT_STORE_ADD_ALWAYS,
                                             nullptr)) {
            ++count;
        }
    }
    if (count == 0) {
        CertCloseStore(store, 0);
        why = "no certificate in ca_file " + path;
        return nullptr;
    }
    return store;
}

std::string describe_trust(DWORD status) {
    std::string text;
    auto add = [&](DWORD flag, const char* what) {
        if ((status & flag) == 0) return;
        if (!text.empty()) text += ", ";
        text += what;
    };
    add(CERT_TRUST_IS_PARTIAL_CHAIN, "its issuer is not in ca_file");
    add(CERT_TRUST_IS_UNTRUSTED_ROOT, "untrusted root");
    add(CERT_TRUST_IS_NOT_TIME_VALID, "expired or not yet valid");
    add(CERT_TRUST_IS_NOT_SIGNATURE_VALID, "bad signature");
    add(CERT_TRUST_IS_NOT_VALID_FOR_USAGE, "not valid for server authentication");
    add(CERT_TRUST_IS_REVOKED, "revoked");
    add(CERT_TRUST_IS_CYCLIC, "cyclic chain");
    if (text.empty()) text = "chain error";
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%lx", static_cast<unsigned long>(status));
    return text + " (" + hex + ")";
}

// Verifies the server's chain against the roots of ca_file only, and the host name, with the SSL policy.
bool verify_with_roots(PCCERT_CONTEXT cert, HCERTSTORE roots, const std::wstring& host, std::string& why) {
    CERT_CHAIN_ENGINE_CONFIG config{};
    // the Windows 7 layout (up to hExclusiveTrustedPeople): accepted by every version that has exclusive roots
    config.cbSize = static_cast<DWORD>(offsetof(CERT_CHAIN_ENGINE_CONFIG, hExclusiveTrustedPeople) + sizeof(HCERTSTORE));
    config.hExclusiveRoot = roots;
    HCERTCHAINENGINE engine = nullptr;
    if (!CertCreateCertificateChainEngine(&config, &engine)) {
        why = "cannot create a certificate chain engine: " + describe(GetLastError());
        return false;
    }
    LPSTR usages[] = {const_cast<LPSTR>(szOID_PKIX_KP_SERVER_AUTH)};
    CERT_CHAIN_PARA para{};
    para.cbSize = sizeof(para);
    para.RequestedUsage.dwType = USAGE_MATCH_TYPE_AND;
    para.RequestedUsage.Usage.cUsageIdentifier = 1;
    para.RequestedUsage.Usage.rgpszUsageIdentifier = usages;
    PCCERT_CHAIN_CONTEXT chain = nullptr;
    bool ok = false;
    if (CertGetCertificateChain(engine, cert, nullptr, cert->hCertStore, &para, 0, nullptr, &chain)) {
        // the chain's own status first: some implementations' SSL policy lets a partial chain through
        const DWORD trust = chain->TrustStatus.dwErrorStatus;
        if (trust != CERT_TRUST_NO_ERROR) {
            why = "the server certificate does not verify against ca_file: " + describe_trust(trust);
            CertFreeCertificateChain(chain);
            CertFreeCertificateChainEngine(engine);
            return false;
        }
        SSL_EXTRA_CERT_CHAIN_POLICY_PARA ssl{};
        ssl.cbSize = sizeof(ssl);
        ssl.dwAuthType = AUTHTYPE_SERVER;
        ssl.pwszServerName = const_cast<wchar_t*>(host.c_str());
        CERT_CHAIN_POLICY_PARA policy{};
        policy.cbSize = sizeof(policy);
        policy.pvExtraPolicyPara = &ssl;
        CERT_CHAIN_POLICY_STATUS status{};
        status.cbSize = sizeof(status);
        if (CertVerifyCertificateChainPolicy(CERT_CHAIN_POLICY_SSL, chain, &policy, &status) && status.dwError == 0) {
            ok = true;
        } else {
            why = "the server certificate does not verify against ca_file: " + describe(status.dwError);
        }
        CertFreeCertificateChain(chain);
    } else {
        why = "cannot build the server's certificate chain: " + describe(GetLastError());
    }
    CertFreeCertificateChainEngine(engine);
    return ok;
}

// Checked in the WINHTTP_CALLBACK_STATUS_SENDING_REQUEST notification: after the TLS handshake, before the
// request (and its Authorization header) is written. A failure closes the request handle, which cancels it.
struct CertCheck {
    HCERTSTORE roots = nullptr;
    std::wstring host;
    bool ran = false;
    bool failed = false;
    std::string why;
};

void CALLBACK on_status(HINTERNET handle, DWORD_PTR context, DWORD status, LPVOID, DWORD) {
    if (status != WINHTTP_CALLBACK_STATUS_SENDING_REQUEST || context == 0) return;
    auto* check = reinterpret_cast<CertCheck*>(context);
    check->ran = true;
    PCCERT_CONTEXT cert = nullptr;
    DWORD size = sizeof(cert);
    if (!WinHttpQueryOption(handle, WINHTTP_OPTION_SERVER_CERT_CONTEXT, &cert, &size) || cert == nullptr) {
        check->failed = true;
        check->why = "cannot read the server certificate: " + describe(GetLastError());
    } else {
        check->failed = !verify_with_roots(cert, check->roots, check->host, check->why);
        CertFreeCertificateContext(cert);
    }
    if (check->failed) WinHttpCloseHandle(handle);
}

class WinHttpTransport final : public Transport {
public:
    SessionResult run_session(const SessionParams& params, SessionHooks& hooks) override {
        SessionResult result;
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (closing_) return result;
            session_done_ = false;
            wake_ = false;
        }
        run(params, hooks, result);
        close_handles();
        if (closing()) {
            result.error = kNone;
            result.message.clear();
        }
        return result;
    }

    void wake() override {
        std::lock_guard<std::mutex> lock(mu_);
        wake_ = true;
        cv_.notify_all();
    }

    void request_close() override {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        cv_.notify_all();
        if (ws_ == nullptr) {
            // still connecting: closing the handles cancels the blocking calls
            if (request_ != nullptr) WinHttpCloseHandle(request_);
            if (connect_ != nullptr) WinHttpCloseHandle(connect_);
            request_ = nullptr;
            connect_ = nullptr;
        }
        // when open, the writer thread sends the close frame
    }

    void abort() override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            aborting_ = true;  // the writer cuts the socket right after the close frame
        }
        request_close();
    }

private:
    bool closing() {
        std::lock_guard<std::mutex> lock(mu_);
        return closing_;
    }

    void close_handles() {
        std::lock_guard<std::mutex> lock(mu_);
        for (HINTERNET* h : {&ws_, &request_, &connect_, &session_}) {
            if (*h != nullptr) WinHttpCloseHandle(*h);
            *h = nullptr;
        }
    }

    static void fail(SessionResult& result, Error code, const std::string& message) {
        if (result.error != kNone) return;
        result.error = code;
        result.message = message;
    }

    void run(const SessionParams& params, SessionHooks& hooks, SessionResult& result) {
        const Endpoint& ep = params.endpoint;
        const std::string where = ep.host + ":" + std::to_string(ep.port);
        HINTERNET session = WinHttpOpen(L"hedgebridge-ws/1", WINHTTP_ACCESS_TYPE_AUTOMATIC_PROXY,
                                        WINHTTP_NO_PROXY_NAME, WINHTTP_NO_PROXY_BYPASS, 0);
        if (session == nullptr) {
            session = WinHttpOpen(L"hedgebridge-ws/1", WINHTTP_ACCESS_TYPE_DEFAULT_PROXY, WINHTTP_NO_PROXY_NAME,
                                  WINHTTP_NO_PROXY_BYPASS, 0);
        }
        if (session == nullptr) return fail(result, kInternal, "WinHttpOpen failed: " + describe(GetLastError()));
        {
            std::lock_guard<std::mutex> lock(mu_);
            session_ = session;
        }
        const int t = params.connect_timeout_ms;
        WinHttpSetTimeouts(session, t, t, t, t);
        if (params.keepalive_ms > 0) {
            DWORD interval = static_cast<DWORD>(params.keepalive_ms < 15000 ? 15000 : params.keepalive_ms);
            WinHttpSetOption(session, WINHTTP_OPTION_WEB_SOCKET_KEEPALIVE_INTERVAL, &interval, sizeof(interval));
        }
        HINTERNET connect = WinHttpConnect(session, widen(ep.host).c_str(), ep.port, 0);
        if (connect == nullptr) {
            return fail(result, kConnectFailed, "cannot connect to " + where + ": " + describe(GetLastError()));
        }
        HINTERNET request = WinHttpOpenRequest(connect, L"GET", widen(ep.target).c_str(), nullptr,
                                               WINHTTP_NO_REFERER, WINHTTP_DEFAULT_ACCEPT_TYPES,
                                               ep.secure ? WINHTTP_FLAG_SECURE : 0);
        {
            std::lock_guard<std::mutex> lock(mu_);
            connect_ = connect;
            request_ = request;
            if (closing_) return;
        }
        if (request == nullptr) {
            return fail(result, kConnectFailed, "cannot open a request to " + where + ": " + describe(GetLastError()));
        }
        if (!WinHttpSetOption(request, WINHTTP_OPTION_UPGRADE_TO_WEB_SOCKET, nullptr, 0)) {
            return fail(result, kInternal, "WebSocket upgrade unavailable: " + describe(GetLastError()));
        }
        CertCheck check;
        struct StoreCloser {
            HCERTSTORE& store;
            ~StoreCloser() {
                if (store != nullptr) CertCloseStore(store, 0);
            }
        } closer{check.roots};
        if (ep.secure) {
            DWORD flags = 0;
            if (!params.verify_tls) {
                flags = SECURITY_FLAG_IGNORE_UNKNOWN_CA | SECURITY_FLAG_IGNORE_CERT_DATE_INVALID |
                        SECURITY_FLAG_IGNORE_CERT_CN_INVALID | SECURITY_FLAG_IGNORE_CERT_WRONG_USAGE;
            } else if (!params.ca_file.empty()) {
                // the system store does not know the CA: WinHTTP accepts an unknown root, and the chain is
                // verified against ca_file before anything is sent (on_status)
                std::string why;
                check.roots = load_pem_store(params.ca_file, why);
                if (check.roots == nullptr) return fail(result, kTls, why);
                check.host = widen(ep.host);
                flags = SECURITY_FLAG_IGNORE_UNKNOWN_CA;
                WinHttpSetStatusCallback(request, on_status, WINHTTP_CALLBACK_FLAG_SEND_REQUEST, 0);
            }
            if (flags != 0) WinHttpSetOption(request, WINHTTP_OPTION_SECURITY_FLAGS, &flags, sizeof(flags));
        }
        const std::wstring headers = widen("Authorization: Bearer " + params.token +
                                           "\r\nSec-WebSocket-Protocol: " + params.subprotocol + "\r\n");
        WinHttpAddRequestHeaders(request, headers.c_str(), static_cast<DWORD>(-1),
                                 WINHTTP_ADDREQ_FLAG_ADD | WINHTTP_ADDREQ_FLAG_REPLACE);
        const DWORD_PTR context = check.roots != nullptr ? reinterpret_cast<DWORD_PTR>(&check) : 0;
        if (!WinHttpSendRequest(request, WINHTTP_NO_ADDITIONAL_HEADERS, 0, WINHTTP_NO_REQUEST_DATA, 0, 0, context)) {
            const DWORD code = GetLastError();
            if (check.failed) {
                std::lock_guard<std::mutex> lock(mu_);
                request_ = nullptr;  // closed by the certificate check
                return fail(result, kTls, "TLS with " + where + " refused: " + check.why);
            }
            return fail(result, classify(code), "cannot connect to " + where + ": " + describe(code));
        }
        if (check.roots != nullptr && !check.ran) {
            return fail(result, kTls, "TLS with " + where + " refused: the certificate check did not run");
        }
        if (check.failed || !WinHttpReceiveResponse(request, nullptr)) {
            const DWORD code = GetLastError();
            if (check.failed) {
                std::lock_guard<std::mutex> lock(mu_);
                request_ = nullptr;  // closed by the certificate check
                return fail(result, kTls, "TLS with " + where + " refused: " + check.why);
            }
            return fail(result, classify(code), "no handshake response from " + where + ": " + describe(code));
        }
        DWORD status = 0;
        DWORD size = sizeof(status);
        WinHttpQueryHeaders(request, WINHTTP_QUERY_STATUS_CODE | WINHTTP_QUERY_FLAG_NUMBER, WINHTTP_HEADER_NAME_BY_INDEX,
                            &status, &size, WINHTTP_NO_HEADER_INDEX);
        if (status != 101) {
            char body[300] = {};
            DWORD got = 0;
            WinHttpReadData(request, body, sizeof(body) - 1, &got);
            wchar_t retry_after[64] = {};
            DWORD retry_after_size = sizeof(retry_after);
            const bool has_retry_after = WinHttpQueryHeaders(request, WINHTTP_QUERY_CUSTOM, L"Retry-After", retry_after,
                                                             &retry_after_size, WINHTTP_NO_HEADER_INDEX);
            const int retry_ms = parse_retry_after_ms(
                has_retry_after, has_retry_after ? narrow(retry_after, retry_after_size / sizeof(wchar_t)) : "");
            const SessionResult refusal = refused_upgrade(static_cast<int>(status), retry_ms, std::string(body, got));
            if (result.error == kNone) {
                result.http_status = refusal.http_status;
                result.retry_after_ms = refusal.retry_after_ms;
            }
            return fail(result, refusal.error, refusal.message);
        }
        wchar_t selected[128] = {};
        DWORD selected_size = sizeof(selected);
        const bool has_protocol = WinHttpQueryHeaders(request, WINHTTP_QUERY_CUSTOM, L"Sec-WebSocket-Protocol",
                                                      selected, &selected_size, WINHTTP_NO_HEADER_INDEX);
        if (!has_protocol || narrow(selected, selected_size / sizeof(wchar_t)) != params.subprotocol) {
            return fail(result, kProtocol, "the server did not accept the subprotocol " + params.subprotocol);
        }
        HINTERNET ws = WinHttpWebSocketCompleteUpgrade(request, 0);
        if (ws == nullptr) {
            return fail(result, kProtocol, "WebSocket upgrade failed: " + describe(GetLastError()));
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (request_ != nullptr) WinHttpCloseHandle(request_);
            request_ = nullptr;
            ws_ = ws;
        }
        DWORD infinite = 0;  // silence is normal between frames; the keep-alive and the protocol heartbeat watch it
        WinHttpSetOption(ws, WINHTTP_OPTION_RECEIVE_TIMEOUT, &infinite, sizeof(infinite));
        result.opened = true;
        hooks.on_open();

        std::thread writer([&] { write_loop(ws, params, hooks, result); });
        read_loop(ws, params, hooks, result);
        {
            std::lock_guard<std::mutex> lock(mu_);
            session_done_ = true;
            cv_.notify_all();
        }
        writer.join();
    }

    void read_loop(HINTERNET ws, const SessionParams& params, SessionHooks& hooks, SessionResult& result) {
        std::vector<char> chunk(64 * 1024);
        std::string message;
        for (;;) {
            if (message.empty()) {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return closing_ || hooks.has_room(); });
            }
            DWORD got = 0;
            WINHTTP_WEB_SOCKET_BUFFER_TYPE type{};
            const DWORD code = WinHttpWebSocketReceive(ws, chunk.data(), static_cast<DWORD>(chunk.size()), &got, &type);
            if (code != NO_ERROR) {
                std::lock_guard<std::mutex> lock(result_mu_);
                fail(result, kConnectionLost, "connection lost: " + describe(code));
                return;
            }
            if (type == WINHTTP_WEB_SOCKET_CLOSE_BUFFER_TYPE) {
                USHORT close_code = 0;
                char reason[128] = {};
                DWORD reason_size = 0;
                WinHttpWebSocketQueryCloseStatus(ws, &close_code, reason, sizeof(reason), &reason_size);
                if (!closing()) {
                    std::lock_guard<std::mutex> lock(result_mu_);
                    result.close_code = close_code;
                    std::string text = "closed by the server with " + std::to_string(close_code);
                    if (reason_size > 0) text += " (" + std::string(reason, reason_size) + ")";
                    fail(result, kClosedByServer, text);
                    std::lock_guard<std::mutex> send(send_mu_);
                    WinHttpWebSocketShutdown(ws, close_code, nullptr, 0);  // answer the closing handshake
                }
                return;
            }
            message.append(chunk.data(), got);
            if (message.size() > params.max_message_bytes) {
                {
                    std::lock_guard<std::mutex> lock(result_mu_);
                    fail(result, kMessageTooLarge,
                         "received a frame over max_message_bytes (" + std::to_string(params.max_message_bytes) + ")");
                }
                std::lock_guard<std::mutex> send(send_mu_);
                WinHttpWebSocketShutdown(ws, 1009, nullptr, 0);
                return;
            }
            if (type == WINHTTP_WEB_SOCKET_UTF8_MESSAGE_BUFFER_TYPE ||
                type == WINHTTP_WEB_SOCKET_BINARY_MESSAGE_BUFFER_TYPE) {
                hooks.on_message(std::move(message));
                message.clear();
            }
        }
    }

    void write_loop(HINTERNET ws, const SessionParams& params, SessionHooks& hooks, SessionResult& result) {
        std::string frame;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, [&] { return wake_ || closing_ || session_done_; });
                wake_ = false;
                if (session_done_) return;
                if (closing_) break;
            }
            while (hooks.next_outgoing(frame)) {
                DWORD code;
                {
                    std::lock_guard<std::mutex> send(send_mu_);
                    code = WinHttpWebSocketSend(ws, WINHTTP_WEB_SOCKET_UTF8_MESSAGE_BUFFER_TYPE,
                                                frame.empty() ? nullptr : &frame[0], static_cast<DWORD>(frame.size()));
                }
                if (code != NO_ERROR) {
                    std::lock_guard<std::mutex> lock(result_mu_);
                    fail(result, kConnectionLost, "connection lost while sending: " + describe(code));
                    return;
                }
            }
        }
        // DisconnectWebSocket: send the close frame, give the server a moment to answer, then cut the socket
        {
            std::lock_guard<std::mutex> send(send_mu_);
            WinHttpWebSocketShutdown(ws, WINHTTP_WEB_SOCKET_SUCCESS_CLOSE_STATUS, nullptr, 0);
        }
        std::unique_lock<std::mutex> lock(mu_);
        const auto wait = std::chrono::milliseconds(aborting_ ? 0 : params.close_timeout_ms);
        if (!cv_.wait_for(lock, wait, [&] { return session_done_; })) {
            if (ws_ != nullptr) WinHttpCloseHandle(ws_);  // unblocks the receive
            ws_ = nullptr;
        }
    }

    std::mutex mu_;  // handles and flags
    std::condition_variable cv_;
    std::mutex send_mu_;    // one send (or close) at a time
    std::mutex result_mu_;  // the session result, written by the reader and the writer
    HINTERNET session_ = nullptr;
    HINTERNET connect_ = nullptr;
    HINTERNET request_ = nullptr;
    HINTERNET ws_ = nullptr;
    bool closing_ = false;
    bool aborting_ = false;
    bool wake_ = false;
    bool session_done_ = false;
};

}  // namespace

std::unique_ptr<Transport> make_transport() { return std::make_unique<WinHttpTransport>(); }

}  // namespace hbws
