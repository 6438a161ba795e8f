// harness.hpp - the terminal around one EA, for the test runtime: inputs, loading (#import binding), and
// the event loop on one thread as MT5 calls the handlers (OnInit, then OnTimer / OnTick / OnTradeTransaction,
// OnDeinit), with a control channel of JSON lines on stdin (replies on stdout; the journal is stderr).
//
// Exit codes: 0 stopped (OnDeinit ran), 2 bad command line, 3 the EA did not load (a DLL refused),
// 4 OnInit failed, 5 a critical error stopped the EA.
#pragma once
#include <csignal>
#include <functional>
#include <iostream>

#include "io.hpp"
#include "socket.hpp"
#include "trade_api.hpp"
#include "trade_control.hpp"

enum ENUM_INIT_RETCODE { INIT_SUCCEEDED = 0, INIT_FAILED = 1, INIT_PARAMETERS_INCORRECT = 32767, INIT_AGENT_NOT_SUITABLE = 32766 };
#define REASON_PROGRAM 0
#define REASON_REMOVE 1
#define REASON_RECOMPILE 2
#define REASON_CHARTCHANGE 3
#define REASON_CHARTCLOSE 4
#define REASON_PARAMETERS 5
#define REASON_ACCOUNT 6
#define REASON_TEMPLATE 7
#define REASON_INITFAILED 8
#define REASON_CLOSE 9

namespace mqlrt {
inline string &chart_symbol() {
    static string s("EURUSD");
    return s;
}
}  // namespace mqlrt
#define _Symbol (mqlrt::chart_symbol())
MQL_BUILTIN string Symbol(void) { return mqlrt::chart_symbol(); }

namespace mqlrt {

struct Handlers {
    int (*OnInit)() = nullptr;
    void (*OnDeinit)(const int) = nullptr;
    void (*OnTimer)() = nullptr;
    void (*OnTick)() = nullptr;
    void (*OnTrade)() = nullptr;
    void (*OnChartEvent)(const int, const long &, const double &, const string &) = nullptr;
    void (*OnTradeTransaction)(const MqlTradeTransaction &, const MqlTradeRequest &, const MqlTradeResult &) = nullptr;
    void (*register_inputs)() = nullptr;
};

struct InputSlot {
    std::string type;
    std::function<bool(const std::string &)> set;
};
inline std::map<std::string, InputSlot> &inputs() {
    static std::map<std::string, InputSlot> table;
    return table;
}
inline bool parse_long(const std::string &v, long &out) {
    char *end = nullptr;
    out = std::strtol(v.c_str(), &end, 10);
    return !v.empty() && end && *end == '\0';
}
inline void register_input(const char *name, const char *type, string &var) {
    inputs()[name] = {type, [&var](const std::string &v) { var = string::from_utf8(v); return true; }};
}
inline void register_input(const char *name, const char *type, bool &var) {
    inputs()[name] = {type, [&var](const std::string &v) {
        if (v != "true" && v != "false") return false;
        var = v == "true";
        return true;
    }};
}
inline void register_input(const char *name, const char *type, double &var) {
    inputs()[name] = {type, [&var](const std::string &v) {
        char *end = nullptr;
        var = std::strtod(v.c_str(), &end);
        return !v.empty() && *end == '\0';
    }};
}
template <class T>
void register_input(const char *name, const char *type, T &var) {  // integers and enums
    inputs()[name] = {type, [&var](const std::string &v) {
        long n = 0;
        if (!parse_long(v, n)) return false;
        var = static_cast<T>(n);
        return true;
    }};
}

inline volatile std::sig_atomic_t &signalled() {
    static volatile std::sig_atomic_t flag = 0;
    return flag;
}

inline void reply(const nlohmann::json &r) { std::cout << r.dump() << std::endl; }

inline int run(int argc, char **argv, const Handlers &h) {
    std::vector<std::pair<std::string, std::string>> given;
    nlohmann::json trade_config;
    std::string trade_state;
    auto usage = [](const std::string &why) {
        journal() << "harness: " << why << std::endl;
        return 2;
    };
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--input") {
            std::string kv = value();
            size_t eq = kv.find('=');
            if (eq == std::string::npos) return usage("--input takes Name=Value, not '" + kv + "'");
            given.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
        } else if (a == "--files-dir") {
            io::options().files_dir = value();
        } else if (a == "--allow-dll") {
            io::options().allow_dll = true;
        } else if (a == "--dll-path") {
            io::options().dll_path = value();
        } else if (a == "--allowed-host") {
            io::options().allowed_hosts.push_back(value());
        } else if (a == "--ca-file") {
            io::options().ca_file = value();
            if (io::options().ca_file.empty() || tls::context() == nullptr)
                return usage("--ca-file takes a PEM file of certificates, not '" + io::options().ca_file + "'");
        } else if (a == "--server-offset-s") {
            long n = 0;
            if (!parse_long(value(), n)) return usage("--server-offset-s takes whole seconds");
            server_offset_s() = n;
        } else if (a == "--symbol") {
            chart_symbol() = string::from_utf8(value());
        } else if (a == "--trade-state") {
            trade_state = value();
            if (trade_state.empty()) return usage("--trade-state takes a file");
        } else if (a == "--trade-config") {
            try {
                trade_config = nlohmann::json::parse(value());
            } catch (const std::exception &e) {
                return usage(std::string("--trade-config is not JSON: ") + e.what());
            }
        } else {
            return usage("unknown argument '" + a + "'");
        }
    }
    trade::configure(trade_config);
    if (!trade_state.empty()) {
        try {
            trade::load_state(trade_state);
            trade::apply_while_away(trade_config);
        } catch (const std::exception &e) {
            return usage("--trade-state " + trade_state + ": " + e.what());
        }
    }
    if (h.register_inputs) h.register_inputs();
    for (const auto &kv : given) {
        auto it = inputs().find(kv.first);
        if (it == inputs().end()) return usage("the EA has no input named '" + kv.first + "'");
        if (!it->second.set(kv.second))
            return usage("input " + kv.first + " (" + it->second.type + ") cannot take '" + kv.second + "'");
    }
    std::signal(SIGTERM, [](int) { signalled() = 1; });
    std::signal(SIGINT, [](int) { signalled() = 1; });
    std::signal(SIGPIPE, SIG_IGN);
    if (!import_slots().empty()) {
        try {
            for (ImportSlot *s : import_slots()) bind_import(s->library, s->name, s->slot);
        } catch (const load_refused &e) {
            journal() << e.what() << std::endl;
            return 3;
        }
    }
    int stop_reason = -1;
    auto leaks = [] {
        if (!dynamic_objects().empty()) journal() << dynamic_objects().size() << " undeleted objects left" << std::endl;
    };
    try {
        int init = h.OnInit ? h.OnInit() : INIT_SUCCEEDED;
        if (init != INIT_SUCCEEDED) {
            journal() << "initialization failed (" << init << ")" << std::endl;
            if (h.OnDeinit) h.OnDeinit(REASON_INITFAILED);
            leaks();
            return 4;
        }
        journal() << "expert loaded successfully" << std::endl;
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        std::string pending;
        bool stdin_open = true;
        long next_timer = 0;
        while (stop_reason < 0) {
            if (signalled()) stop_reason = REASON_CLOSE;
            long now = utc_ms();
            trade::step(now);
            MqlTradeTransaction t;
            MqlTradeRequest rq;
            MqlTradeResult rs;
            while (trade::next_transaction(t, rq, rs))
                if (h.OnTradeTransaction) h.OnTradeTransaction(t, rq, rs);
            if (trade::take_tick(chart_symbol().utf8()) && h.OnTick) h.OnTick();
            if (timer_ms() > 0 && now >= next_timer) {
                next_timer = now + timer_ms();
                if (h.OnTimer) h.OnTimer();
            }
            long wait = timer_ms() > 0 ? std::max(0L, std::min(next_timer - utc_ms(), 5L)) : 5L;
            pollfd p{0, POLLIN, 0};
            if (stdin_open && ::poll(&p, 1, static_cast<int>(wait)) == 1) {
                char buf[65536];
                ssize_t n = ::read(0, buf, sizeof buf);
                if (n == 0) {
                    stdin_open = false;  // the driver went away: the terminal closes
                    stop_reason = REASON_CLOSE;
                } else if (n > 0) {
                    pending.append(buf, static_cast<size_t>(n));
                }
            } else if (!stdin_open) {
                std::this_thread::sleep_for(std::chrono::milliseconds(wait));
            }
            size_t nl;
            while ((nl = pending.find('\n')) != std::string::npos) {
                std::string line = pending.substr(0, nl);
                pending.erase(0, nl + 1);
                nlohmann::json cmd, out;
                try {
                    cmd = nlohmann::json::parse(line);
                } catch (const std::exception &e) {
                    reply({{"ok", false}, {"error", std::string("not JSON: ") + e.what()}});
                    continue;
                }
                std::string op = cmd.is_object() ? cmd.value("op", "") : "";
                if (op == "ping") {
                    out = {{"ok", true}};
                } else if (op == "status") {
                    out = {{"ok", true}, {"last_error", last_error()}, {"objects", dynamic_objects().size()}};
                } else if (op == "stop") {
                    stop_reason = cmd.value("reason", REASON_REMOVE);
                    out = {{"ok", true}};
                } else if (op.rfind("trade.", 0) == 0) {
                    try {
                        out = trade::control(cmd);
                    } catch (const std::exception &e) {
                        out = {{"ok", false}, {"error", e.what()}};
                    }
                } else {
                    out = {{"ok", false}, {"error", "unknown op '" + op + "'"}};
                }
                if (cmd.is_object() && cmd.contains("id")) out["id"] = cmd["id"];
                trade::save_state();  // before the reply: what a test sees answered is kept
                reply(out);
            }
            trade::save_state();
        }
        if (h.OnDeinit) h.OnDeinit(stop_reason);
    } catch (const critical_error &e) {
        journal() << "critical error: " << e.what() << std::endl;
        return 5;
    }
    journal() << "expert removed (reason " << stop_reason << ")" << std::endl;
    leaks();
    return 0;
}

}  // namespace mqlrt
