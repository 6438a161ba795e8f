// trade_api.hpp - MQL5's trade, position, history, account and symbol built-ins, answered by the simulated
// trade server of trade.hpp.
#pragma once
#include "trade.hpp"

// --- trade ----------------------------------------------------------------------------------------------------
MQL_BUILTIN bool OrderSend(const MqlTradeRequest &request, MqlTradeResult &result) { return mqlrt::trade::order_send(request, result); }

// --- positions ------------------------------------------------------------------------------------------------
MQL_BUILTIN int PositionsTotal(void) { return static_cast<int>(mqlrt::trade::server().positions.size()); }
MQL_BUILTIN ulong PositionGetTicket(int index) {
    auto &S = mqlrt::trade::server();
    if (index < 0 || index >= static_cast<int>(S.positions.size())) {
        mqlrt::set_last_error(ERR_TRADE_POSITION_NOT_FOUND);
        S.selected_position = -1;
        return 0;
    }
    S.selected_position = index;
    return S.positions[static_cast<size_t>(index)].ticket;
}
MQL_BUILTIN bool PositionSelectByTicket(ulong ticket) {
    auto &S = mqlrt::trade::server();
    for (size_t i = 0; i < S.positions.size(); i++)
        if (S.positions[i].ticket == ticket) {
            S.selected_position = static_cast<long>(i);
            return true;
        }
    mqlrt::set_last_error(ERR_TRADE_POSITION_NOT_FOUND);
    return false;
}
MQL_BUILTIN bool PositionSelect(const string &symbol) {
    auto &S = mqlrt::trade::server();
    for (size_t i = 0; i < S.positions.size(); i++)
        if (S.positions[i].symbol == symbol.utf8()) {
            S.selected_position = static_cast<long>(i);
            return true;
        }
    mqlrt::set_last_error(ERR_TRADE_POSITION_NOT_FOUND);
    return false;
}
namespace mqlrt::trade {
inline const Position *selected() {
    Server &S = server();
    if (S.selected_position < 0 || S.selected_position >= static_cast<long>(S.positions.size())) {
        set_last_error(ERR_TRADE_POSITION_NOT_FOUND);
        return nullptr;
    }
    return &S.positions[static_cast<size_t>(S.selected_position)];
}
}  // namespace mqlrt::trade
MQL_BUILTIN long PositionGetInteger(ENUM_POSITION_PROPERTY_INTEGER property_id) {
    const auto *p = mqlrt::trade::selected();
    if (!p) return 0;
    switch (property_id) {
        case POSITION_TICKET: return static_cast<long>(p->ticket);
        case POSITION_IDENTIFIER: return static_cast<long>(p->identifier);
        case POSITION_TYPE: return p->type;
        case POSITION_MAGIC: return static_cast<long>(p->magic);
        case POSITION_TIME: return p->time_msc / 1000;
        case POSITION_TIME_MSC: return p->time_msc;
        case POSITION_TIME_UPDATE: return p->time_msc / 1000;
        case POSITION_TIME_UPDATE_MSC: return p->time_msc;
        case POSITION_REASON: return 3;  // POSITION_REASON_EXPERT
    }
    return 0;
}
MQL_BUILTIN double PositionGetDouble(ENUM_POSITION_PROPERTY_DOUBLE property_id) {
    const auto *p = mqlrt::trade::selected();
    if (!p) return 0;
    const auto *s = mqlrt::trade::symbol(p->symbol);
    switch (property_id) {
        case POSITION_VOLUME: return p->volume;
        case POSITION_PRICE_OPEN: return p->price_open;
        case POSITION_PRICE_CURRENT: return s ? (p->type == POSITION_TYPE_BUY ? s->bid : s->ask) : 0;
        case POSITION_SL: return p->sl;
        case POSITION_TP: return p->tp;
        case POSITION_SWAP: return p->swap;
        case POSITION_PROFIT: return mqlrt::trade::profit_of(*p);
    }
    return 0;
}
MQL_BUILTIN string PositionGetString(ENUM_POSITION_PROPERTY_STRING property_id) {
    const auto *p = mqlrt::trade::selected();
    if (!p) return string();
    switch (property_id) {
        case POSITION_SYMBOL: return string::from_utf8(p->symbol);
        case POSITION_COMMENT: return string::from_utf8(p->comment);
        case POSITION_EXTERNAL_ID: return string();
    }
    return string();
}

// --- history --------------------------------------------------------------------------------------------------
MQL_BUILTIN bool HistorySelect(datetime from_date, datetime to_date) {
    auto &S = mqlrt::trade::server();
    S.history.clear();
    long now = mqlrt::utc_ms();
    for (size_t i = 0; i < S.deals.size(); i++) {
        const auto &d = S.deals[i];
        if (d.visible_at <= now && d.time_msc / 1000 >= from_date && d.time_msc / 1000 <= to_date) S.history.push_back(i);
    }
    S.history_from = from_date;
    S.history_to = to_date;
    S.history_selected = true;
    return true;
}
MQL_BUILTIN int HistoryDealsTotal(void) { return static_cast<int>(mqlrt::trade::server().history.size()); }
MQL_BUILTIN ulong HistoryDealGetTicket(int index) {
    auto &S = mqlrt::trade::server();
    if (index < 0 || index >= static_cast<int>(S.history.size())) {
        mqlrt::set_last_error(ERR_TRADE_DEAL_NOT_FOUND);
        return 0;
    }
    return S.deals[S.history[static_cast<size_t>(index)]].ticket;
}
MQL_BUILTIN bool HistoryDealSelect(ulong ticket) {
    auto &S = mqlrt::trade::server();
    long now = mqlrt::utc_ms();
    for (size_t i = 0; i < S.deals.size(); i++)
        if (S.deals[i].ticket == ticket && S.deals[i].visible_at <= now) {
            S.history.assign(1, i);
            return true;
        }
    mqlrt::set_last_error(ERR_TRADE_DEAL_NOT_FOUND);
    return false;
}
namespace mqlrt::trade {
// a deal's properties are read from the history the last HistorySelect / HistoryDealSelect chose
inline const Deal *deal_in_history(ulong ticket) {
    Server &S = server();
    for (size_t i : S.history)
        if (S.deals[i].ticket == ticket) return &S.deals[i];
    set_last_error(ERR_TRADE_DEAL_NOT_FOUND);
    return nullptr;
}
}  // namespace mqlrt::trade
MQL_BUILTIN long HistoryDealGetInteger(ulong ticket_number, ENUM_DEAL_PROPERTY_INTEGER property_id) {
    const auto *d = mqlrt::trade::deal_in_history(ticket_number);
    if (!d) return 0;
    switch (property_id) {
        case DEAL_TICKET: return static_cast<long>(d->ticket);
        case DEAL_ORDER: return static_cast<long>(d->order);
        case DEAL_TIME: return d->time_msc / 1000;
        case DEAL_TIME_MSC: return d->time_msc;
        case DEAL_TYPE: return d->type;
        case DEAL_ENTRY: return d->entry;
        case DEAL_MAGIC: return static_cast<long>(d->magic);
        case DEAL_REASON: return d->reason;
        case DEAL_POSITION_ID: return static_cast<long>(d->position);
    }
    return 0;
}
MQL_BUILTIN double HistoryDealGetDouble(ulong ticket_number, ENUM_DEAL_PROPERTY_DOUBLE property_id) {
    const auto *d = mqlrt::trade::deal_in_history(ticket_number);
    if (!d) return 0;
    switch (property_id) {
        case DEAL_VOLUME: return d->volume;
        case DEAL_PRICE: return d->price;
        case DEAL_COMMISSION: return d->commission;
        case DEAL_SWAP: return d->swap;
        case DEAL_PROFIT: return d->profit;
        case DEAL_FEE: return d->fee;
    }
    return 0;
}
MQL_BUILTIN string HistoryDealGetString(ulong ticket_number, ENUM_DEAL_PROPERTY_STRING property_id) {
    const auto *d = mqlrt::trade::deal_in_history(ticket_number);
    if (!d) return string();
    switch (property_id) {
        case DEAL_SYMBOL: return string::from_utf8(d->symbol);
        case DEAL_COMMENT: return string::from_utf8(d->comment);
        case DEAL_EXTERNAL_ID: return string();
    }
    return string();
}

// --- account and symbols --------------------------------------------------------------------------------------
MQL_BUILTIN long AccountInfoInteger(ENUM_ACCOUNT_INFO_INTEGER property_id) {
    auto &S = mqlrt::trade::server();
    switch (property_id) {
        case ACCOUNT_LOGIN: return S.logged_in ? S.login : 0;
        case ACCOUNT_TRADE_MODE: return 0;  // demo
        case ACCOUNT_LEVERAGE: return static_cast<long>(S.leverage);
        case ACCOUNT_TRADE_ALLOWED: return S.connected;
        case ACCOUNT_TRADE_EXPERT: return S.trade_expert;
        case ACCOUNT_MARGIN_MODE: return S.margin_mode;
        case ACCOUNT_CURRENCY_DIGITS: return 2;
        default: return 0;
    }
}
MQL_BUILTIN double AccountInfoDouble(ENUM_ACCOUNT_INFO_DOUBLE property_id) {
    auto &S = mqlrt::trade::server();
    double equity = S.balance + mqlrt::trade::floating();
    double margin = mqlrt::trade::margin();
    switch (property_id) {
        case ACCOUNT_BALANCE: return S.balance;
        case ACCOUNT_PROFIT: return mqlrt::trade::floating();
        case ACCOUNT_EQUITY: return equity;
        case ACCOUNT_MARGIN: return margin;
        case ACCOUNT_MARGIN_FREE: return equity - margin;
        case ACCOUNT_MARGIN_LEVEL: return margin > 0 ? equity / margin * 100 : 0;
        default: return 0;
    }
}
MQL_BUILTIN string AccountInfoString(ENUM_ACCOUNT_INFO_STRING property_id) {
    auto &S = mqlrt::trade::server();
    switch (property_id) {
        case ACCOUNT_CURRENCY: return string::from_utf8(S.currency);
        case ACCOUNT_NAME: return "Test Account";
        case ACCOUNT_SERVER: return "hedgebridge-TestServer";
        case ACCOUNT_COMPANY: return "hedgebridge";
    }
    return string();
}
MQL_BUILTIN bool SymbolSelect(const string &name, bool select) {
    (void)select;
    if (mqlrt::trade::symbol(name.utf8()) == nullptr) {
        mqlrt::set_last_error(4301);  // ERR_MARKET_UNKNOWN_SYMBOL
        return false;
    }
    return true;
}
MQL_BUILTIN bool SymbolInfoTick(const string &symbol, MqlTick &tick) {
    const auto *s = mqlrt::trade::symbol(symbol.utf8());
    if (s == nullptr) {
        mqlrt::set_last_error(4301);
        return false;
    }
    tick = MqlTick();
    tick.bid = s->bid;
    tick.ask = s->ask;
    tick.time_msc = s->time_msc;
    tick.time = s->time_msc / 1000;
    return true;
}
MQL_BUILTIN long SymbolInfoInteger(const string &name, ENUM_SYMBOL_INFO_INTEGER prop_id) {
    const auto *s = mqlrt::trade::symbol(name.utf8());
    if (s == nullptr) {
        mqlrt::set_last_error(4301);
        return 0;
    }
    switch (prop_id) {
        case SYMBOL_SELECT: return 1;
        case SYMBOL_DIGITS: return s->digits;
        case SYMBOL_SPREAD: return static_cast<long>(std::round((s->ask - s->bid) / s->point));
        case SYMBOL_TRADE_MODE: return s->trade_mode;
        case SYMBOL_TRADE_STOPS_LEVEL: return s->stops_level;
        case SYMBOL_TRADE_FREEZE_LEVEL: return 0;
        case SYMBOL_FILLING_MODE: return s->filling;
        case SYMBOL_TIME: return s->time_msc / 1000;
    }
    return 0;
}
MQL_BUILTIN double SymbolInfoDouble(const string &name, ENUM_SYMBOL_INFO_DOUBLE prop_id) {
    const auto *s = mqlrt::trade::symbol(name.utf8());
    if (s == nullptr) {
        mqlrt::set_last_error(4301);
        return 0;
    }
    switch (prop_id) {
        case SYMBOL_BID: return s->bid;
        case SYMBOL_ASK: return s->ask;
        case SYMBOL_POINT: return s->point;
        case SYMBOL_TRADE_CONTRACT_SIZE: return s->contract;
        case SYMBOL_VOLUME_MIN: return s->vmin;
        case SYMBOL_VOLUME_MAX: return s->vmax;
        case SYMBOL_VOLUME_STEP: return s->vstep;
    }
    return 0;
}

namespace mqlrt::trade {
inline bool terminal_connected() { return server().connected; }
inline bool terminal_trade_allowed() { return server().terminal_trade_allowed; }
}  // namespace mqlrt::trade
