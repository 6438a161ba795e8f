// trade_control.hpp - the simulated trade server's settings (--trade-config) and the control ops trade.*
// that tests send through the harness.
#pragma once
#include "trade.hpp"

namespace mqlrt::trade {

inline nlohmann::json position_json(const Position &p) {
    return {{"ticket", p.ticket}, {"identifier", p.identifier}, {"symbol", p.symbol}, {"type", p.type},
            {"volume", p.volume}, {"price_open", p.price_open}, {"sl", p.sl}, {"tp", p.tp},
            {"profit", profit_of(p)}, {"magic", p.magic}, {"comment", p.comment}};
}

inline void configure(const nlohmann::json &o) {
    Server &S = server();
    if (S.symbols.empty()) {
        add_symbol("EURUSD", 1.10000, 5);
        add_symbol("GBPUSD", 1.27000, 5);
        add_symbol("USDJPY", 150.000, 3);
        add_symbol("XAUUSD", 2000.00, 2);
        symbol("XAUUSD")->contract = 100;
    }
    if (o.is_null()) return;
    if (o.contains("login")) S.login = o["login"].get<long>();
    if (o.contains("netting")) S.margin_mode = o["netting"].get<bool>() ? ACCOUNT_MARGIN_MODE_RETAIL_NETTING : ACCOUNT_MARGIN_MODE_RETAIL_HEDGING;
    if (o.contains("balance")) S.balance = o["balance"].get<double>();
    if (o.contains("history_delay_ms")) S.history_delay_ms = o["history_delay_ms"].get<long>();
    if (o.contains("tick_interval_ms")) S.tick_interval_ms = o["tick_interval_ms"].get<long>();
    if (o.contains("commission_per_lot")) S.commission_per_lot = o["commission_per_lot"].get<double>();
    if (o.contains("commission_each_side")) S.commission_each_side = o["commission_each_side"].get<bool>();
    if (o.contains("connect_after_ms")) {  // the terminal connects to the trade server and logs in that late
        S.connected = S.logged_in = false;
        S.connect_at = utc_ms() + o["connect_after_ms"].get<long>();
    }
    if (o.contains("seed")) S.rng.seed(o["seed"].get<ulong>());
}

// the control ops `trade.*`
inline nlohmann::json control(const nlohmann::json &cmd) {
    Server &S = server();
    const std::string op = cmd.value("op", "");
    if (op == "trade.positions") {
        nlohmann::json rows = nlohmann::json::array();
        for (const Position &p : S.positions) rows.push_back(position_json(p));
        return {{"ok", true}, {"positions", rows}};
    }
    if (op == "trade.fault") {
        Fault f;
        f.retcode = cmd.value("retcode", 0);
        f.fill_ratio = cmd.value("fill_ratio", 0.0);
        f.timeout_executed = cmd.value("timeout_executed", false);
        if (f.retcode == 0 && f.fill_ratio <= 0 && !f.timeout_executed)
            return {{"ok", false}, {"error", "trade.fault needs retcode, fill_ratio or timeout_executed"}};
        S.faults.push_back(f);
        return {{"ok", true}, {"queued", S.faults.size()}};
    }
    if (op == "trade.received") return {{"ok", true}, {"requests", S.received}};
    if (op == "trade.history") {
        nlohmann::json rows = nlohmann::json::array();
        for (const Deal &d : S.deals)
            rows.push_back({{"ticket", d.ticket}, {"order", d.order}, {"position", d.position}, {"symbol", d.symbol},
                            {"entry", d.entry}, {"reason", d.reason}, {"volume", d.volume}, {"price", d.price},
                            {"profit", d.profit}, {"commission", d.commission}, {"comment", d.comment}});
        return {{"ok", true}, {"deals", rows}};
    }
    if (op == "trade.price") {
        Symbol *s = symbol(cmd.value("symbol", ""));
        if (s == nullptr) return {{"ok", false}, {"error", "unknown symbol"}};
        s->bid = cmd.value("bid", s->bid);
        s->ask = cmd.value("ask", s->ask);
        s->time_msc = server_ms();
        s->ticked = true;
        return {{"ok", true}};
    }
    if (op == "trade.close") {
        static const std::map<std::string, int> reasons = {{"sl", DEAL_REASON_SL}, {"tp", DEAL_REASON_TP}, {"so", DEAL_REASON_SO}, {"client", DEAL_REASON_CLIENT}};
        auto r = reasons.find(cmd.value("reason", "client"));
        if (r == reasons.end()) return {{"ok", false}, {"error", "reason must be sl, tp, so or client"}};
        if (!close_outside(cmd.value("ticket", 0UL), r->second)) return {{"ok", false}, {"error", "no such position"}};
        return {{"ok", true}};
    }
    if (op == "trade.disconnect" || op == "trade.reconnect") {
        S.connected = op == "trade.reconnect";
        return {{"ok", true}};
    }
    if (op == "trade.account") {
        if (cmd.contains("balance")) S.balance = cmd["balance"].get<double>();
        if (cmd.contains("trade_expert")) S.trade_expert = cmd["trade_expert"].get<bool>();
        if (cmd.contains("terminal_trade_allowed")) S.terminal_trade_allowed = cmd["terminal_trade_allowed"].get<bool>();
        return {{"ok", true}, {"balance", S.balance}, {"equity", S.balance + floating()}};
    }
    return {{"ok", false}, {"error", "unknown op " + op}};
}

}  // namespace mqlrt::trade
