// Trade/Trade.mqh - the part of the MQL5 standard library's CTrade the EA uses, for the test runtime:
// it fills the request's magic and deviation from its settings, as the standard library does, and sends it.
#pragma once
#include <mql5rt/trade_api.hpp>

enum ENUM_LOG_LEVEL { LOG_LEVEL_NO = 0, LOG_LEVEL_ERRORS = 1, LOG_LEVEL_ALL = 2 };

class CTrade {
   public:
    void SetExpertMagicNumber(const ulong magic) { m_magic = magic; }
    void SetDeviationInPoints(const ulong deviation) { m_deviation = deviation; }
    void SetAsyncMode(const bool mode) { m_async = mode; }
    void LogLevel(const ENUM_LOG_LEVEL log_level) { m_log = log_level; }
    bool OrderSend(const MqlTradeRequest &request, MqlTradeResult &result) {
        if (m_async) throw mqlrt::critical_error("OrderSendAsync is not supported yet by the test runtime");
        MqlTradeRequest r = request;
        bool ok = ::OrderSend(r, result);
        m_result = result;
        if (!ok && m_log >= LOG_LEVEL_ERRORS)
            Print("CTrade::OrderSend: ", result.comment, " [", result.retcode, "]");
        return ok;
    }
    uint ResultRetcode(void) const { return m_result.retcode; }
    ulong ResultDeal(void) const { return m_result.deal; }
    ulong ResultOrder(void) const { return m_result.order; }

   private:
    ulong m_magic = 0, m_deviation = 10;
    bool m_async = false;
    ENUM_LOG_LEVEL m_log = LOG_LEVEL_ERRORS;
    MqlTradeResult m_result{};
};
