// A console program that loads hedgebridge_ws.dll the way MetaTrader does (LoadLibrary + GetProcAddress,
// wide-character functions), connects, waits for WELCOME, sends a HEARTBEAT and waits for its reply, then
// disconnects and at once connects again (the first connection's thread still closing) for a second WELCOME.
//
//   wintest.exe <path to hedgebridge_ws.dll> <ws://host:port/ea> <token> [<ca_file.pem> | --no-verify]
//   wintest.exe <path to hedgebridge_ws.dll> --close-check <ws://host:port/ea>
//   wintest.exe <path to hedgebridge_ws.dll> --refusal-check <ws://host:port/ea>
//
// --close-check: connect (to a server that need not speak the protocol), DisconnectWebSocket with
// close_timeout_ms=60000, print "RETURNED" as soon as it has returned, then wait for a line on stdin before
// FreeLibrary: the test checks that the call returned while the server had not answered the close.
//
// --refusal-check: connect to a server that refuses the first upgrade (503 with a Retry-After) and accepts
// the next; print "REFUSED status=<HTTP status> retry_after=<ms> delay=<ms>" for the first reconnect (from
// WsGetHttpStatus, WsGetRetryAfterMs, WsGetReconnectDelayMs), then "OK" once the next attempt is open.
//
// For wss, a fourth argument makes a PEM file the trusted roots (WsSetOptionW ca_file) or turns
// verification off.
// Exit code 0 when every step succeeded; the steps are printed on stdout. A refused token or certificate
// ends the wait for WELCOME at once ("FAIL no WELCOME: error 3 ..." or "error 4 ...").
#include <windows.h>

#include <cstdio>
#include <cwchar>
#include <string>
#include <vector>

#include "hedgebridge_ws.h"

namespace {

using ConnectW = int(HBWS_CALL*)(const wchar_t*, const wchar_t*);
using SendW = int(HBWS_CALL*)(const wchar_t*);
using ReceiveW = int(HBWS_CALL*)(wchar_t*, int);
using IntFn = int(HBWS_CALL*)();
using VoidFn = void(HBWS_CALL*)();
using OptionW = int(HBWS_CALL*)(const wchar_t*, const wchar_t*);

struct Api {
    ConnectW connect;
    SendW send;
    ReceiveW receive;
    IntFn is_connected;
    VoidFn disconnect;
    IntFn last_error;
    ReceiveW last_error_message;
    IntFn close_code;
    OptionW set_option;
    IntFn pending;
    IntFn reconnect_count;
    IntFn reconnect_delay;
    IntFn http_status;
    IntFn retry_after;
};

template <typename T>
bool resolve(HMODULE dll, const char* name, T& out) {
    out = reinterpret_cast<T>(reinterpret_cast<void*>(GetProcAddress(dll, name)));
    if (out == nullptr) std::printf("FAIL missing export %s\n", name);
    return out != nullptr;
}

std::string utf8(const std::wstring& text) {
    const int n = WideCharToMultiByte(CP_UTF8, 0, text.c_str(), static_cast<int>(text.size()), nullptr, 0, nullptr,
                                      nullptr);
    std::string out(static_cast<std::size_t>(n), '\0');
    WideCharToMultiByte(CP_UTF8, 0, text.c_str(), static_cast<int>(text.size()), &out[0], n, nullptr, nullptr);
    return out;
}

std::string last_error(const Api& api) {
    wchar_t buffer[512];
    const int n = api.last_error_message(buffer, 512);
    return "error " + std::to_string(api.last_error()) + " close " + std::to_string(api.close_code()) + ": " +
           (n >= 0 ? utf8(std::wstring(buffer, static_cast<std::size_t>(n))) : std::string("?"));
}

// Polls for a frame containing every needle, for up to timeout_ms.
bool wait_frame(const Api& api, const std::vector<std::wstring>& needles, int timeout_ms, std::wstring& out) {
    const ULONGLONG deadline = GetTickCount64() + static_cast<ULONGLONG>(timeout_ms);
    std::vector<wchar_t> buffer(4096);
    while (GetTickCount64() < deadline) {
        int n = api.receive(buffer.data(), static_cast<int>(buffer.size()));
        if (n < 0) {  // too small: grow to the size asked for, the frame is still there
            buffer.resize(static_cast<std::size_t>(-n));
            n = api.receive(buffer.data(), static_cast<int>(buffer.size()));
        }
        if (n == 0 && (api.last_error() == WS_ERR_UNAUTHORIZED || api.last_error() == WS_ERR_TLS)) {
            return false;  // refused: retrying will not change that
        }
        if (n > 0) {
            std::wstring frame(buffer.data(), static_cast<std::size_t>(n));
            bool all = true;
            for (const auto& needle : needles) all = all && frame.find(needle) != std::wstring::npos;
            if (all) {
                out = frame;
                return true;
            }
            continue;
        }
        Sleep(10);
    }
    return false;
}

// Waits up to timeout_ms for the connection to open; says why not when it does not.
bool wait_open(const Api& api, ULONGLONG timeout_ms) {
    const ULONGLONG deadline = GetTickCount64() + timeout_ms;
    while (api.is_connected() != 1 && GetTickCount64() < deadline) Sleep(10);
    if (api.is_connected() == 1) return true;
    std::printf("FAIL not connected: %s\n", last_error(api).c_str());
    return false;
}

int close_check(const Api& api, HMODULE dll, const wchar_t* url) {
    if (api.set_option(L"close_timeout_ms", L"60000") != 1 || api.connect(url, L"t0ken") != 1) {
        std::printf("FAIL %s\n", last_error(api).c_str());
        return 1;
    }
    if (!wait_open(api, 15000)) return 1;
    api.disconnect();
    std::printf("RETURNED\n");
    std::fflush(stdout);
    char line[16];
    if (std::fgets(line, sizeof(line), stdin) == nullptr) return 1;
    FreeLibrary(dll);  // the retired thread keeps the DLL loaded until it has ended
    std::printf("OK\n");
    return 0;
}

int refusal_check(const Api& api, const wchar_t* url) {
    if (api.set_option(L"reconnect_min_ms", L"20") != 1 || api.set_option(L"reconnect_max_ms", L"100") != 1 ||
        api.connect(url, L"t0ken") != 1) {
        std::printf("FAIL %s\n", last_error(api).c_str());
        return 1;
    }
    int count = 0, delay = 0, status = 0, retry_after = 0;
    const ULONGLONG deadline = GetTickCount64() + 15000;
    while (GetTickCount64() < deadline) {
        count = api.reconnect_count();
        delay = api.reconnect_delay();
        status = api.http_status();
        retry_after = api.retry_after();
        if (count > 0 && api.reconnect_count() == count) break;  // the values belong to that reconnect
        Sleep(1);
    }
    if (count != 1) {
        std::printf("FAIL reconnect %d seen first: %s\n", count, last_error(api).c_str());
        return 1;
    }
    std::printf("REFUSED status=%d retry_after=%d delay=%d\n", status, retry_after, delay);
    std::fflush(stdout);
    if (!wait_open(api, 15000 + static_cast<ULONGLONG>(delay))) return 1;  // the next attempt is accepted
    api.disconnect();
    std::printf("OK\n");
    return 0;
}

}  // namespace

int wmain(int argc, wchar_t** argv) {
    const bool check = argc == 4 && std::wcscmp(argv[2], L"--close-check") == 0;
    const bool refusal = argc == 4 && std::wcscmp(argv[2], L"--refusal-check") == 0;
    if (argc != 4 && argc != 5) {
        std::printf("usage: wintest.exe <hedgebridge_ws.dll> <url> <token> [<ca_file.pem> | --no-verify]\n");
        return 2;
    }
    HMODULE dll = LoadLibraryW(argv[1]);
    if (dll == nullptr) {
        std::printf("FAIL LoadLibrary: %lu\n", GetLastError());
        return 1;
    }
    Api api{};
    if (!resolve(dll, "ConnectWebSocketW", api.connect) || !resolve(dll, "WsSendW", api.send) ||
        !resolve(dll, "ReceiveMessageW", api.receive) || !resolve(dll, "IsConnected", api.is_connected) ||
        !resolve(dll, "DisconnectWebSocket", api.disconnect) || !resolve(dll, "WsGetLastError", api.last_error) ||
        !resolve(dll, "WsGetLastErrorMessageW", api.last_error_message) ||
        !resolve(dll, "WsGetCloseCode", api.close_code) || !resolve(dll, "WsSetOptionW", api.set_option) ||
        !resolve(dll, "WsPendingMessages", api.pending) ||
        !resolve(dll, "WsGetReconnectCount", api.reconnect_count) ||
        !resolve(dll, "WsGetReconnectDelayMs", api.reconnect_delay) ||
        !resolve(dll, "WsGetHttpStatus", api.http_status) || !resolve(dll, "WsGetRetryAfterMs", api.retry_after)) {
        return 1;
    }
    if (check) return close_check(api, dll, argv[3]);
    if (refusal) return refusal_check(api, argv[3]);
    if (argc == 5) {
        const bool insecure = std::wcscmp(argv[4], L"--no-verify") == 0;
        const int ok = insecure ? api.set_option(L"verify_tls", L"0") : api.set_option(L"ca_file", argv[4]);
        if (ok != 1) {
            std::printf("FAIL WsSetOptionW: %s\n", last_error(api).c_str());
            return 1;
        }
    }
    if (api.connect(argv[2], argv[3]) != 1) {
        std::printf("FAIL ConnectWebSocketW: %s\n", last_error(api).c_str());
        return 1;
    }
    std::wstring frame;
    if (!wait_frame(api, {L"\"type\":\"WELCOME\""}, 15000, frame)) {
        std::printf("FAIL no WELCOME: %s\n", last_error(api).c_str());
        return 1;
    }
    std::printf("WELCOME %s\n", utf8(frame).c_str());
    if (api.is_connected() != 1) {
        std::printf("FAIL IsConnected is not 1 after WELCOME\n");
        return 1;
    }
    wchar_t tiny[4];
    const int small = api.receive(tiny, 4);
    if (small != 0) std::printf("note: a frame is waiting (%d)\n", small);
    if (small < 0 && api.pending() < 1) {  // too small: the frame was not consumed
        std::printf("FAIL ReceiveMessageW said %d but WsPendingMessages says none is waiting\n", small);
        return 1;
    }
    if (api.send(L"{\"type\":\"HEARTBEAT\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"seq\":41}") != 1) {
        std::printf("FAIL WsSendW: %s\n", last_error(api).c_str());
        return 1;
    }
    if (!wait_frame(api, {L"\"type\":\"HEARTBEAT\"", L"\"seq\":41", L"\"reply\":true"}, 10000, frame)) {
        std::printf("FAIL no HEARTBEAT reply: %s\n", last_error(api).c_str());
        return 1;
    }
    std::printf("HEARTBEAT %s\n", utf8(frame).c_str());
    api.disconnect();
    if (api.is_connected() != 0) {
        std::printf("FAIL IsConnected is not 0 after DisconnectWebSocket\n");
        return 1;
    }
    // DisconnectWebSocket returned without waiting for the closing handshake: connect again at once
    if (api.connect(argv[2], argv[3]) != 1) {
        std::printf("FAIL ConnectWebSocketW again: %s\n", last_error(api).c_str());
        return 1;
    }
    if (!wait_frame(api, {L"\"type\":\"WELCOME\""}, 15000, frame)) {
        std::printf("FAIL no second WELCOME: %s\n", last_error(api).c_str());
        return 1;
    }
    std::printf("WELCOME again\n");
    api.disconnect();
    api.disconnect();  // idempotent
    FreeLibrary(dll);
    std::printf("OK\n");
    return 0;
}
