//+------------------------------------------------------------------+
//| Json.mqh - a small JSON reader and writer for the hedgebridge EA |
//+------------------------------------------------------------------+
// CJsonValue holds a parsed document (objects, arrays, strings, numbers, true/false/null);
// CJsonParser reads UTF-16 text (MQL5 strings) into it; CJsonWriter builds compact JSON text.
// Enough for the protocol's frames: no comments, no trailing commas, nesting limited to 64 levels.
#ifndef HEDGEBRIDGE_JSON_MQH
#define HEDGEBRIDGE_JSON_MQH

enum ENUM_HB_JSON_TYPE
  {
   HB_JSON_NULL,
   HB_JSON_BOOL,
   HB_JSON_NUMBER,
   HB_JSON_STRING,
   HB_JSON_ARRAY,
   HB_JSON_OBJECT
  };

//+------------------------------------------------------------------+
//| One JSON value; an object's or array's members are owned by it   |
//+------------------------------------------------------------------+
class CJsonValue
  {
public:
   ENUM_HB_JSON_TYPE m_type;
   string            m_key;      // member name, when inside an object
   string            m_text;     // a string's value, or a number's literal text
   double            m_number;
   bool              m_bool;
   CJsonValue       *m_items[];

                     CJsonValue(void) : m_type(HB_JSON_NULL), m_number(0.0), m_bool(false) {}
                    ~CJsonValue(void) { Clear(); }

   void              Clear(void)
     {
      for(int i = 0; i < ArraySize(m_items); i++)
         if(CheckPointer(m_items[i]) == POINTER_DYNAMIC)
            delete m_items[i];
      ArrayResize(m_items, 0);
     }

   void              Add(CJsonValue *item)
     {
      int n = ArraySize(m_items);
      ArrayResize(m_items, n + 1, 16);
      m_items[n] = item;
     }

   int               Size(void) { return(ArraySize(m_items)); }

   CJsonValue       *At(const int index)
     {
      if(index < 0 || index >= ArraySize(m_items))
         return(NULL);
      return(m_items[index]);
     }

   // the member named key of an object (NULL when absent or when this is not an object)
   CJsonValue       *Get(const string key)
     {
      if(m_type != HB_JSON_OBJECT)
         return(NULL);
      for(int i = 0; i < ArraySize(m_items); i++)
         if(m_items[i].m_key == key)
            return(m_items[i]);
      return(NULL);
     }

   bool              Has(const string key)
     {
      CJsonValue *v = Get(key);
      return(v != NULL && v.m_type != HB_JSON_NULL);
     }

   bool              IsString(const string key)
     {
      CJsonValue *v = Get(key);
      return(v != NULL && v.m_type == HB_JSON_STRING);
     }

   bool              IsNumber(const string key)
     {
      CJsonValue *v = Get(key);
      return(v != NULL && v.m_type == HB_JSON_NUMBER);
     }

   string            GetString(const string key, const string fallback = "")
     {
      CJsonValue *v = Get(key);
      if(v == NULL || v.m_type != HB_JSON_STRING)
         return(fallback);
      return(v.m_text);
     }

   double            GetDouble(const string key, const double fallback = 0.0)
     {
      CJsonValue *v = Get(key);
      if(v == NULL || v.m_type != HB_JSON_NUMBER)
         return(fallback);
      return(v.m_number);
     }

   long              GetLong(const string key, const long fallback = 0)
     {
      CJsonValue *v = Get(key);
      if(v == NULL || v.m_type != HB_JSON_NUMBER)
         return(fallback);
      return(StringToInteger(v.m_text));
     }

   bool              GetBool(const string key, const bool fallback = false)
     {
      CJsonValue *v = Get(key);
      if(v == NULL || v.m_type != HB_JSON_BOOL)
         return(fallback);
      return(v.m_bool);
     }
  };

//+------------------------------------------------------------------+
//| Reads JSON text into a CJsonValue tree                           |
//+------------------------------------------------------------------+
class CJsonParser
  {
private:
   string            m_src;
   int               m_pos;
   int               m_len;
   int               m_depth;
   string            m_error;

   ushort            Peek(void) { return(m_pos < m_len ? StringGetCharacter(m_src, m_pos) : (ushort)0); }

   void              SkipSpace(void)
     {
      while(m_pos < m_len)
        {
         ushort c = StringGetCharacter(m_src, m_pos);
         if(c != ' ' && c != '\t' && c != '\r' && c != '\n')
            break;
         m_pos++;
        }
     }

   bool              Fail(const string what)
     {
      if(m_error == "")
         m_error = StringFormat("%s at offset %d", what, m_pos);
      return(false);
     }

   int               HexDigit(const ushort c)
     {
      if(c >= '0' && c <= '9')
         return(c - '0');
      if(c >= 'a' && c <= 'f')
         return(c - 'a' + 10);
      if(c >= 'A' && c <= 'F')
         return(c - 'A' + 10);
      return(-1);
     }

   bool              ReadString(string &out)
     {
      out = "";
      m_pos++; // opening quote
      int run = m_pos;
      while(m_pos < m_len)
        {
         ushort c = StringGetCharacter(m_src, m_pos);
         if(c == '"')
           {
            out += StringSubstr(m_src, run, m_pos - run);
            m_pos++;
            return(true);
           }
         if(c < 0x20)
            return(Fail("control character in a string"));
         if(c != '\\')
           {
            m_pos++;
            continue;
           }
         out += StringSubstr(m_src, run, m_pos - run);
         m_pos++;
         if(m_pos >= m_len)
            break;
         ushort e = StringGetCharacter(m_src, m_pos);
         m_pos++;
         switch(e)
           {
            case '"':
               out += "\"";
               break;
            case '\\':
               out += "\\";
               break;
            case '/':
               out += "/";
               break;
            case 'b':
               out += ShortToString(8);
               break;
            case 'f':
               out += ShortToString(12);
               break;
            case 'n':
               out += "\n";
               break;
            case 'r':
               out += "\r";
               break;
            case 't':
               out += "\t";
               break;
            case 'u':
              {
               if(m_pos + 4 > m_len)
                  return(Fail("short \\u escape"));
               int code = 0;
               for(int i = 0; i < 4; i++)
                 {
                  int d = HexDigit(StringGetCharacter(m_src, m_pos + i));
                  if(d < 0)
                     return(Fail("bad \\u escape"));
                  code = code * 16 + d;
                 }
               m_pos += 4;
               out += ShortToString((ushort)code); // UTF-16 code unit; surrogate pairs arrive as two
               break;
              }
            default:
               return(Fail("bad escape"));
           }
         run = m_pos;
        }
      return(Fail("unterminated string"));
     }

   bool              ReadNumber(CJsonValue *v)
     {
      int start = m_pos;
      while(m_pos < m_len)
        {
         ushort c = StringGetCharacter(m_src, m_pos);
         if((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')
            m_pos++;
         else
            break;
        }
      if(m_pos == start)
         return(Fail("expected a value"));
      v.m_type = HB_JSON_NUMBER;
      v.m_text = StringSubstr(m_src, start, m_pos - start);
      v.m_number = StringToDouble(v.m_text);
      return(true);
     }

   bool              ReadWord(const string word)
     {
      if(StringSubstr(m_src, m_pos, StringLen(word)) != word)
         return(Fail("expected a value"));
      m_pos += StringLen(word);
      return(true);
     }

   bool              ReadValue(CJsonValue *v)
     {
      SkipSpace();
      if(m_pos >= m_len)
         return(Fail("unexpected end"));
      ushort c = Peek();
      if(c == '{')
         return(ReadObject(v));
      if(c == '[')
         return(ReadArray(v));
      if(c == '"')
        {
         string text;
         bool ok = ReadString(text);
         v.m_type = HB_JSON_STRING;
         v.m_text = text;
         return(ok);
        }
      if(c == 't')
        {
         v.m_type = HB_JSON_BOOL;
         v.m_bool = true;
         return(ReadWord("true"));
        }
      if(c == 'f')
        {
         v.m_type = HB_JSON_BOOL;
         v.m_bool = false;
         return(ReadWord("false"));
        }
      if(c == 'n')
        {
         v.m_type = HB_JSON_NULL;
         return(ReadWord("null"));
        }
      return(ReadNumber(v));
     }

   bool              ReadObject(CJsonValue *v)
     {
      if(++m_depth > 64)
         return(Fail("nested too deeply"));
      v.m_type = HB_JSON_OBJECT;
      m_pos++;
      SkipSpace();
      if(Peek() == '}')
        {
         m_pos++;
         m_depth--;
         return(true);
        }
      while(true)
        {
         SkipSpace();
         if(Peek() != '"')
            return(Fail("expected a member name"));
         string key;
         if(!ReadString(key))
            return(false);
         SkipSpace();
         if(Peek() != ':')
            return(Fail("expected ':'"));
         m_pos++;
         CJsonValue *item = new CJsonValue();
         item.m_key = key;
         v.Add(item);
         if(!ReadValue(item))
            return(false);
         SkipSpace();
         ushort c = Peek();
         m_pos++;
         if(c == '}')
            break;
         if(c != ',')
            return(Fail("expected ',' or '}'"));
        }
      m_depth--;
      return(true);
     }

   bool              ReadArray(CJsonValue *v)
     {
      if(++m_depth > 64)
         return(Fail("nested too deeply"));
      v.m_type = HB_JSON_ARRAY;
      m_pos++;
      SkipSpace();
      if(Peek() == ']')
        {
         m_pos++;
         m_depth--;
         return(true);
        }
      while(true)
        {
         CJsonValue *item = new CJsonValue();
         v.Add(item);
         if(!ReadValue(item))
            return(false);
         SkipSpace();
         ushort c = Peek();
         m_pos++;
         if(c == ']')
            break;
         if(c != ',')
            return(Fail("expected ',' or ']'"));
        }
      m_depth--;
      return(true);
     }

public:
   // Parse text; returns a new value the caller deletes, or NULL with the reason in error.
   CJsonValue       *Parse(const string text, string &error)
     {
      m_src = text;
      m_pos = 0;
      m_len = StringLen(text);
      m_depth = 0;
      m_error = "";
      CJsonValue *root = new CJsonValue();
      bool ok = ReadValue(root);
      if(ok)
        {
         SkipSpace();
         if(m_pos != m_len)
            ok = Fail("text after the value");
        }
      if(!ok)
        {
         delete root;
         error = m_error;
         return(NULL);
        }
      error = "";
      return(root);
     }
  };

//+------------------------------------------------------------------+
//| JSON text helpers                                                |
//+------------------------------------------------------------------+
string HbJsonQuote(const string s)
  {
   string out = "\"";
   int n = StringLen(s);
   int run = 0;
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(s, i);
      if(c >= 0x20 && c != '"' && c != '\\')
         continue;
      out += StringSubstr(s, run, i - run);
      if(c == '"')
         out += "\\\"";
      else
         if(c == '\\')
            out += "\\\\";
         else
            if(c == '\n')
               out += "\\n";
            else
               if(c == '\r')
                  out += "\\r";
               else
                  if(c == '\t')
                     out += "\\t";
                  else
                     out += StringFormat("\\u%04x", c);
      run = i + 1;
     }
   out += StringSubstr(s, run, n - run);
   return(out + "\"");
  }

// A number with at most `digits` decimals, trailing zeros removed; "null" for NaN and infinities.
string HbJsonNumber(const double value, const int digits)
  {
   if(!MathIsValidNumber(value))
      return("null");
   string s = DoubleToString(value, digits);
   if(StringFind(s, ".") >= 0)
     {
      int end = StringLen(s);
      while(end > 0 && StringGetCharacter(s, end - 1) == '0')
         end--;
      if(end > 0 && StringGetCharacter(s, end - 1) == '.')
         end--;
      s = StringSubstr(s, 0, end);
     }
   if(s == "-0")
      s = "0";
   return(s);
  }

//+------------------------------------------------------------------+
//| Builds compact JSON text member by member                        |
//+------------------------------------------------------------------+
class CJsonWriter
  {
private:
   string            m_out;
   bool              m_first[];  // per open container: nothing written into it yet
   int               m_depth;

   void              Separate(void)
     {
      if(m_depth == 0)
         return;
      if(!m_first[m_depth - 1])
         m_out += ",";
      m_first[m_depth - 1] = false;
     }

   void              Key(const string key)
     {
      Separate();
      m_out += HbJsonQuote(key) + ":";
     }

   void              Open(const string bracket)
     {
      m_out += bracket;
      ArrayResize(m_first, m_depth + 1, 8);
      m_first[m_depth] = true;
      m_depth++;
     }

   void              Close(const string bracket)
     {
      m_out += bracket;
      if(m_depth > 0)
         m_depth--;
     }

public:
                     CJsonWriter(void) : m_depth(0) { m_out = ""; }

   void              Reset(void) { m_out = ""; m_depth = 0; }
   string            Text(void) { return(m_out); }

   // a container as an array element or the document itself
   void              BeginObject(void) { Separate(); Open("{"); }
   void              BeginArray(void) { Separate(); Open("["); }
   // a container as the member `key` of the current object
   void              BeginObject(const string key) { Key(key); Open("{"); }
   void              BeginArray(const string key) { Key(key); Open("["); }
   void              EndObject(void) { Close("}"); }
   void              EndArray(void) { Close("]"); }

   void              Str(const string key, const string value) { Key(key); m_out += HbJsonQuote(value); }
   void              Num(const string key, const double value, const int digits) { Key(key); m_out += HbJsonNumber(value, digits); }
   void              Int(const string key, const long value) { Key(key); m_out += IntegerToString(value); }
   void              Bool(const string key, const bool value) { Key(key); m_out += (value ? "true" : "false"); }
   void              Null(const string key) { Key(key); m_out += "null"; }
   // a string as an element of the current array
   void              Item(const string value) { Separate(); m_out += HbJsonQuote(value); }
   // a value already in JSON form
   void              Raw(const string key, const string json) { Key(key); m_out += json; }
  };

//+------------------------------------------------------------------+
//| Timestamps: ISO 8601 / RFC 3339 in UTC                           |
//+------------------------------------------------------------------+
string HbIsoTime(const datetime utc, const int milliseconds = 0)
  {
   MqlDateTime t;
   TimeToStruct(utc, t);
   return(StringFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.year, t.mon, t.day, t.hour, t.min, t.sec,
                       milliseconds % 1000));
  }

string HbNowIso(void)
  {
   return(HbIsoTime(TimeGMT()));
  }

// Seconds to add to trade server time to get UTC (server time zones are whole quarters of an hour).
long HbServerToUtcOffset(void)
  {
   long diff = (long)TimeGMT() - (long)TimeTradeServer();
   return((long)MathRound(diff / 900.0) * 900);
  }

// A trade server time in milliseconds (POSITION_TIME_MSC, MqlTick.time_msc) as UTC ISO text.
string HbServerMscToIso(const long serverMsc)
  {
   long utcMsc = serverMsc + HbServerToUtcOffset() * 1000;
   return(HbIsoTime((datetime)(utcMsc / 1000), (int)(utcMsc % 1000)));
  }

#endif // HEDGEBRIDGE_JSON_MQH
