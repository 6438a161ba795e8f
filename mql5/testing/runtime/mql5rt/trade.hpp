// trade.hpp - the simulated trade server behind MQL5's trade, position, history, account and symbol
// built-ins. One hedging (or netting) account; market orders fill at the current price unless a scripted
// fault says otherwise; TRADE_ACTION_SLTP sets a position's stops (10016 on the wrong side of the price or
// inside SYMBOL_TRADE_STOPS_LEVEL, 10025 when nothing changes, 10036 when the position is gone), and a stop
// the price reaches closes its position (deal reason SL or TP); a deal enters the history a configurable delay after the fill; every change queues
// the trade transactions MT5 sends for it. Tests script it through the harness's control ops `trade.*`.
#pragma once
#include <deque>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "core.hpp"

enum ENUM_TRADE_REQUEST_ACTIONS { TRADE_ACTION_DEAL = 1, TRADE_ACTION_PENDING = 5, TRADE_ACTION_SLTP = 6, TRADE_ACTION_MODIFY = 7, TRADE_ACTION_REMOVE = 8, TRADE_ACTION_CLOSE_BY = 10 };
enum ENUM_ORDER_TYPE { ORDER_TYPE_BUY = 0, ORDER_TYPE_SELL = 1, ORDER_TYPE_BUY_LIMIT = 2, ORDER_TYPE_SELL_LIMIT = 3, ORDER_TYPE_BUY_STOP = 4, ORDER_TYPE_SELL_STOP = 5, ORDER_TYPE_BUY_STOP_LIMIT = 6, ORDER_TYPE_SELL_STOP_LIMIT = 7, ORDER_TYPE_CLOSE_BY = 8 };
enum ENUM_ORDER_TYPE_FILLING { ORDER_FILLING_FOK = 0, ORDER_FILLING_IOC = 1, ORDER_FILLING_RETURN = 2, ORDER_FILLING_BOC = 3 };
enum ENUM_ORDER_TYPE_TIME { ORDER_TIME_GTC = 0, ORDER_TIME_DAY = 1, ORDER_TIME_SPECIFIED = 2, ORDER_TIME_SPECIFIED_DAY = 3 };
enum ENUM_POSITION_TYPE { POSITION_TYPE_BUY = 0, POSITION_TYPE_SELL = 1 };
enum ENUM_DEAL_ENTRY { DEAL_ENTRY_IN = 0, DEAL_ENTRY_OUT = 1, DEAL_ENTRY_INOUT = 2, DEAL_ENTRY_OUT_BY = 3 };
enum ENUM_DEAL_TYPE { DEAL_TYPE_BUY = 0, DEAL_TYPE_SELL = 1, DEAL_TYPE_BALANCE = 2 };
enum ENUM_DEAL_REASON { DEAL_REASON_CLIENT = 0, DEAL_REASON_MOBILE = 1, DEAL_REASON_WEB = 2, DEAL_REASON_EXPERT = 3, DEAL_REASON_SL = 4, DEAL_REASON_TP = 5, DEAL_REASON_SO = 6, DEAL_REASON_ROLLOVER = 7, DEAL_REASON_VMARGIN = 8, DEAL_REASON_SPLIT = 9 };
enum ENUM_ACCOUNT_MARGIN_MODE { ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0, ACCOUNT_MARGIN_MODE_EXCHANGE = 1, ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2 };
enum ENUM_TRADE_TRANSACTION_TYPE { TRADE_TRANSACTION_ORDER_ADD = 0, TRADE_TRANSACTION_ORDER_UPDATE = 1, TRADE_TRANSACTION_ORDER_DELETE = 2, TRADE_TRANSACTION_HISTORY_ADD = 3, TRADE_TRANSACTION_HISTORY_UPDATE = 4, TRADE_TRANSACTION_HISTORY_DELETE = 5, TRADE_TRANSACTION_DEAL_ADD = 6, TRADE_TRANSACTION_DEAL_UPDATE = 7, TRADE_TRANSACTION_DEAL_DELETE = 8, TRADE_TRANSACTION_POSITION = 9, TRADE_TRANSACTION_REQUEST = 10 };
enum ENUM_POSITION_PROPERTY_INTEGER { POSITION_TICKET = 17, POSITION_TIME = 1, POSITION_TIME_MSC = 14, POSITION_TIME_UPDATE = 15, POSITION_TIME_UPDATE_MSC = 16, POSITION_TYPE = 2, POSITION_MAGIC = 12, POSITION_IDENTIFIER = 13, POSITION_REASON = 18 };
enum ENUM_POSITION_PROPERTY_DOUBLE { POSITION_VOLUME = 3, POSITION_PRICE_OPEN = 4, POSITION_SL = 6, POSITION_TP = 7, POSITION_PRICE_CURRENT = 5, POSITION_SWAP = 9, POSITION_PROFIT = 10 };
enum ENUM_POSITION_PROPERTY_STRING { POSITION_SYMBOL = 0, POSITION_COMMENT = 11, POSITION_EXTERNAL_ID = 19 };
enum ENUM_DEAL_PROPERTY_INTEGER { DEAL_TICKET = 16, DEAL_ORDER = 1, DEAL_TIME = 2, DEAL_TIME_MSC = 13, DEAL_TYPE = 3, DEAL_ENTRY = 4, DEAL_MAGIC = 5, DEAL_REASON = 14, DEAL_POSITION_ID = 6 };
enum ENUM_DEAL_PROPERTY_DOUBLE { DEAL_VOLUME = 7, DEAL_PRICE = 8, DEAL_COMMISSION = 9, DEAL_SWAP = 10, DEAL_PROFIT = 11, DEAL_FEE = 15 };
enum ENUM_DEAL_PROPERTY_STRING { DEAL_SYMBOL = 0, DEAL_COMMENT = 12, DEAL_EXTERNAL_ID = 17 };
enum ENUM_ACCOUNT_INFO_INTEGER { ACCOUNT_LOGIN = 0, ACCOUNT_TRADE_MODE = 32, ACCOUNT_LEVERAGE = 35, ACCOUNT_LIMIT_ORDERS = 47, ACCOUNT_MARGIN_SO_MODE = 44, ACCOUNT_TRADE_ALLOWED = 33, ACCOUNT_TRADE_EXPERT = 34, ACCOUNT_MARGIN_MODE = 48, ACCOUNT_CURRENCY_DIGITS = 49 };
enum ENUM_ACCOUNT_INFO_DOUBLE { ACCOUNT_BALANCE = 37, ACCOUNT_CREDIT = 38, ACCOUNT_PROFIT = 39, ACCOUNT_EQUITY = 40, ACCOUNT_MARGIN = 41, ACCOUNT_MARGIN_FREE = 42, ACCOUNT_MARGIN_LEVEL = 43, ACCOUNT_MARGIN_SO_CALL = 45, ACCOUNT_MARGIN_SO_SO = 46 };
enum ENUM_ACCOUNT_INFO_STRING { ACCOUNT_NAME = 1, ACCOUNT_SERVER = 3, ACCOUNT_CURRENCY = 36, ACCOUNT_COMPANY = 2 };
enum ENUM_SYMBOL_INFO_INTEGER { SYMBOL_SELECT = 0, SYMBOL_DIGITS = 17, SYMBOL_SPREAD = 18, SYMBOL_TRADE_MODE = 29, SYMBOL_TRADE_STOPS_LEVEL = 31, SYMBOL_TRADE_FREEZE_LEVEL = 32, SYMBOL_FILLING_MODE = 50, SYMBOL_TIME = 15 };
enum ENUM_SYMBOL_TRADE_MODE { SYMBOL_TRADE_MODE_DISABLED = 0, SYMBOL_TRADE_MODE_LONGONLY = 1, SYMBOL_TRADE_MODE_SHORTONLY = 2, SYMBOL_TRADE_MODE_CLOSEONLY = 3, SYMBOL_TRADE_MODE_FULL = 4 };
enum ENUM_SYMBOL_INFO_DOUBLE { SYMBOL_BID = 1, SYMBOL_ASK = 4, SYMBOL_POINT = 16, SYMBOL_TRADE_CONTRACT_SIZE = 28, SYMBOL_VOLUME_MIN = 34, SYMBOL_VOLUME_MAX = 35, SYMBOL_VOLUME_STEP = 36 };
#define SYMBOL_FILLING_FOK 1
#define SYMBOL_FILLING_IOC 2
#define SYMBOL_FILLING_BOC 4
#define TRADE_RETCODE_REQUOTE 10004
#define TRADE_RETCODE_REJECT 10006
#define TRADE_RETCODE_CANCEL 10007
#define TRADE_RETCODE_PLACED 10008
#define TRADE_RETCODE_DONE 10009
#define TRADE_RETCODE_DONE_PARTIAL 10010
#define TRADE_RETCODE_ERROR 10011
#define TRADE_RETCODE_TIMEOUT 10012
#define TRADE_RETCODE_INVALID 10013
#define TRADE_RETCODE_INVALID_VOLUME 10014
#define TRADE_RETCODE_INVALID_PRICE 10015
#define TRADE_RETCODE_INVALID_STOPS 10016
#define TRADE_RETCODE_TRADE_DISABLED 10017
#define TRADE_RETCODE_MARKET_CLOSED 10018
#define TRADE_RETCODE_NO_MONEY 10019
#define TRADE_RETCODE_PRICE_CHANGED 10020
#define TRADE_RETCODE_PRICE_OFF 10021
#define TRADE_RETCODE_TOO_MANY_REQUESTS 10024
#define TRADE_RETCODE_NO_CHANGES 10025
#define TRADE_RETCODE_SERVER_DISABLES_AT 10026
#define TRADE_RETCODE_CLIENT_DISABLES_AT 10027
#define TRADE_RETCODE_INVALID_FILL 10030
#define TRADE_RETCODE_CONNECTION 10031
#define TRADE_RETCODE_POSITION_CLOSED 10036
#define TRADE_RETCODE_INVALID_CLOSE_VOLUME 10038
#define TRADE_RETCODE_LONG_ONLY 10042
#define TRADE_RETCODE_SHORT_ONLY 10043
#define TRADE_RETCODE_CLOSE_ONLY 10044

struct MqlTradeRequest {
    ENUM_TRADE_REQUEST_ACTIONS action;
    ulong magic;
    ulong order;
    string symbol;
    double volume;
    double price;
    double stoplimit;
    double sl;
    double tp;
    ulong deviation;
    ENUM_ORDER_TYPE type;
    ENUM_ORDER_TYPE_FILLING type_filling;
    ENUM_ORDER_TYPE_TIME type_time;
    datetime expiration;
    string comment;
    ulong position;
    ulong position_by;
};
struct MqlTradeResult {
    uint retcode;
    ulong deal;
    ulong order;
    double volume;
    double price;
    double bid;
    double ask;
    string comment;
    uint request_id;
    int retcode_external;
};
struct MqlTradeTransaction {
    ulong deal;
    ulong order;
    string symbol;
    ENUM_TRADE_TRANSACTION_TYPE type;
    ENUM_ORDER_TYPE order_type;
    int order_state;
    ENUM_DEAL_TYPE deal_type;
    ENUM_ORDER_TYPE_TIME time_type;
    datetime time_expiration;
    double price;
    double price_trigger;
    double price_sl;
    double price_tp;
    double volume;
    ulong position;
    ulong position_by;
};
struct MqlTick {
    datetime time;
    double bid;
    double ask;
    double last;
    ulong volume;
    long time_msc;
    uint flags;
    double volume_real;
};

namespace mqlrt::trade {

struct Symbol {
    std::string name;
    int digits = 5;
    double point = 0.00001, contract = 100000, vmin = 0.01, vmax = 100, vstep = 0.01;
    long filling = SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC;
    int trade_mode = SYMBOL_TRADE_MODE_FULL;
    int stops_level = 20;  // SYMBOL_TRADE_STOPS_LEVEL: a stop's least distance from the price, in points
    double bid = 0, ask = 0;
    long time_msc = 0;
    bool ticked = false;
};
struct Position {
    ulong ticket, identifier;
    std::string symbol, comment;
    int type;
    ulong magic;
    double volume, price_open, sl = 0, tp = 0, swap = 0;
    long time_msc;
};
struct Deal {
    ulong ticket, order, position;
    std::string symbol, comment;
    int type, entry, reason;
    ulong magic;
    double volume, price, profit, commission, swap = 0, fee = 0;
    long time_msc;      // server time
    long visible_at;    // UTC ms when it enters the history
};
struct Fault {
    int retcode = 0;
    double fill_ratio = 0;
    bool timeout_executed = false;
};
struct Event {
    MqlTradeTransaction t;
    MqlTradeRequest rq;
    MqlTradeResult rs;
};

struct Server {
    long login = 1000001;
    std::string currency = "USD";
    int margin_mode = ACCOUNT_MARGIN_MODE_RETAIL_HEDGING;
    double balance = 10000, leverage = 100, commission_per_lot = 3.5;
    bool commission_each_side = false;  // false: the round turn is charged on the closing deal
    bool connected = true, trade_expert = true, terminal_trade_allowed = true;
    long history_delay_ms = 50;
    bool logged_in = true;  // false until connect_at: a terminal just started reads login 0
    long connect_at = 0;
    long tick_interval_ms = 100;
    long last_tick = 0;
    ulong next_order = 50000001, next_deal = 70000001;
    std::map<std::string, Symbol> symbols;
    std::vector<Position> positions;  // in opening order
    std::vector<Deal> deals;
    std::deque<Fault> faults;
    std::deque<Event> events;
    nlohmann::json received = nlohmann::json::array();
    std::mt19937_64 rng{7};
    // what the MQL5 functions have selected
    long selected_position = -1;                 // index into positions
    std::vector<size_t> history;                  // deals HistorySelect chose
    long history_from = 0, history_to = 0;
    bool history_selected = false;
    // persistence (--trade-state): what the broker keeps while the terminal or the EA restarts
    std::string state_file;
    ulong changes = 0, saved = 0;
};
inline Server &server() {
    static Server s;
    return s;
}

inline Symbol *symbol(const std::string &name) {
    auto it = server().symbols.find(name);
    return it == server().symbols.end() ? nullptr : &it->second;
}
inline long server_ms() { return utc_ms() + server_offset_s() * 1000; }

inline void add_symbol(const std::string &name, double price, int digits) {
    Symbol s;
    s.name = name;
    s.digits = digits;
    s.point = std::pow(10.0, -digits);
    double spread = 10 * s.point;
    s.bid = price;
    s.ask = price + spread;
    s.time_msc = server_ms();
    server().symbols[name] = s;
}

inline double profit_of(const Position &p) {
    const Symbol *s = symbol(p.symbol);
    if (s == nullptr) return 0;
    double now = p.type == POSITION_TYPE_BUY ? s->bid : s->ask;
    double diff = p.type == POSITION_TYPE_BUY ? now - p.price_open : p.price_open - now;
    return std::round(diff * p.volume * s->contract * 100) / 100;
}
inline double floating() {
    double sum = 0;
    for (const Position &p : server().positions) sum += profit_of(p) + p.swap;
    return sum;
}
inline double margin() {
    double sum = 0;
    for (const Position &p : server().positions) {
        const Symbol *s = symbol(p.symbol);
        if (s) sum += p.volume * s->contract * p.price_open / server().leverage;
    }
    return std::round(sum * 100) / 100;
}

inline void queue(ENUM_TRADE_TRANSACTION_TYPE type, const Deal *d, ulong order, const std::string &sym, ulong position,
                  const MqlTradeRequest *rq = nullptr, const MqlTradeResult *rs = nullptr) {
    Event e{};
    e.t.type = type;
    e.t.order = order;
    e.t.symbol = string::from_utf8(sym);
    e.t.position = position;
    if (d) {
        e.t.deal = d->ticket;
        e.t.deal_type = static_cast<ENUM_DEAL_TYPE>(d->type);
        e.t.price = d->price;
        e.t.volume = d->volume;
    }
    if (rq) e.rq = *rq;
    if (rs) e.rs = *rs;
    server().events.push_back(e);
}

// a fill of `volume` at `price`: opens, adds to (netting) or reduces a position; writes the deal
inline Deal fill(const std::string &sym, int order_type, double volume, double price, ulong magic,
                 const std::string &comment, ulong position_ticket, int reason, ulong order) {
    Server &S = server();
    Deal d{};
    d.ticket = S.next_deal++;
    d.order = order;
    d.symbol = sym;
    d.comment = comment;
    d.type = order_type == ORDER_TYPE_BUY ? DEAL_TYPE_BUY : DEAL_TYPE_SELL;
    d.reason = reason;
    d.magic = magic;
    d.volume = volume;
    d.price = price;
    d.time_msc = server_ms();
    d.visible_at = utc_ms() + S.history_delay_ms;
    auto target = S.positions.end();
    if (position_ticket != 0) {
        target = std::find_if(S.positions.begin(), S.positions.end(),
                              [&](const Position &p) { return p.ticket == position_ticket; });
    } else if (S.margin_mode == ACCOUNT_MARGIN_MODE_RETAIL_NETTING) {
        target = std::find_if(S.positions.begin(), S.positions.end(), [&](const Position &p) { return p.symbol == sym; });
    }
    if (target == S.positions.end()) {
        Position p{order, order, sym, comment, order_type == ORDER_TYPE_BUY ? POSITION_TYPE_BUY : POSITION_TYPE_SELL,
                   magic, volume, price};
        p.time_msc = d.time_msc;
        S.positions.push_back(p);
        d.entry = DEAL_ENTRY_IN;
        d.position = p.identifier;
    } else if ((target->type == POSITION_TYPE_BUY) == (order_type == ORDER_TYPE_BUY)) {
        target->price_open = (target->price_open * target->volume + price * volume) / (target->volume + volume);
        target->volume += volume;
        d.entry = DEAL_ENTRY_IN;
        d.position = target->identifier;
    } else {
        double closed = std::min(volume, target->volume);
        const Symbol *s = symbol(sym);
        double diff = target->type == POSITION_TYPE_BUY ? price - target->price_open : target->price_open - price;
        d.profit = std::round(diff * closed * (s ? s->contract : 1) * 100) / 100;
        d.entry = DEAL_ENTRY_OUT;
        d.position = target->identifier;
        S.balance += d.profit;
        target->volume = std::round((target->volume - closed) * 1e8) / 1e8;
        if (target->volume <= 1e-9) S.positions.erase(target);
    }
    double per_side = std::round(S.commission_per_lot * volume * 100) / 100;
    d.commission = d.entry == DEAL_ENTRY_IN ? (S.commission_each_side ? -per_side : 0.0)
                                            : -(S.commission_each_side ? per_side : 2 * per_side);
    S.balance += d.commission;
    S.deals.push_back(d);
    S.changes++;
    return d;
}

inline void set_retcode(MqlTradeResult &result, uint code, const char *comment) {
    result.retcode = code;
    result.comment = comment;
}

// whether stops of a position of `type` are on the wrong side of the price it closes at (the bid for a buy,
// the ask for a sell) or nearer to it than the symbol's stops level; 0 is no stop
inline bool stops_invalid(const Symbol &s, int type, double sl, double tp) {
    double price = type == POSITION_TYPE_BUY ? s.bid : s.ask;
    double direction = type == POSITION_TYPE_BUY ? 1 : -1;
    double level = s.stops_level * s.point, tolerance = s.point * 1e-3;
    auto too_close = [&](double distance) { return distance <= tolerance || distance < level - tolerance; };
    return (sl > 0 && too_close((price - sl) * direction)) || (tp > 0 && too_close((tp - price) * direction));
}

// TRADE_ACTION_SLTP: the position named by `request.position` (its ticket) gets `request.sl` and `request.tp`
// (0: none; a field not set is 0, so a request that sets only sl removes the tp)
inline bool modify_stops(const MqlTradeRequest &request, MqlTradeResult &result) {
    Server &S = server();
    auto refuse = [&](uint code, const char *comment) {
        set_retcode(result, code, comment);
        return false;
    };
    if (request.position == 0) return refuse(TRADE_RETCODE_INVALID, "Invalid request (no position)");
    Position *p = nullptr;
    for (Position &candidate : S.positions)
        if (candidate.ticket == request.position) p = &candidate;
    if (p == nullptr) return refuse(TRADE_RETCODE_POSITION_CLOSED, "Position doesn't exist");
    if (request.symbol.utf8() != "" && request.symbol.utf8() != p->symbol) return refuse(TRADE_RETCODE_INVALID, "Invalid request");
    Symbol *s = symbol(p->symbol);
    if (s == nullptr) return refuse(TRADE_RETCODE_INVALID, "Invalid request (unknown symbol)");
    if (s->trade_mode == SYMBOL_TRADE_MODE_DISABLED) return refuse(TRADE_RETCODE_TRADE_DISABLED, "Trade is disabled");
    result.bid = s->bid;
    result.ask = s->ask;
    if (!S.faults.empty()) {
        Fault fault = S.faults.front();
        S.faults.pop_front();
        if (fault.retcode != 0) return refuse(static_cast<uint>(fault.retcode), "scripted refusal");
    }
    if (std::fabs(request.sl - p->sl) < s->point * 1e-3 && std::fabs(request.tp - p->tp) < s->point * 1e-3)
        return refuse(TRADE_RETCODE_NO_CHANGES, "No changes");
    if (stops_invalid(*s, p->type, request.sl, request.tp)) return refuse(TRADE_RETCODE_INVALID_STOPS, "Invalid stops");
    p->sl = request.sl;
    p->tp = request.tp;
    S.changes++;
    set_retcode(result, TRADE_RETCODE_DONE, "Request executed");
    queue(TRADE_TRANSACTION_POSITION, nullptr, 0, p->symbol, p->identifier);
    queue(TRADE_TRANSACTION_REQUEST, nullptr, 0, p->symbol, p->identifier, &request, &result);
    return true;
}

// OrderSend: the terminal's checks (false, last error set), then the trade server's answer
inline bool order_send(const MqlTradeRequest &request, MqlTradeResult &result) {
    Server &S = server();
    result = MqlTradeResult();
    std::string sym = request.symbol.utf8();
    S.received.push_back({{"action", static_cast<int>(request.action)}, {"symbol", sym}, {"type", static_cast<int>(request.type)},
                          {"volume", request.volume}, {"position", request.position}, {"magic", request.magic},
                          {"comment", request.comment.utf8()}, {"price", request.price}});
    auto refuse = [&](uint code, const char *comment) {
        set_retcode(result, code, comment);
        set_last_error(ERR_TRADE_SEND_FAILED);
        return false;
    };
    if (!S.connected) return refuse(TRADE_RETCODE_CONNECTION, "No connection with the trade server");
    if (!S.terminal_trade_allowed) return refuse(TRADE_RETCODE_CLIENT_DISABLES_AT, "AutoTrading disabled by client");
    if (request.action == TRADE_ACTION_SLTP) return modify_stops(request, result);
    if (request.action != TRADE_ACTION_DEAL) return refuse(TRADE_RETCODE_INVALID, "Invalid request");
    if (request.comment.len() > 31) return refuse(TRADE_RETCODE_INVALID, "Invalid request (comment too long)");
    Symbol *s = symbol(sym);
    if (s == nullptr) return refuse(TRADE_RETCODE_INVALID, "Invalid request (unknown symbol)");
    if (request.type != ORDER_TYPE_BUY && request.type != ORDER_TYPE_SELL) return refuse(TRADE_RETCODE_INVALID, "Invalid request");
    if (s->trade_mode == SYMBOL_TRADE_MODE_DISABLED) return refuse(TRADE_RETCODE_TRADE_DISABLED, "Trade is disabled");
    if (request.position == 0 && s->trade_mode == SYMBOL_TRADE_MODE_CLOSEONLY)
        return refuse(TRADE_RETCODE_CLOSE_ONLY, "Only position closing is allowed");
    if (request.position == 0 && s->trade_mode == SYMBOL_TRADE_MODE_LONGONLY && request.type == ORDER_TYPE_SELL)
        return refuse(TRADE_RETCODE_LONG_ONLY, "Only long positions are allowed");
    if (request.position == 0 && s->trade_mode == SYMBOL_TRADE_MODE_SHORTONLY && request.type == ORDER_TYPE_BUY)
        return refuse(TRADE_RETCODE_SHORT_ONLY, "Only short positions are allowed");
    double steps = request.volume / s->vstep;
    if (request.volume < s->vmin - 1e-9 || request.volume > s->vmax + 1e-9 || std::fabs(steps - std::round(steps)) > 1e-7)
        return refuse(TRADE_RETCODE_INVALID_VOLUME, "Invalid volume");
    if (!(s->filling & (request.type_filling == ORDER_FILLING_FOK ? SYMBOL_FILLING_FOK
                        : request.type_filling == ORDER_FILLING_IOC ? SYMBOL_FILLING_IOC : 0)) &&
        request.type_filling != ORDER_FILLING_RETURN)
        return refuse(TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode");
    Position *closing = nullptr;
    if (request.position != 0) {
        for (Position &p : S.positions)
            if (p.ticket == request.position) closing = &p;
        if (closing == nullptr) return refuse(TRADE_RETCODE_POSITION_CLOSED, "Position doesn't exist");
        if (request.volume > closing->volume + 1e-9) return refuse(TRADE_RETCODE_INVALID_CLOSE_VOLUME, "Invalid close volume");
    }
    double price = request.type == ORDER_TYPE_BUY ? s->ask : s->bid;
    result.bid = s->bid;
    result.ask = s->ask;
    int opening = request.type == ORDER_TYPE_BUY ? POSITION_TYPE_BUY : POSITION_TYPE_SELL;
    if (request.position == 0 && stops_invalid(*s, opening, request.sl, request.tp)) {
        set_retcode(result, TRADE_RETCODE_INVALID_STOPS, "Invalid stops");
        return false;
    }
    Fault fault;
    if (!S.faults.empty()) {
        fault = S.faults.front();
        S.faults.pop_front();
    }
    if (fault.retcode != 0) {
        set_retcode(result, static_cast<uint>(fault.retcode), "scripted refusal");
        return false;
    }
    if (request.price > 0 && std::fabs(request.price - price) > (request.deviation + 0.5) * s->point) {
        set_retcode(result, TRADE_RETCODE_REQUOTE, "Requote");
        return false;
    }
    double volume = request.volume;
    if (fault.fill_ratio > 0 && fault.fill_ratio < 1)
        volume = std::max(s->vmin, std::floor(request.volume * fault.fill_ratio / s->vstep + 1e-9) * s->vstep);
    ulong order = S.next_order++;
    MqlTradeResult done{};
    Deal d = fill(sym, request.type, volume, price, request.magic, request.comment.utf8(), request.position,
                  DEAL_REASON_EXPERT, order);
    if (request.position == 0 && (request.sl > 0 || request.tp > 0))
        for (Position &p : S.positions)
            if (p.identifier == d.position && d.entry == DEAL_ENTRY_IN) {
                p.sl = request.sl;
                p.tp = request.tp;
            }
    done.retcode = volume < request.volume - 1e-9 ? TRADE_RETCODE_DONE_PARTIAL : TRADE_RETCODE_DONE;
    done.deal = d.ticket;
    done.order = order;
    done.volume = volume;
    done.price = price;
    done.bid = s->bid;
    done.ask = s->ask;
    done.comment = done.retcode == TRADE_RETCODE_DONE ? "Request executed" : "Request executed partially";
    // what MT5 sends for a market order: the order, the deal, the position, the order leaving, the request
    queue(TRADE_TRANSACTION_ORDER_ADD, nullptr, order, sym, d.position);
    queue(TRADE_TRANSACTION_DEAL_ADD, &d, order, sym, d.position);
    queue(TRADE_TRANSACTION_ORDER_DELETE, nullptr, order, sym, d.position);
    queue(TRADE_TRANSACTION_HISTORY_ADD, nullptr, order, sym, d.position);
    queue(TRADE_TRANSACTION_REQUEST, nullptr, 0, sym, d.position, &request, &done);
    if (fault.timeout_executed) {  // executed, but the answer did not come back in time
        set_retcode(result, TRADE_RETCODE_TIMEOUT, "Request timeout");
        return false;
    }
    result = done;
    return true;
}

// a close the EA did not ask for (stop loss, take profit, stop out, a person)
inline bool close_outside(ulong ticket, int reason) {
    Server &S = server();
    for (const Position &p : S.positions) {
        if (p.ticket != ticket) continue;
        const Symbol *s = symbol(p.symbol);
        int type = p.type == POSITION_TYPE_BUY ? ORDER_TYPE_SELL : ORDER_TYPE_BUY;
        double price = type == ORDER_TYPE_BUY ? s->ask : s->bid;
        ulong order = S.next_order++;
        std::string comment = reason == DEAL_REASON_SL ? "[sl]" : reason == DEAL_REASON_TP ? "[tp]" : reason == DEAL_REASON_SO ? "[so]" : "";
        std::string sym = p.symbol;
        Deal d = fill(sym, type, p.volume, price, 0, comment, ticket, reason, order);
        queue(TRADE_TRANSACTION_DEAL_ADD, &d, order, sym, d.position);
        queue(TRADE_TRANSACTION_HISTORY_ADD, nullptr, order, sym, d.position);
        return true;
    }
    return false;
}

// the positions whose stop loss or take profit the price reached are closed by the server
inline void trigger_stops() {
    Server &S = server();
    std::vector<std::pair<ulong, int>> hit;
    for (const Position &p : S.positions) {
        const Symbol *s = symbol(p.symbol);
        if (s == nullptr) continue;
        double price = p.type == POSITION_TYPE_BUY ? s->bid : s->ask;
        double direction = p.type == POSITION_TYPE_BUY ? 1 : -1;
        if (p.sl > 0 && (price - p.sl) * direction <= 0) hit.emplace_back(p.ticket, DEAL_REASON_SL);
        else if (p.tp > 0 && (p.tp - price) * direction <= 0) hit.emplace_back(p.ticket, DEAL_REASON_TP);
    }
    for (const auto &h : hit) close_outside(h.first, h.second);
}

inline void step(long now_utc_ms) {
    Server &S = server();
    if (!S.logged_in && now_utc_ms >= S.connect_at) S.logged_in = S.connected = true;
    if (S.tick_interval_ms <= 0 || now_utc_ms - S.last_tick < S.tick_interval_ms) return;
    S.last_tick = now_utc_ms;
    std::normal_distribution<double> walk(0.0, 1.0);
    for (auto &kv : S.symbols) {
        Symbol &s = kv.second;
        double move = std::round(walk(S.rng) * 2) * s.point;
        double spread = s.ask - s.bid;
        s.bid = NormalizeDouble(s.bid + move, s.digits);
        s.ask = NormalizeDouble(s.bid + spread, s.digits);
        s.time_msc = server_ms();
        s.ticked = true;
    }
    trigger_stops();
}

inline bool take_tick(const std::string &chart_symbol) {
    Symbol *s = symbol(chart_symbol);
    if (s == nullptr || !s->ticked) return false;
    s->ticked = false;
    return true;
}

inline bool next_transaction(MqlTradeTransaction &t, MqlTradeRequest &rq, MqlTradeResult &rs) {
    Server &S = server();
    if (S.events.empty()) return false;
    t = S.events.front().t;
    rq = S.events.front().rq;
    rs = S.events.front().rs;
    S.events.pop_front();
    return true;
}

}  // namespace mqlrt::trade

