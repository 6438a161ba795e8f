// base.hpp - MQL5's basic types for the test runtime: string (UTF-16), dynamic arrays, the last error, the
// registry of dynamic objects behind CheckPointer, and the critical errors that stop an EA.
// Every MQL5 built-in the runtime implements is declared on one line that begins with MQL_BUILTIN.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#define MQL_BUILTIN inline

static_assert(sizeof(long) == 8, "MQL5's long is 64 bits");
typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;
typedef long datetime;  // MQL5's datetime: seconds since 1970 (Print shows the number, not a date)
typedef unsigned int color;

namespace mqlrt {

// A runtime error MQL5 treats as critical: the terminal stops the EA ("critical error" in the journal).
struct critical_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline int &last_error() {
    static int value = 0;
    return value;
}
inline void set_last_error(int code) { last_error() = code; }

std::string utf16_to_utf8(const std::u16string &s);
std::u16string utf8_to_utf16(const std::string &s);

}  // namespace mqlrt

// MQL5 string: a sequence of UTF-16 code units; comparisons by code unit.
class string {
   public:
    string() = default;
    string(const char *utf8) : s_(utf8 ? mqlrt::utf8_to_utf16(utf8) : std::u16string()) {}
    string(const char16_t *units) : s_(units ? units : u"") {}
    explicit string(std::u16string units) : s_(std::move(units)) {}
    static string from_utf8(const std::string &text) { return string(mqlrt::utf8_to_utf16(text)); }
    std::string utf8() const { return mqlrt::utf16_to_utf8(s_); }
    const char16_t *c16() const { return s_.c_str(); }
    std::u16string &u16() { return s_; }
    const std::u16string &u16() const { return s_; }
    int len() const { return static_cast<int>(s_.size()); }

    string &operator+=(const string &o) { s_ += o.s_; return *this; }
    string &operator+=(const char *o) { return *this += string(o); }
    friend string operator+(const string &a, const string &b) { return string(a.s_ + b.s_); }
    friend string operator+(const string &a, const char *b) { return a + string(b); }
    friend string operator+(const char *a, const string &b) { return string(a) + b; }
    friend bool operator==(const string &a, const string &b) { return a.s_ == b.s_; }
    friend bool operator!=(const string &a, const string &b) { return a.s_ != b.s_; }
    friend bool operator<(const string &a, const string &b) { return a.s_ < b.s_; }
    friend bool operator>(const string &a, const string &b) { return a.s_ > b.s_; }
    friend bool operator<=(const string &a, const string &b) { return a.s_ <= b.s_; }
    friend bool operator>=(const string &a, const string &b) { return a.s_ >= b.s_; }
    friend bool operator==(const string &a, const char *b) { return a == string(b); }
    friend bool operator!=(const string &a, const char *b) { return a != string(b); }

   private:
    std::u16string s_;
};

// MQL5 dynamic array. Indexing out of range is MQL5's critical error "array out of range".
namespace mqlrt {
struct fixed_t {};
constexpr fixed_t fixed{};
}  // namespace mqlrt

// MQL5 array: dynamic (`T a[]`) or static (`T a[N]`, which ArrayResize cannot change).
template <class T>
class MqlArray {
    // bool elements are stored as bytes so that a[i] is a real bool& (std::vector<bool> has no such reference)
    using Elem = typename std::conditional<std::is_same<T, bool>::value, unsigned char, T>::type;

   public:
    MqlArray() = default;
    MqlArray(mqlrt::fixed_t, int n) : v_(static_cast<size_t>(n)), fixed_(true) {}
    bool is_fixed() const { return fixed_; }
    int size() const { return static_cast<int>(v_.size()); }
    T &operator[](long i) {
        if (i < 0 || i >= static_cast<long>(v_.size())) throw mqlrt::critical_error("array out of range");
        return reinterpret_cast<T &>(v_[static_cast<size_t>(i)]);
    }
    const T &operator[](long i) const {
        if (i < 0 || i >= static_cast<long>(v_.size())) throw mqlrt::critical_error("array out of range");
        return reinterpret_cast<const T &>(v_[static_cast<size_t>(i)]);
    }
    void resize(int n, int reserve) {
        if (reserve > 0 && static_cast<size_t>(n + reserve) > v_.capacity()) v_.reserve(static_cast<size_t>(n + reserve));
        v_.resize(static_cast<size_t>(n));
    }
    T *data() { return reinterpret_cast<T *>(v_.data()); }
    const T *data() const { return reinterpret_cast<const T *>(v_.data()); }
    std::vector<Elem> &vec() { return v_; }
    const std::vector<Elem> &vec() const { return v_; }

   private:
    std::vector<Elem> v_;
    bool fixed_ = false;
};

// Dynamic objects: `new` registers, `delete` unregisters, CheckPointer asks.
enum ENUM_POINTER_TYPE { POINTER_INVALID = 0, POINTER_DYNAMIC = 1, POINTER_AUTOMATIC = 2 };

namespace mqlrt {
inline std::set<const void *> &dynamic_objects() {
    static std::set<const void *> live;
    return live;
}
template <class T>
T *dynamic(T *p) {
    dynamic_objects().insert(static_cast<const void *>(p));
    return p;
}
template <class T>
void destroy(T *p) {
    if (p == nullptr) return;
    if (dynamic_objects().erase(static_cast<const void *>(p)) == 0)
        throw critical_error("invalid pointer access (delete of an object that is not dynamic)");
    delete p;
}
}  // namespace mqlrt

template <class T> MQL_BUILTIN ENUM_POINTER_TYPE CheckPointer(T *anyobject) {
    if (anyobject == nullptr) return POINTER_INVALID;
    return mqlrt::dynamic_objects().count(static_cast<const void *>(anyobject)) ? POINTER_DYNAMIC : POINTER_AUTOMATIC;
}
inline ENUM_POINTER_TYPE CheckPointer(std::nullptr_t) { return POINTER_INVALID; }  // CheckPointer(NULL)
template <class T> MQL_BUILTIN T *GetPointer(T &anyobject) { return &anyobject; }

MQL_BUILTIN int GetLastError(void) { return mqlrt::last_error(); }
MQL_BUILTIN void ResetLastError(void) { mqlrt::last_error() = 0; }
#define _LastError (mqlrt::last_error())
#ifndef NULL
#define NULL nullptr
#endif
#define WHOLE_ARRAY (-1)
#define EMPTY_VALUE DBL_MAX
#define INVALID_HANDLE (-1)
#define CHARTS_MAX 100
#define ERR_SUCCESS 0
#define ERR_INTERNAL_ERROR 4001
#define ERR_WRONG_INTERNAL_PARAMETER 4002
#define ERR_INVALID_PARAMETER 4003
#define ERR_NOT_ENOUGH_MEMORY 4004
#define ERR_FUNCTION_NOT_ALLOWED 4014
#define ERR_TRADE_SEND_FAILED 4756
#define ERR_TRADE_POSITION_NOT_FOUND 4753
#define ERR_TRADE_DEAL_NOT_FOUND 4755
