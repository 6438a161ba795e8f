// trade_control.hpp - the simulated trade server's settings (--trade-config) and the control ops trade.*
// that tests send through the harness.
#pragma once
#include <fstream>

#include "trade.hpp"

namespace mqlrt::trade {

inline nlohmann::json position_json(const Position &p) {
    return {{"ticket", p.ticket}, {"identifier", p.identifier}, {"symbol", p.symbol}, {"type", p.type},
            {"volume", p.volume}, {"price_open", p.price_open}, {"sl", p.sl}, {"tp", p.tp},
            {"profit", profit_of(p)}, {"magic", p.magic}, {"comment", p.comment}};
}

// a symbol's rules from {"volume_min", "volume_max", "volume_step", "contract_size", "trade_mode", "filling",
// "stops_level"}:
// trade_mode is the protocol's name (DISABLED, LONG_ONLY, SHORT_ONLY, CLOSE_ONLY, FULL) or MQL5's number; an
// empty string when they were applied, else what is wrong
inline std::string set_rules(Symbol &s, const nlohmann::json &rules) {
    static const std::map<std::string, int> modes = {
        {"DISABLED", SYMBOL_TRADE_MODE_DISABLED}, {"LONG_ONLY", SYMBOL_TRADE_MODE_LONGONLY},
        {"SHORT_ONLY", SYMBOL_TRADE_MODE_SHORTONLY}, {"CLOSE_ONLY", SYMBOL_TRADE_MODE_CLOSEONLY},
        {"FULL", SYMBOL_TRADE_MODE_FULL}};
    Symbol next = s;
    for (auto it = rules.begin(); it != rules.end(); ++it) {
        const std::string &key = it.key();
        if (key == "symbol" || key == "op" || key == "id") continue;  // the control op's own fields
        if (key == "volume_min") next.vmin = it->get<double>();
        else if (key == "volume_max") next.vmax = it->get<double>();
        else if (key == "volume_step") next.vstep = it->get<double>();
        else if (key == "contract_size") next.contract = it->get<double>();
        else if (key == "filling") next.filling = it->get<long>();
        else if (key == "stops_level") next.stops_level = it->get<int>();
        else if (key == "trade_mode" && it->is_number_integer()) next.trade_mode = it->get<int>();
        else if (key == "trade_mode" && it->is_string() && modes.count(it->get<std::string>())) next.trade_mode = modes.at(it->get<std::string>());
        else return "cannot set " + key + " to " + it->dump() + " (not supported yet)";
    }
    if (next.vstep <= 0 || next.vmax <= 0 || next.vmin > next.vmax || next.trade_mode < 0 || next.trade_mode > 4)
        return "inconsistent rules for " + s.name;
    s = next;
    return "";
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
    if (o.contains("symbols"))  // {"EURUSD": {"volume_step": 0.1, "trade_mode": "CLOSE_ONLY", ...}, ...}
        for (auto it = o["symbols"].begin(); it != o["symbols"].end(); ++it) {
            Symbol *s = symbol(it.key());
            if (s == nullptr) throw std::runtime_error("symbols: unknown symbol " + it.key());
            std::string problem = set_rules(*s, *it);
            if (!problem.empty()) throw std::runtime_error("symbols: " + problem);
        }
}

// --- the broker's side survives restarts (--trade-state FILE) ---------------------------------------------------
// The account, its positions and its deal history are kept in FILE after every change and read back when the
// program starts, so an EA (or a whole terminal) that is restarted finds the trade server as it left it.
inline nlohmann::json deal_json(const Deal &d) {
    return {{"ticket", d.ticket}, {"order", d.order}, {"position", d.position}, {"symbol", d.symbol},
            {"comment", d.comment}, {"type", d.type}, {"entry", d.entry}, {"reason", d.reason}, {"magic", d.magic},
            {"volume", d.volume}, {"price", d.price}, {"profit", d.profit}, {"commission", d.commission},
            {"swap", d.swap}, {"fee", d.fee}, {"time_msc", d.time_msc}};
}

inline void save_state() {
    Server &S = server();
    if (S.state_file.empty() || S.saved == S.changes) return;
    nlohmann::json positions = nlohmann::json::array(), deals = nlohmann::json::array();
    for (const Position &p : S.positions) {
        nlohmann::json row = position_json(p);
        row["swap"] = p.swap;
        row["time_msc"] = p.time_msc;
        positions.push_back(row);
    }
    for (const Deal &d : S.deals) deals.push_back(deal_json(d));
    nlohmann::json state = {{"login", S.login}, {"balance", S.balance}, {"next_order", S.next_order},
                            {"next_deal", S.next_deal}, {"positions", positions}, {"deals", deals}};
    std::string tmp = S.state_file + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << state.dump();
        if (!out) {
            journal() << "trade server: cannot write its state to " << tmp << std::endl;
            return;
        }
    }
    if (std::rename(tmp.c_str(), S.state_file.c_str()) != 0) {
        journal() << "trade server: cannot replace " << S.state_file << std::endl;
        return;
    }
    S.saved = S.changes;
}

inline void load_state(const std::string &file) {
    Server &S = server();
    S.state_file = file;
    std::ifstream in(file);
    if (!in) return;  // a new account
    nlohmann::json state = nlohmann::json::parse(in);
    S.login = state.at("login").get<long>();
    S.balance = state.at("balance").get<double>();
    S.next_order = state.at("next_order").get<ulong>();
    S.next_deal = state.at("next_deal").get<ulong>();
    S.positions.clear();
    for (const auto &r : state.at("positions")) {
        Position p{r.at("ticket").get<ulong>(), r.at("identifier").get<ulong>(), r.at("symbol").get<std::string>(),
                   r.at("comment").get<std::string>(), r.at("type").get<int>(), r.at("magic").get<ulong>(),
                   r.at("volume").get<double>(), r.at("price_open").get<double>()};
        p.sl = r.at("sl").get<double>();
        p.tp = r.at("tp").get<double>();
        p.swap = r.at("swap").get<double>();
        p.time_msc = r.at("time_msc").get<long>();
        S.positions.push_back(p);
    }
    S.deals.clear();
    for (const auto &r : state.at("deals")) {
        Deal d{};
        d.ticket = r.at("ticket").get<ulong>();
        d.order = r.at("order").get<ulong>();
        d.position = r.at("position").get<ulong>();
        d.symbol = r.at("symbol").get<std::string>();
        d.comment = r.at("comment").get<std::string>();
        d.type = r.at("type").get<int>();
        d.entry = r.at("entry").get<int>();
        d.reason = r.at("reason").get<int>();
        d.magic = r.at("magic").get<ulong>();
        d.volume = r.at("volume").get<double>();
        d.price = r.at("price").get<double>();
        d.profit = r.at("profit").get<double>();
        d.commission = r.at("commission").get<double>();
        d.swap = r.at("swap").get<double>();
        d.fee = r.at("fee").get<double>();
        d.time_msc = r.at("time_msc").get<long>();
        d.visible_at = 0;  // long in the history
        S.deals.push_back(d);
    }
    S.saved = S.changes;
}

// what the broker did while the terminal was off: {"closed_while_away": [{"ticket": T, "reason": "sl"}, ...]}
// closes those positions (after --trade-state is read) before the EA starts
inline bool close_outside(ulong ticket, const std::string &reason);
inline void apply_while_away(const nlohmann::json &o) {
    if (!o.is_object() || !o.contains("closed_while_away")) return;
    for (const auto &row : o["closed_while_away"])
        if (!close_outside(row.at("ticket").get<ulong>(), row.value("reason", "client")))
            throw std::runtime_error("closed_while_away: no open position " + row.at("ticket").dump() + " (or a bad reason)");
    server().events.clear();  // the terminal was not running: no transactions reach the EA
    for (Deal &d : server().deals) d.visible_at = 0;  // and the history has them by the time it starts
}

inline bool close_outside(ulong ticket, const std::string &reason) {
    static const std::map<std::string, int> reasons = {{"sl", DEAL_REASON_SL}, {"tp", DEAL_REASON_TP}, {"so", DEAL_REASON_SO}, {"client", DEAL_REASON_CLIENT}};
    auto r = reasons.find(reason);
    return r != reasons.end() && close_outside(ticket, r->second);
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
        std::string reason = cmd.value("reason", "client");
        if (reason != "sl" && reason != "tp" && reason != "so" && reason != "client")
            return {{"ok", false}, {"error", "reason must be sl, tp, so or client"}};
        if (!close_outside(cmd.value("ticket", 0UL), reason)) return {{"ok", false}, {"error", "no such position"}};
        return {{"ok", true}};
    }
    if (op == "trade.reopen") {  // a service operation (swap charged by re-opening): a new ticket, the same identifier
        for (Position &p : S.positions) {
            if (p.ticket != cmd.value("ticket", 0UL)) continue;
            p.ticket = S.next_order++;
            p.swap += cmd.value("swap", 0.0);
            S.changes++;
            queue(TRADE_TRANSACTION_POSITION, nullptr, 0, p.symbol, p.ticket);
            return {{"ok", true}, {"ticket", p.ticket}};
        }
        return {{"ok", false}, {"error", "no such position"}};
    }
    if (op == "trade.symbol") {  // the broker changes a symbol's rules (see set_rules)
        Symbol *s = symbol(cmd.value("symbol", ""));
        if (s == nullptr) return {{"ok", false}, {"error", "unknown symbol"}};
        std::string problem = set_rules(*s, cmd);
        if (!problem.empty()) return {{"ok", false}, {"error", problem}};
        return {{"ok", true}};
    }
    if (op == "trade.price") {  // the market jumps: {"symbol", "bid"}, the spread kept; stops it reaches trigger
        Symbol *s = symbol(cmd.value("symbol", ""));
        if (s == nullptr || !cmd.contains("bid")) return {{"ok", false}, {"error", "trade.price needs a known symbol and bid"}};
        double spread = s->ask - s->bid;
        s->bid = NormalizeDouble(cmd["bid"].get<double>(), s->digits);
        s->ask = NormalizeDouble(s->bid + spread, s->digits);
        s->time_msc = server_ms();
        s->ticked = true;
        trigger_stops();
        return {{"ok", true}, {"bid", s->bid}, {"ask", s->ask}};
    }
    if (op == "trade.disconnect" || op == "trade.reconnect") {
        S.connected = op == "trade.reconnect";
        return {{"ok", true}};
    }
    if (op == "trade.account") {
        if (cmd.contains("balance")) S.balance = cmd["balance"].get<double>();
        S.changes++;
        if (cmd.contains("trade_expert")) S.trade_expert = cmd["trade_expert"].get<bool>();
        if (cmd.contains("terminal_trade_allowed")) S.terminal_trade_allowed = cmd["terminal_trade_allowed"].get<bool>();
        return {{"ok", true}, {"balance", S.balance}, {"equity", S.balance + floating()}};
    }
    return {{"ok", false}, {"error", "unknown op " + op}};
}

}  // namespace mqlrt::trade
