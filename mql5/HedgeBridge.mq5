//+------------------------------------------------------------------+
//| HedgeBridge.mq5                                                  |
//| The terminal side of the hedge line protocol (docs/protocol.md). |
//|                                                                  |
//| MQL5 can only open outgoing sockets, so this Expert Advisor      |
//| connects to the agent, says hello, sends the symbols and a full  |
//| snapshot, pushes every trade transaction as it happens, and      |
//| executes the agent's commands, each cmd_id at most once.         |
//|                                                                  |
//| Layout: one function per protocol message, in the order of the   |
//| document: Send*() for what the terminal emits, Cmd*() for each   |
//| command op; HandleLine() routes an incoming line. The mapping    |
//| table in mql5/README.md lists them with their conformance tests. |
//+------------------------------------------------------------------+
#property copyright   "hedge"
#property version     "1.00"
#property description "Connects this terminal to a hedge agent over the hedge line protocol."

//--- inputs (the launcher writes them to a .set file)
input string InpAgentHost    = "127.0.0.1"; // Agent host
input int    InpAgentPort    = 7001;        // Agent port
input int    InpHeartbeatSec = 5;           // Heartbeat period, seconds
input int    InpSnapshotSec  = 60;          // Periodic snapshot period, seconds
input int    InpPollMs       = 1;           // Command poll period, milliseconds
input int    InpLogLevel     = 1;           // Log level: 0 errors, 1 info, 2 debug

#define EA_VERSION        "1.0.0"
#define PROTOCOL_VERSION  1
#define MAX_LINE          1048576   // longest accepted line, bytes (the protocol's limit)
#define RING_SIZE         1024      // trading commands remembered for at-most-once execution
#define ASYNC_RING_SIZE   256       // OrderSendAsync request ids remembered for tx REQUEST
#define DEFAULT_PAGE_SIZE 500
#define MAX_PAGE_SIZE     2000
#define CONNECT_TIMEOUT   500       // ms; SocketConnect blocks at most this long
#define SEND_TIMEOUT      2000      // ms per SocketSend
#define MAX_LINES_PER_TICK 64       // lines handled per timer tick, so the terminal stays responsive
#define BACKOFF_MIN_MS    500
#define BACKOFF_MAX_MS    10000

//--- retcodes used for commands that are not trade requests
#define RC_DONE    10009
#define RC_ERROR   10011
#define RC_INVALID 10013
#define MAX_CMD_ID 128            // bytes
#define MAX_DATETIME 32535215999  // 3000.12.31 23:59:59, the largest datetime

//--- functions used before their definition
void   SendHello();
void   SendSymbols();
void   SendSnapshot(string cmd_id);
void   SendError(string code, string message, string cmd_id);
string PositionRecordField(const MqlTradeTransaction &trans);
bool   HasNewline();
void   ScheduleReconnect();
void   RingLoad();

//+------------------------------------------------------------------+
//| Connection state                                                 |
//+------------------------------------------------------------------+
int    g_socket      = INVALID_HANDLE;
bool   g_connected   = false;
ulong  g_seq         = 0;           // seq of the last message sent on this connection
uchar  g_rx[];                      // received bytes not yet framed into a line
int    g_rx_len      = 0;
bool   g_skipping    = false;       // discarding the rest of an oversized line
uint   g_next_attempt = 0;          // GetTickCount() of the next connect attempt
uint   g_backoff     = BACKOFF_MIN_MS;
uint   g_last_sent   = 0;
uint   g_last_snapshot = 0;

//--- at-most-once ring: cmd_id -> the body of its first reply
string g_ring_ids[RING_SIZE];
string g_ring_replies[RING_SIZE];   // "" while the command is executing
int    g_ring_next = 0;

//--- OrderSendAsync request_id -> cmd_id, so the REQUEST transaction names its command
uint   g_async_ids[ASYNC_RING_SIZE];
string g_async_cmds[ASYNC_RING_SIZE];
int    g_async_next = 0;

//+------------------------------------------------------------------+
//| Logging                                                          |
//+------------------------------------------------------------------+
void LogError(string text) { Print("HedgeBridge: ", text); }
void LogInfo(string text)  { if(InpLogLevel >= 1) Print("HedgeBridge: ", text); }
void LogDebug(string text) { if(InpLogLevel >= 2) Print("HedgeBridge: ", text); }

//+------------------------------------------------------------------+
//| JSON writing                                                     |
//+------------------------------------------------------------------+
// A JSON string literal. Quotes, backslashes and control characters are escaped; everything else,
// non-ASCII included, is kept and becomes UTF-8 when the line is sent.
string JStr(string s)
  {
   string out = "\"";
   int n = StringLen(s);
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(s, i);
      if(c == '"')
         out += "\\\"";
      else if(c == '\\')
         out += "\\\\";
      else if(c == '\n')
         out += "\\n";
      else if(c == '\r')
         out += "\\r";
      else if(c == '\t')
         out += "\\t";
      else if(c < 0x20)
         out += StringFormat("\\u%04X", c);
      else
         out += ShortToString(c);
     }
   return out + "\"";
  }

// A decimal number with at most `digits` decimals and no trailing zeros (0.10000000 -> 0.1), the
// shortest exact form of what MT5 holds as a double.
string JNum(double v, int digits)
  {
   if(!MathIsValidNumber(v))
      return "0";
   if(digits < 0)
      digits = 0;
   if(digits > 12)
      digits = 12;
   string s = DoubleToString(v, digits);
   if(StringFind(s, ".") >= 0)
     {
      int n = StringLen(s);
      while(n > 0 && StringGetCharacter(s, n - 1) == '0')
         n--;
      if(n > 0 && StringGetCharacter(s, n - 1) == '.')
         n--;
      s = StringSubstr(s, 0, n);
     }
   if(s == "-0")
      s = "0";
   return s;
  }

string JVol(double v)   { return JNum(v, 8); }
string JMoney(double v) { return JNum(v, 8); }
string JInt(long v)     { return IntegerToString(v); }
string JBool(bool v)    { return v ? "true" : "false"; }
string JKey(string k)   { return "\"" + k + "\":"; }

// Price digits of a symbol (8 when the symbol is unknown).
int PriceDigits(string symbol)
  {
   long d = 0;
   if(symbol != "" && SymbolInfoInteger(symbol, SYMBOL_DIGITS, d))
      return (int)d;
   return 8;
  }

string JPrice(double v, string symbol) { return JNum(v, PriceDigits(symbol)); }

// Milliseconds since the Unix epoch, UTC.
long NowMs() { return (long)TimeGMT() * 1000; }

// MT5 stamps orders, deals, positions and ticks with the trade server's clock; the protocol speaks
// UTC. The server's offset is the difference of TimeTradeServer() and TimeGMT(), rounded to 15
// minutes (every time zone is a multiple of it) so that clock jitter never moves it.
long g_server_offset_ms = 0;

void UpdateServerOffset()
  {
   long diff = (long)(TimeTradeServer() - TimeGMT());
   long quarters = (long)MathRound((double)diff / 900.0);
   g_server_offset_ms = quarters * 900 * 1000;
  }

// A server-clock time in ms as UTC ms; 0 (unset) stays 0.
long Utc(long server_ms) { return server_ms > 0 ? server_ms - g_server_offset_ms : 0; }

// A server-clock datetime (seconds) as UTC ms; 0 stays 0.
long UtcSec(long server_sec) { return server_sec > 0 ? server_sec * 1000 - g_server_offset_ms : 0; }

//+------------------------------------------------------------------+
//| JSON reading: one flat object of strings, numbers, bools, nulls. |
//| The protocol's agent messages are flat; a nested value is kept   |
//| as raw text so that an unexpected one never breaks the parse.    |
//+------------------------------------------------------------------+
#define JK_STRING 0
#define JK_NUMBER 1
#define JK_BOOL   2
#define JK_NULL   3
#define JK_RAW    4

string g_jkeys[];
string g_jvals[];
int    g_jkinds[];
int    g_jcount = 0;
string g_jerror = "";

void JSkipWs(const string &s, int &i, int n)
  {
   while(i < n)
     {
      ushort c = StringGetCharacter(s, i);
      if(c != ' ' && c != '\t' && c != '\r' && c != '\n')
         break;
      i++;
     }
  }

int JHexDigit(ushort c)
  {
   if(c >= '0' && c <= '9')
      return c - '0';
   if(c >= 'a' && c <= 'f')
      return c - 'a' + 10;
   if(c >= 'A' && c <= 'F')
      return c - 'A' + 10;
   return -1;
  }

// Reads a string literal starting at the opening quote; false on a malformed one.
bool JReadString(const string &s, int &i, int n, string &out)
  {
   out = "";
   if(i >= n || StringGetCharacter(s, i) != '"')
      return false;
   i++;
   while(i < n)
     {
      ushort c = StringGetCharacter(s, i);
      if(c == '"')
        {
         i++;
         return true;
        }
      if(c < 0x20)
         return false;
      if(c != '\\')
        {
         out += ShortToString(c);
         i++;
         continue;
        }
      if(i + 1 >= n)
         return false;
      ushort e = StringGetCharacter(s, i + 1);
      i += 2;
      if(e == '"')
         out += "\"";
      else if(e == '\\')
         out += "\\";
      else if(e == '/')
         out += "/";
      else if(e == 'b')
         out += ShortToString(8);
      else if(e == 'f')
         out += ShortToString(12);
      else if(e == 'n')
         out += "\n";
      else if(e == 'r')
         out += "\r";
      else if(e == 't')
         out += "\t";
      else if(e == 'u')
        {
         if(i + 4 > n)
            return false;
         int code = 0;
         for(int k = 0; k < 4; k++)
           {
            int h = JHexDigit(StringGetCharacter(s, i + k));
            if(h < 0)
               return false;
            code = code * 16 + h;
           }
         i += 4;
         // A surrogate pair arrives as two escapes; MQL5 strings are UTF-16, so each unit is kept.
         out += ShortToString((ushort)code);
        }
      else
         return false;
     }
   return false;
  }

// Skips a nested object or array, honouring strings; false when it does not close.
bool JSkipNested(const string &s, int &i, int n)
  {
   int depth = 0;
   while(i < n)
     {
      ushort c = StringGetCharacter(s, i);
      if(c == '"')
        {
         string ignored;
         if(!JReadString(s, i, n, ignored))
            return false;
         continue;
        }
      if(c == '{' || c == '[')
         depth++;
      else if(c == '}' || c == ']')
        {
         depth--;
         if(depth == 0)
           {
            i++;
            return true;
           }
        }
      i++;
     }
   return false;
  }

void JAdd(string key, string value, int kind)
  {
   // A repeated key keeps its last value, as serde_json does for the agent's own parser.
   for(int k = 0; k < g_jcount; k++)
      if(g_jkeys[k] == key)
        {
         g_jvals[k] = value;
         g_jkinds[k] = kind;
         return;
        }
   if(g_jcount >= ArraySize(g_jkeys))
     {
      ArrayResize(g_jkeys, g_jcount + 16);
      ArrayResize(g_jvals, g_jcount + 16);
      ArrayResize(g_jkinds, g_jcount + 16);
     }
   g_jkeys[g_jcount] = key;
   g_jvals[g_jcount] = value;
   g_jkinds[g_jcount] = kind;
   g_jcount++;
  }

// Parses one JSON object into g_jkeys/g_jvals/g_jkinds; on failure g_jerror says why.
bool JParse(const string &s)
  {
   g_jcount = 0;
   g_jerror = "";
   int n = StringLen(s);
   int i = 0;
   JSkipWs(s, i, n);
   if(i >= n || StringGetCharacter(s, i) != '{')
     {
      g_jerror = "not a JSON object";
      return false;
     }
   i++;
   JSkipWs(s, i, n);
   if(i < n && StringGetCharacter(s, i) == '}')
     {
      i++;
      JSkipWs(s, i, n);
      if(i != n)
        {
         g_jerror = "text after the object";
         return false;
        }
      return true;
     }
   while(true)
     {
      JSkipWs(s, i, n);
      string key;
      if(!JReadString(s, i, n, key))
        {
         g_jerror = "bad key";
         return false;
        }
      JSkipWs(s, i, n);
      if(i >= n || StringGetCharacter(s, i) != ':')
        {
         g_jerror = "missing ':'";
         return false;
        }
      i++;
      JSkipWs(s, i, n);
      if(i >= n)
        {
         g_jerror = "missing value";
         return false;
        }
      ushort c = StringGetCharacter(s, i);
      if(c == '"')
        {
         string v;
         if(!JReadString(s, i, n, v))
           {
            g_jerror = "bad string value for " + key;
            return false;
           }
         JAdd(key, v, JK_STRING);
        }
      else if(c == '{' || c == '[')
        {
         int start = i;
         if(!JSkipNested(s, i, n))
           {
            g_jerror = "unclosed value for " + key;
            return false;
           }
         JAdd(key, StringSubstr(s, start, i - start), JK_RAW);
        }
      else if(StringSubstr(s, i, 4) == "true")
        {
         i += 4;
         JAdd(key, "true", JK_BOOL);
        }
      else if(StringSubstr(s, i, 5) == "false")
        {
         i += 5;
         JAdd(key, "false", JK_BOOL);
        }
      else if(StringSubstr(s, i, 4) == "null")
        {
         i += 4;
         JAdd(key, "", JK_NULL);
        }
      else
        {
         int start = i;
         while(i < n)
           {
            ushort d = StringGetCharacter(s, i);
            if((d >= '0' && d <= '9') || d == '-' || d == '+' || d == '.' || d == 'e' || d == 'E')
               i++;
            else
               break;
           }
         if(i == start)
           {
            g_jerror = "bad value for " + key;
            return false;
           }
         JAdd(key, StringSubstr(s, start, i - start), JK_NUMBER);
        }
      JSkipWs(s, i, n);
      if(i >= n)
        {
         g_jerror = "unterminated object";
         return false;
        }
      c = StringGetCharacter(s, i);
      i++;
      if(c == '}')
         break;
      if(c != ',')
        {
         g_jerror = "expected ',' or '}'";
         return false;
        }
     }
   JSkipWs(s, i, n);
   if(i != n)
     {
      g_jerror = "text after the object";
      return false;
     }
   return true;
  }

int JFind(string key)
  {
   for(int k = 0; k < g_jcount; k++)
      if(g_jkeys[k] == key)
         return k;
   return -1;
  }

bool JHas(string key) { int k = JFind(key); return k >= 0 && g_jkinds[k] != JK_NULL; }

string JGetStr(string key, string def)
  {
   int k = JFind(key);
   if(k < 0 || g_jkinds[k] != JK_STRING)
      return def;
   return g_jvals[k];
  }

// A number, or a decimal written as a string ("0.1"), as the protocol allows for quantities.
double JGetNum(string key, double def)
  {
   int k = JFind(key);
   if(k < 0)
      return def;
   if(g_jkinds[k] == JK_NUMBER || g_jkinds[k] == JK_STRING)
      return StringToDouble(g_jvals[k]);
   return def;
  }

long JGetLong(string key, long def)
  {
   int k = JFind(key);
   if(k < 0)
      return def;
   if(g_jkinds[k] == JK_NUMBER || g_jkinds[k] == JK_STRING)
      return StringToInteger(g_jvals[k]);
   return def;
  }

bool JGetBool(string key, bool def)
  {
   int k = JFind(key);
   if(k < 0 || g_jkinds[k] != JK_BOOL)
      return def;
   return g_jvals[k] == "true";
  }

// Whether text is a plain or scientific decimal number ("0.1", "-3", "1e-7").
bool JLooksNumeric(string v)
  {
   int n = StringLen(v);
   bool digit = false;
   for(int i = 0; i < n; i++)
     {
      ushort c = StringGetCharacter(v, i);
      if(c >= '0' && c <= '9')
         digit = true;
      else if(c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E')
         return false;
     }
   return digit;
  }

// Whether a numeric field holds a valid non-negative number (or is absent).
bool JNonNegative(string key)
  {
   int k = JFind(key);
   if(k < 0 || g_jkinds[k] == JK_NULL)
      return true;
   if(g_jkinds[k] != JK_NUMBER && g_jkinds[k] != JK_STRING)
      return false;
   if(!JLooksNumeric(g_jvals[k]))
      return false;
   return StringToDouble(g_jvals[k]) >= 0.0;
  }

//+------------------------------------------------------------------+
//| Connection                                                       |
//+------------------------------------------------------------------+
void Disconnect(string why)
  {
   if(g_socket != INVALID_HANDLE)
      SocketClose(g_socket);
   if(g_connected)
      LogInfo("disconnected from " + InpAgentHost + ":" + IntegerToString(InpAgentPort) + ": " + why);
   g_socket = INVALID_HANDLE;
   g_connected = false;
   g_rx_len = 0;
   g_skipping = false;
   ScheduleReconnect();
  }

// The next connect attempt waits twice as long as the last, up to BACKOFF_MAX_MS.
void ScheduleReconnect()
  {
   g_next_attempt = GetTickCount() + g_backoff;
   g_backoff = (g_backoff * 2 > BACKOFF_MAX_MS) ? BACKOFF_MAX_MS : g_backoff * 2;
  }

// Opens the connection and sends the handshake: hello, symbols, snapshot.
bool Connect()
  {
   g_socket = SocketCreate();
   if(g_socket == INVALID_HANDLE)
     {
      LogError("SocketCreate failed, error " + IntegerToString(GetLastError()));
      ScheduleReconnect();
      return false;
     }
   if(!SocketConnect(g_socket, InpAgentHost, (uint)InpAgentPort, CONNECT_TIMEOUT))
     {
      int err = GetLastError();
      // 4014: the address is not in Tools > Options > Expert Advisors > allowed URLs.
      LogError("SocketConnect to " + InpAgentHost + ":" + IntegerToString(InpAgentPort) +
               " failed, error " + IntegerToString(err) +
               (err == 4014 ? " (add the address to Tools > Options > Expert Advisors > Allow WebRequest for listed URL)" : ""));
      SocketClose(g_socket);
      g_socket = INVALID_HANDLE;
      ScheduleReconnect();
      return false;
     }
   SocketTimeouts(g_socket, SEND_TIMEOUT, 1);
   RingLoad();
   UpdateServerOffset();
   g_connected = true;
   g_seq = 0;
   g_rx_len = 0;
   g_skipping = false;
   LogInfo("connected to " + InpAgentHost + ":" + IntegerToString(InpAgentPort));
   SendHello();
   SendSymbols();
   SendSnapshot("");
   if(g_connected)
      g_backoff = BACKOFF_MIN_MS;
   return g_connected;
  }

// Sends one message: the envelope `{"type":..,"seq":..,` + body + `}` and a newline, as UTF-8.
bool WriteMessage(string kind, string body)
  {
   if(!g_connected)
      return false;
   g_seq++;
   string line = "{\"type\":" + JStr(kind) + ",\"seq\":" + IntegerToString((long)g_seq);
   if(body != "")
      line += "," + body;
   line += "}\n";
   uchar bytes[];
   int len = StringToCharArray(line, bytes, 0, WHOLE_ARRAY, CP_UTF8);
   // StringToCharArray copies the terminating zero too; it is not sent.
   if(len > 0 && bytes[len - 1] == 0)
      len--;
   int sent = 0;
   while(sent < len)
     {
      uchar part[];
      int chunk = len - sent;
      ArrayCopy(part, bytes, 0, sent, chunk);
      int n = SocketSend(g_socket, part, (uint)chunk);
      if(n <= 0)
        {
         Disconnect("send failed, error " + IntegerToString(GetLastError()));
         return false;
        }
      sent += n;
     }
   g_last_sent = GetTickCount();
   LogDebug("sent " + kind + " #" + IntegerToString((long)g_seq));
   return true;
  }

//+------------------------------------------------------------------+
//| Records (the fields of MT5's own exports)                        |
//+------------------------------------------------------------------+
string AccountJson()
  {
   return JKey("login") + JInt(AccountInfoInteger(ACCOUNT_LOGIN)) +
          "," + JKey("currency") + JStr(AccountInfoString(ACCOUNT_CURRENCY)) +
          "," + JKey("margin_mode") + JInt(AccountInfoInteger(ACCOUNT_MARGIN_MODE)) +
          "," + JKey("leverage") + JInt(AccountInfoInteger(ACCOUNT_LEVERAGE)) +
          "," + JKey("balance") + JMoney(AccountInfoDouble(ACCOUNT_BALANCE)) +
          "," + JKey("credit") + JMoney(AccountInfoDouble(ACCOUNT_CREDIT)) +
          "," + JKey("equity") + JMoney(AccountInfoDouble(ACCOUNT_EQUITY)) +
          "," + JKey("profit") + JMoney(AccountInfoDouble(ACCOUNT_PROFIT)) +
          "," + JKey("margin") + JMoney(AccountInfoDouble(ACCOUNT_MARGIN)) +
          "," + JKey("margin_free") + JMoney(AccountInfoDouble(ACCOUNT_MARGIN_FREE));
  }

// The position selected with PositionSelectByTicket / PositionGetTicket.
string PositionJson()
  {
   string sym = PositionGetString(POSITION_SYMBOL);
   return "{" + JKey("ticket") + JInt(PositionGetInteger(POSITION_TICKET)) +
          "," + JKey("identifier") + JInt(PositionGetInteger(POSITION_IDENTIFIER)) +
          "," + JKey("symbol") + JStr(sym) +
          "," + JKey("type") + JInt(PositionGetInteger(POSITION_TYPE)) +
          "," + JKey("volume") + JVol(PositionGetDouble(POSITION_VOLUME)) +
          "," + JKey("price_open") + JPrice(PositionGetDouble(POSITION_PRICE_OPEN), sym) +
          "," + JKey("price_current") + JPrice(PositionGetDouble(POSITION_PRICE_CURRENT), sym) +
          "," + JKey("sl") + JPrice(PositionGetDouble(POSITION_SL), sym) +
          "," + JKey("tp") + JPrice(PositionGetDouble(POSITION_TP), sym) +
          "," + JKey("swap") + JMoney(PositionGetDouble(POSITION_SWAP)) +
          "," + JKey("profit") + JMoney(PositionGetDouble(POSITION_PROFIT)) +
          "," + JKey("magic") + JInt(PositionGetInteger(POSITION_MAGIC)) +
          "," + JKey("comment") + JStr(PositionGetString(POSITION_COMMENT)) +
          "," + JKey("time") + JInt(Utc(PositionGetInteger(POSITION_TIME_MSC))) +
          "," + JKey("time_update") + JInt(Utc(PositionGetInteger(POSITION_TIME_UPDATE_MSC))) +
          "," + JKey("reason") + JInt(PositionGetInteger(POSITION_REASON)) + "}";
  }

// A working order selected with OrderSelect / OrderGetTicket.
string OrderJson()
  {
   string sym = OrderGetString(ORDER_SYMBOL);
   return "{" + JKey("ticket") + JInt(OrderGetInteger(ORDER_TICKET)) +
          "," + JKey("symbol") + JStr(sym) +
          "," + JKey("type") + JInt(OrderGetInteger(ORDER_TYPE)) +
          "," + JKey("state") + JInt(OrderGetInteger(ORDER_STATE)) +
          "," + JKey("time_setup") + JInt(Utc(OrderGetInteger(ORDER_TIME_SETUP_MSC))) +
          "," + JKey("time_done") + JInt(Utc(OrderGetInteger(ORDER_TIME_DONE_MSC))) +
          "," + JKey("type_filling") + JInt(OrderGetInteger(ORDER_TYPE_FILLING)) +
          "," + JKey("type_time") + JInt(OrderGetInteger(ORDER_TYPE_TIME)) +
          "," + JKey("expiration") + JInt(UtcSec(OrderGetInteger(ORDER_TIME_EXPIRATION))) +
          "," + JKey("volume_initial") + JVol(OrderGetDouble(ORDER_VOLUME_INITIAL)) +
          "," + JKey("volume_current") + JVol(OrderGetDouble(ORDER_VOLUME_CURRENT)) +
          "," + JKey("price_open") + JPrice(OrderGetDouble(ORDER_PRICE_OPEN), sym) +
          "," + JKey("price_current") + JPrice(OrderGetDouble(ORDER_PRICE_CURRENT), sym) +
          "," + JKey("price_stoplimit") + JPrice(OrderGetDouble(ORDER_PRICE_STOPLIMIT), sym) +
          "," + JKey("sl") + JPrice(OrderGetDouble(ORDER_SL), sym) +
          "," + JKey("tp") + JPrice(OrderGetDouble(ORDER_TP), sym) +
          "," + JKey("magic") + JInt(OrderGetInteger(ORDER_MAGIC)) +
          "," + JKey("position_id") + JInt(OrderGetInteger(ORDER_POSITION_ID)) +
          "," + JKey("position_by_id") + JInt(OrderGetInteger(ORDER_POSITION_BY_ID)) +
          "," + JKey("reason") + JInt(OrderGetInteger(ORDER_REASON)) +
          "," + JKey("comment") + JStr(OrderGetString(ORDER_COMMENT)) + "}";
  }

// A history order (HistoryOrderSelect or HistorySelect + HistoryOrderGetTicket).
string HistoryOrderJson(ulong t)
  {
   string sym = HistoryOrderGetString(t, ORDER_SYMBOL);
   return "{" + JKey("ticket") + JInt((long)t) +
          "," + JKey("symbol") + JStr(sym) +
          "," + JKey("type") + JInt(HistoryOrderGetInteger(t, ORDER_TYPE)) +
          "," + JKey("state") + JInt(HistoryOrderGetInteger(t, ORDER_STATE)) +
          "," + JKey("time_setup") + JInt(Utc(HistoryOrderGetInteger(t, ORDER_TIME_SETUP_MSC))) +
          "," + JKey("time_done") + JInt(Utc(HistoryOrderGetInteger(t, ORDER_TIME_DONE_MSC))) +
          "," + JKey("type_filling") + JInt(HistoryOrderGetInteger(t, ORDER_TYPE_FILLING)) +
          "," + JKey("type_time") + JInt(HistoryOrderGetInteger(t, ORDER_TYPE_TIME)) +
          "," + JKey("expiration") + JInt(UtcSec(HistoryOrderGetInteger(t, ORDER_TIME_EXPIRATION))) +
          "," + JKey("volume_initial") + JVol(HistoryOrderGetDouble(t, ORDER_VOLUME_INITIAL)) +
          "," + JKey("volume_current") + JVol(HistoryOrderGetDouble(t, ORDER_VOLUME_CURRENT)) +
          "," + JKey("price_open") + JPrice(HistoryOrderGetDouble(t, ORDER_PRICE_OPEN), sym) +
          "," + JKey("price_current") + JPrice(HistoryOrderGetDouble(t, ORDER_PRICE_CURRENT), sym) +
          "," + JKey("price_stoplimit") + JPrice(HistoryOrderGetDouble(t, ORDER_PRICE_STOPLIMIT), sym) +
          "," + JKey("sl") + JPrice(HistoryOrderGetDouble(t, ORDER_SL), sym) +
          "," + JKey("tp") + JPrice(HistoryOrderGetDouble(t, ORDER_TP), sym) +
          "," + JKey("magic") + JInt(HistoryOrderGetInteger(t, ORDER_MAGIC)) +
          "," + JKey("position_id") + JInt(HistoryOrderGetInteger(t, ORDER_POSITION_ID)) +
          "," + JKey("position_by_id") + JInt(HistoryOrderGetInteger(t, ORDER_POSITION_BY_ID)) +
          "," + JKey("reason") + JInt(HistoryOrderGetInteger(t, ORDER_REASON)) +
          "," + JKey("comment") + JStr(HistoryOrderGetString(t, ORDER_COMMENT)) + "}";
  }

// A deal (HistoryDealSelect or HistorySelect + HistoryDealGetTicket).
string DealJson(ulong t)
  {
   string sym = HistoryDealGetString(t, DEAL_SYMBOL);
   return "{" + JKey("ticket") + JInt((long)t) +
          "," + JKey("order") + JInt(HistoryDealGetInteger(t, DEAL_ORDER)) +
          "," + JKey("position_id") + JInt(HistoryDealGetInteger(t, DEAL_POSITION_ID)) +
          "," + JKey("time") + JInt(Utc(HistoryDealGetInteger(t, DEAL_TIME_MSC))) +
          "," + JKey("type") + JInt(HistoryDealGetInteger(t, DEAL_TYPE)) +
          "," + JKey("entry") + JInt(HistoryDealGetInteger(t, DEAL_ENTRY)) +
          "," + JKey("reason") + JInt(HistoryDealGetInteger(t, DEAL_REASON)) +
          "," + JKey("magic") + JInt(HistoryDealGetInteger(t, DEAL_MAGIC)) +
          "," + JKey("volume") + JVol(HistoryDealGetDouble(t, DEAL_VOLUME)) +
          "," + JKey("price") + JPrice(HistoryDealGetDouble(t, DEAL_PRICE), sym) +
          "," + JKey("commission") + JMoney(HistoryDealGetDouble(t, DEAL_COMMISSION)) +
          "," + JKey("swap") + JMoney(HistoryDealGetDouble(t, DEAL_SWAP)) +
          "," + JKey("profit") + JMoney(HistoryDealGetDouble(t, DEAL_PROFIT)) +
          "," + JKey("fee") + JMoney(HistoryDealGetDouble(t, DEAL_FEE)) +
          "," + JKey("symbol") + JStr(sym) +
          "," + JKey("comment") + JStr(HistoryDealGetString(t, DEAL_COMMENT)) +
          "," + JKey("external_id") + JStr(HistoryDealGetString(t, DEAL_EXTERNAL_ID)) + "}";
  }

// A symbol's specification and latest quote (SymbolInfo in the protocol).
string SymbolJson(string sym)
  {
   long flags = SymbolInfoInteger(sym, SYMBOL_FILLING_MODE);
   long exemode = SymbolInfoInteger(sym, SYMBOL_TRADE_EXEMODE);
   int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
   MqlTick tick;
   bool have_tick = SymbolInfoTick(sym, tick);
   // RETURN is allowed in every execution mode except market execution.
   bool ret = exemode != SYMBOL_TRADE_EXECUTION_MARKET;
   string out = "{" + JKey("name") + JStr(sym) +
                "," + JKey("digits") + JInt(digits) +
                "," + JKey("point") + JNum(SymbolInfoDouble(sym, SYMBOL_POINT), digits) +
                "," + JKey("tick_size") + JNum(SymbolInfoDouble(sym, SYMBOL_TRADE_TICK_SIZE), digits) +
                "," + JKey("tick_value") + JMoney(SymbolInfoDouble(sym, SYMBOL_TRADE_TICK_VALUE)) +
                "," + JKey("contract_size") + JNum(SymbolInfoDouble(sym, SYMBOL_TRADE_CONTRACT_SIZE), 8) +
                "," + JKey("volume_min") + JVol(SymbolInfoDouble(sym, SYMBOL_VOLUME_MIN)) +
                "," + JKey("volume_step") + JVol(SymbolInfoDouble(sym, SYMBOL_VOLUME_STEP)) +
                "," + JKey("volume_max") + JVol(SymbolInfoDouble(sym, SYMBOL_VOLUME_MAX)) +
                "," + JKey("filling") + "{" + JKey("fok") + JBool((flags & SYMBOL_FILLING_FOK) != 0) +
                "," + JKey("ioc") + JBool((flags & SYMBOL_FILLING_IOC) != 0) +
                "," + JKey("return") + JBool(ret) +
                "," + JKey("boc") + JBool((flags & 4) != 0) + "}" +   // 4: SYMBOL_FILLING_BOC
                "," + JKey("stops_level") + JInt(SymbolInfoInteger(sym, SYMBOL_TRADE_STOPS_LEVEL)) +
                "," + JKey("trade_mode") + JInt(SymbolInfoInteger(sym, SYMBOL_TRADE_MODE)) +
                "," + JKey("margin_per_lot") + JMoney(SymbolInfoDouble(sym, SYMBOL_MARGIN_INITIAL));
   if(have_tick)
      out += "," + JKey("bid") + JNum(tick.bid, digits) +
             "," + JKey("ask") + JNum(tick.ask, digits) +
             "," + JKey("time") + JInt(Utc(tick.time_msc));
   return out + "}";
  }

//+------------------------------------------------------------------+
//| Messages the terminal sends                                      |
//+------------------------------------------------------------------+
// hello: first message of every connection.
void SendHello()
  {
   bool trade_allowed = TerminalInfoInteger(TERMINAL_TRADE_ALLOWED) != 0 &&
                        AccountInfoInteger(ACCOUNT_TRADE_ALLOWED) != 0 &&
                        MQLInfoInteger(MQL_TRADE_ALLOWED) != 0;
   string body = JKey("v") + JInt(PROTOCOL_VERSION) +
                 "," + JKey("login") + JInt(AccountInfoInteger(ACCOUNT_LOGIN)) +
                 "," + JKey("server") + JStr(AccountInfoString(ACCOUNT_SERVER)) +
                 "," + JKey("company") + JStr(AccountInfoString(ACCOUNT_COMPANY)) +
                 "," + JKey("currency") + JStr(AccountInfoString(ACCOUNT_CURRENCY)) +
                 "," + JKey("margin_mode") + JInt(AccountInfoInteger(ACCOUNT_MARGIN_MODE)) +
                 "," + JKey("build") + JInt(TerminalInfoInteger(TERMINAL_BUILD)) +
                 "," + JKey("ea_version") + JStr(EA_VERSION) +
                 "," + JKey("leverage") + JInt(AccountInfoInteger(ACCOUNT_LEVERAGE)) +
                 "," + JKey("trade_allowed") + JBool(trade_allowed) +
                 "," + JKey("time") + JInt(NowMs());
   WriteMessage("hello", body);
  }

// symbols: every symbol in Market Watch.
void SendSymbols()
  {
   string list = "";
   int total = SymbolsTotal(true);
   for(int i = 0; i < total; i++)
     {
      string sym = SymbolName(i, true);
      if(sym == "")
         continue;
      if(list != "")
         list += ",";
      list += SymbolJson(sym);
     }
   WriteMessage("symbols", JKey("symbols") + "[" + list + "]");
  }

// snapshot: account, open positions, working orders; cmd_id set when it answers a command.
void SendSnapshot(string cmd_id)
  {
   UpdateServerOffset();
   string positions = "";
   int total = PositionsTotal();
   for(int i = 0; i < total; i++)
     {
      if(PositionGetTicket(i) == 0)
         continue;
      if(positions != "")
         positions += ",";
      positions += PositionJson();
     }
   string orders = "";
   total = OrdersTotal();
   for(int i = 0; i < total; i++)
     {
      if(OrderGetTicket(i) == 0)
         continue;
      if(orders != "")
         orders += ",";
      orders += OrderJson();
     }
   string body = JKey("time") + JInt(NowMs());
   if(cmd_id != "")
      body += "," + JKey("cmd_id") + JStr(cmd_id);
   body += "," + JKey("account") + "{" + AccountJson() + "}" +
           "," + JKey("positions") + "[" + positions + "]" +
           "," + JKey("orders") + "[" + orders + "]";
   if(WriteMessage("snapshot", body))
      g_last_snapshot = GetTickCount();
  }

// history: one page of an answer to a history command.
void SendHistoryPage(string cmd_id, int page, string orders, string deals, string cursor, bool last)
  {
   string body = JKey("cmd_id") + JStr(cmd_id) +
                 "," + JKey("page") + JInt(page) +
                 "," + JKey("orders") + "[" + orders + "]" +
                 "," + JKey("deals") + "[" + deals + "]";
   if(cursor != "")
      body += "," + JKey("cursor") + JStr(cursor);
   body += "," + JKey("last") + JBool(last);
   WriteMessage("history", body);
  }

// The cmd_id of an OrderSendAsync request, for its REQUEST transaction.
string AsyncCmd(uint request_id)
  {
   if(request_id == 0)
      return "";
   for(int k = 0; k < ASYNC_RING_SIZE; k++)
      if(g_async_ids[k] == request_id)
         return g_async_cmds[k];
   return "";
  }

// tx: one trade transaction, with the records it affected.
void SendTx(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   string sym = trans.symbol;
   ENUM_TRADE_TRANSACTION_TYPE tt = trans.type;
   string body = JKey("time") + JInt(NowMs()) +
                 "," + JKey("tx_type") + JInt(tt) +
                 "," + JKey("order") + JInt((long)trans.order) +
                 "," + JKey("deal") + JInt((long)trans.deal) +
                 "," + JKey("symbol") + JStr(sym);
   bool order_tx = tt == TRADE_TRANSACTION_ORDER_ADD || tt == TRADE_TRANSACTION_ORDER_UPDATE ||
                   tt == TRADE_TRANSACTION_ORDER_DELETE || tt == TRADE_TRANSACTION_HISTORY_ADD ||
                   tt == TRADE_TRANSACTION_HISTORY_UPDATE || tt == TRADE_TRANSACTION_HISTORY_DELETE;
   bool deal_tx = tt == TRADE_TRANSACTION_DEAL_ADD || tt == TRADE_TRANSACTION_DEAL_UPDATE ||
                  tt == TRADE_TRANSACTION_DEAL_DELETE;
   if(order_tx)
      body += "," + JKey("order_type") + JInt(trans.order_type) +
              "," + JKey("order_state") + JInt(trans.order_state) +
              "," + JKey("time_type") + JInt(trans.time_type);
   if(deal_tx)
      body += "," + JKey("deal_type") + JInt(trans.deal_type);
   body += "," + JKey("expiration") + JInt(UtcSec((long)trans.time_expiration)) +
           "," + JKey("price") + JPrice(trans.price, sym) +
           "," + JKey("price_trigger") + JPrice(trans.price_trigger, sym) +
           "," + JKey("sl") + JPrice(trans.price_sl, sym) +
           "," + JKey("tp") + JPrice(trans.price_tp, sym) +
           "," + JKey("volume") + JVol(trans.volume) +
           "," + JKey("position") + JInt((long)trans.position) +
           "," + JKey("position_by") + JInt((long)trans.position_by);
   if((tt == TRADE_TRANSACTION_DEAL_ADD || tt == TRADE_TRANSACTION_DEAL_UPDATE) &&
      trans.deal > 0 && HistoryDealSelect(trans.deal))
      body += "," + JKey("deal_record") + DealJson(trans.deal);
   if(tt == TRADE_TRANSACTION_ORDER_ADD || tt == TRADE_TRANSACTION_ORDER_UPDATE)
     {
      if(trans.order > 0 && OrderSelect(trans.order))
         body += "," + JKey("order_record") + OrderJson();
     }
   else
      if(order_tx && trans.order > 0 && HistoryOrderSelect(trans.order))
         body += "," + JKey("order_record") + HistoryOrderJson(trans.order);
   if(tt == TRADE_TRANSACTION_DEAL_ADD || tt == TRADE_TRANSACTION_POSITION)
      body += PositionRecordField(trans);
   if(tt == TRADE_TRANSACTION_REQUEST)
     {
      string cmd_id = AsyncCmd(result.request_id);
      if(cmd_id != "")
         body += "," + JKey("cmd_id") + JStr(cmd_id);
     }
   WriteMessage("tx", body);
  }

// The position after a deal or position change; a closed one is sent with volume 0.
string PositionRecordField(const MqlTradeTransaction &trans)
  {
   ulong id = trans.position;
   if(id == 0)
      return "";
   if(PositionSelectByTicket(id))
      return "," + JKey("position_record") + PositionJson();
   // On a netting account the position's ticket is its identifier; look it up by symbol too.
   if(trans.symbol != "" && PositionSelect(trans.symbol) &&
      (ulong)PositionGetInteger(POSITION_IDENTIFIER) == id)
      return "," + JKey("position_record") + PositionJson();
   if(trans.deal == 0 || !HistoryDealSelect(trans.deal))
      return "";
   // Closed: the closing deal is opposite to the position, so a sell deal closed a buy position.
   string sym = HistoryDealGetString(trans.deal, DEAL_SYMBOL);
   long deal_type = HistoryDealGetInteger(trans.deal, DEAL_TYPE);
   long pos_type = deal_type == DEAL_TYPE_SELL ? POSITION_TYPE_BUY : POSITION_TYPE_SELL;
   long t = Utc(HistoryDealGetInteger(trans.deal, DEAL_TIME_MSC));
   return "," + JKey("position_record") + "{" + JKey("ticket") + JInt((long)id) +
          "," + JKey("identifier") + JInt((long)id) +
          "," + JKey("symbol") + JStr(sym) +
          "," + JKey("type") + JInt(pos_type) +
          "," + JKey("volume") + "0" +
          "," + JKey("price_open") + "0" +
          "," + JKey("price_current") + JPrice(HistoryDealGetDouble(trans.deal, DEAL_PRICE), sym) +
          "," + JKey("magic") + JInt(HistoryDealGetInteger(trans.deal, DEAL_MAGIC)) +
          "," + JKey("time") + JInt(t) +
          "," + JKey("time_update") + JInt(t) + "}";
  }

// The body of a reply (everything but the envelope), stored in the ring for resends.
string ReplyBody(string cmd_id, uint retcode, ulong deal, ulong order, ulong position,
                 double volume, double price, double bid, double ask, string comment,
                 uint request_id, long retcode_external, string symbol, string extra)
  {
   string body = JKey("cmd_id") + JStr(cmd_id) +
                 "," + JKey("retcode") + JInt(retcode) +
                 "," + JKey("deal") + JInt((long)deal) +
                 "," + JKey("order") + JInt((long)order) +
                 "," + JKey("position") + JInt((long)position) +
                 "," + JKey("volume") + JVol(volume) +
                 "," + JKey("price") + JPrice(price, symbol) +
                 "," + JKey("bid") + JPrice(bid, symbol) +
                 "," + JKey("ask") + JPrice(ask, symbol) +
                 "," + JKey("comment") + JStr(comment) +
                 "," + JKey("request_id") + JInt(request_id) +
                 "," + JKey("retcode_external") + JInt(retcode_external) +
                 "," + JKey("time") + JInt(NowMs());
   if(extra != "")
      body += "," + extra;
   return body;
  }

// reply: a command's answer.
void SendReply(string body)
  {
   WriteMessage("reply", body);
  }

// A reply carrying only a retcode and a comment (non-trading commands, refusals).
void SendSimpleReply(string cmd_id, uint retcode, string comment, string extra)
  {
   SendReply(ReplyBody(cmd_id, retcode, 0, 0, 0, 0, 0, 0, 0, comment, 0, 0, "", extra));
  }

// heartbeat: liveness when nothing else was sent for a while.
void SendHeartbeat()
  {
   WriteMessage("heartbeat", JKey("time") + JInt(NowMs()));
  }

// error: a line this side could not accept; the connection stays up.
void SendError(string code, string message, string cmd_id)
  {
   string body = JKey("code") + JStr(code) + "," + JKey("message") + JStr(message);
   if(cmd_id != "")
      body += "," + JKey("cmd_id") + JStr(cmd_id);
   WriteMessage("error", body);
  }

//+------------------------------------------------------------------+
//| At-most-once ring                                                |
//| In memory for speed, and in MQL5/Files/HedgeBridge-<login>.ring  |
//| (one `"cmd_id"<TAB>reply body` line per entry, appended before   |
//| the reply is sent) so that it survives a restart of the EA or    |
//| the terminal. An entry with an empty body marks a command that   |
//| was executing when the EA stopped: its outcome is unknown, so a  |
//| resend is refused rather than executed a second time.            |
//+------------------------------------------------------------------+
long   g_ring_login = -1;
int    g_ring_file_lines = 0;

string RingFileName() { return "HedgeBridge-" + IntegerToString(g_ring_login) + ".ring"; }

int RingFind(string cmd_id)
  {
   for(int k = 0; k < RING_SIZE; k++)
      if(g_ring_ids[k] == cmd_id)
         return k;
   return -1;
  }

// Remembers in memory; a later entry for the same id replaces the earlier one.
void RingPut(string cmd_id, string reply_body)
  {
   int k = RingFind(cmd_id);
   if(k >= 0)
     {
      g_ring_replies[k] = reply_body;
      return;
     }
   g_ring_ids[g_ring_next] = cmd_id;
   g_ring_replies[g_ring_next] = reply_body;
   g_ring_next = (g_ring_next + 1) % RING_SIZE;
  }

// Rewrites the file with the entries in memory, oldest first, so it never grows without bound.
void RingCompact()
  {
   int h = FileOpen(RingFileName(), FILE_WRITE | FILE_TXT | FILE_ANSI, '\t', CP_UTF8);
   if(h == INVALID_HANDLE)
     {
      LogError("cannot rewrite " + RingFileName() + ", error " + IntegerToString(GetLastError()));
      return;
     }
   int written = 0;
   for(int k = 0; k < RING_SIZE; k++)
     {
      int idx = (g_ring_next + k) % RING_SIZE;
      if(g_ring_ids[idx] == "")
         continue;
      FileWriteString(h, JStr(g_ring_ids[idx]) + "\t" + g_ring_replies[idx] + "\r\n");
      written++;
     }
   FileClose(h);
   g_ring_file_lines = written;
  }

// Loads the ring of the logged-in account (once per account).
void RingLoad()
  {
   long login = AccountInfoInteger(ACCOUNT_LOGIN);
   if(login == g_ring_login)
      return;
   for(int k = 0; k < RING_SIZE; k++)
     {
      g_ring_ids[k] = "";
      g_ring_replies[k] = "";
     }
   g_ring_next = 0;
   g_ring_file_lines = 0;
   g_ring_login = login;
   if(!FileIsExist(RingFileName()))
      return;
   int h = FileOpen(RingFileName(), FILE_READ | FILE_TXT | FILE_ANSI, '\t', CP_UTF8);
   if(h == INVALID_HANDLE)
     {
      LogError("cannot read " + RingFileName() + ", error " + IntegerToString(GetLastError()));
      return;
     }
   while(!FileIsEnding(h))
     {
      string line = FileReadString(h);
      int tab = StringFind(line, "\t");
      if(tab <= 0)
         continue;
      string quoted = StringSubstr(line, 0, tab);
      string cmd_id;
      int i = 0;
      if(!JReadString(quoted, i, StringLen(quoted), cmd_id))
         continue;
      RingPut(cmd_id, StringSubstr(line, tab + 1));
      g_ring_file_lines++;
     }
   FileClose(h);
   LogInfo("loaded " + IntegerToString(g_ring_file_lines) + " executed commands from " + RingFileName());
   if(g_ring_file_lines > 2 * RING_SIZE)
      RingCompact();
  }

// Remembers an entry in memory and appends it to the file; the file is closed (flushed) before the
// caller goes on, so the entry is on disk before the trade is sent or the reply goes out.
void RingStore(string cmd_id, string reply_body)
  {
   RingPut(cmd_id, reply_body);
   int h = FileOpen(RingFileName(), FILE_READ | FILE_WRITE | FILE_TXT | FILE_ANSI, '\t', CP_UTF8);
   if(h == INVALID_HANDLE)
     {
      LogError("cannot write " + RingFileName() + ", error " + IntegerToString(GetLastError()));
      return;
     }
   FileSeek(h, 0, SEEK_END);
   FileWriteString(h, JStr(cmd_id) + "\t" + reply_body + "\r\n");
   FileClose(h);
   g_ring_file_lines++;
   if(g_ring_file_lines > 2 * RING_SIZE)
      RingCompact();
  }

//+------------------------------------------------------------------+
//| Commands                                                         |
//+------------------------------------------------------------------+
// The filling mode for a request: the one asked for, or with "auto" (or none) the first the
// symbol allows of FOK, IOC, RETURN; closes included, which is what prevents retcode 10030.
bool ChooseFilling(string sym, ENUM_ORDER_TYPE_FILLING &filling, string &why)
  {
   int k = JFind("type_filling");
   bool automatic = k < 0 || g_jkinds[k] == JK_NULL ||
                    (g_jkinds[k] == JK_STRING && StringCompare(g_jvals[k], "auto", false) == 0);
   if(!automatic)
     {
      long code = -1;
      if(g_jkinds[k] == JK_NUMBER)
         code = StringToInteger(g_jvals[k]);
      else if(g_jkinds[k] == JK_STRING)
        {
         string v = g_jvals[k];
         StringToUpper(v);
         if(v == "FOK" || v == "ORDER_FILLING_FOK") code = 0;
         if(v == "IOC" || v == "ORDER_FILLING_IOC") code = 1;
         if(v == "RETURN" || v == "ORDER_FILLING_RETURN") code = 2;
         if(v == "BOC" || v == "ORDER_FILLING_BOC") code = 3;
        }
      if(code < 0 || code > 3)
        {
         why = "type_filling must be 0-3 or \"auto\"";
         return false;
        }
      filling = (ENUM_ORDER_TYPE_FILLING)code;
      return true;
     }
   long flags = 0;
   if(sym != "")
      flags = SymbolInfoInteger(sym, SYMBOL_FILLING_MODE);
   if((flags & SYMBOL_FILLING_FOK) != 0)
      filling = ORDER_FILLING_FOK;
   else if((flags & SYMBOL_FILLING_IOC) != 0)
      filling = ORDER_FILLING_IOC;
   else
      filling = ORDER_FILLING_RETURN;
   return true;
  }

// Fills an MqlTradeRequest from the parsed command; false (with why) on an invalid field.
bool BuildRequest(MqlTradeRequest &req, string &why)
  {
   ZeroMemory(req);
   long action = JGetLong("action", -1);
   if(action != TRADE_ACTION_DEAL && action != TRADE_ACTION_PENDING && action != TRADE_ACTION_SLTP &&
      action != TRADE_ACTION_MODIFY && action != TRADE_ACTION_REMOVE && action != TRADE_ACTION_CLOSE_BY)
     {
      why = "action must be a TRADE_ACTION code (1, 5, 6, 7, 8 or 10)";
      return false;
     }
   string fields[] = {"volume", "price", "stoplimit", "sl", "tp", "deviation", "magic", "order",
                      "position", "position_by", "expiration"};
   for(int f = 0; f < ArraySize(fields); f++)
      if(!JNonNegative(fields[f]))
        {
         why = fields[f] + " must be a non-negative number";
         return false;
        }
   long order_type = JGetLong("order_type", ORDER_TYPE_BUY);
   if(order_type < ORDER_TYPE_BUY || order_type > ORDER_TYPE_CLOSE_BY)
     {
      why = "order_type must be an ORDER_TYPE code (0-8)";
      return false;
     }
   long type_time = JGetLong("type_time", ORDER_TIME_GTC);
   if(type_time < ORDER_TIME_GTC || type_time > ORDER_TIME_SPECIFIED_DAY)
     {
      why = "type_time must be an ORDER_TIME code (0-3)";
      return false;
     }
   req.action = (ENUM_TRADE_REQUEST_ACTIONS)action;
   req.magic = (ulong)JGetLong("magic", 0);
   req.order = (ulong)JGetLong("order", 0);
   req.symbol = JGetStr("symbol", "");
   req.volume = JGetNum("volume", 0);
   req.price = JGetNum("price", 0);
   req.stoplimit = JGetNum("stoplimit", 0);
   req.sl = JGetNum("sl", 0);
   req.tp = JGetNum("tp", 0);
   req.deviation = (ulong)JGetLong("deviation", 0);
   req.type = (ENUM_ORDER_TYPE)order_type;
   req.type_time = (ENUM_ORDER_TYPE_TIME)type_time;
   long expiration = JGetLong("expiration", 0);
   req.expiration = expiration > 0 ? (datetime)((expiration + g_server_offset_ms) / 1000) : 0;
   req.comment = JGetStr("comment", "");
   req.position = (ulong)JGetLong("position", 0);
   req.position_by = (ulong)JGetLong("position_by", 0);
   if((action == TRADE_ACTION_DEAL || action == TRADE_ACTION_PENDING) && req.volume <= 0)
     {
      why = "volume must be positive";
      return false;
     }
   if(action == TRADE_ACTION_DEAL || action == TRADE_ACTION_PENDING)
     {
      // Into Market Watch first, so that its quote and filling modes are available (an unknown
      // symbol is answered by the caller).
      if(req.symbol != "")
         SymbolSelect(req.symbol, true);
      ENUM_ORDER_TYPE_FILLING filling;
      if(!ChooseFilling(req.symbol, filling, why))
         return false;
      req.type_filling = filling;
     }
   // A market order with price 0 means "at the current price".
   if(action == TRADE_ACTION_DEAL && req.price <= 0)
     {
      MqlTick tick;
      if(SymbolInfoTick(req.symbol, tick))
         req.price = (req.type == ORDER_TYPE_SELL) ? tick.bid : tick.ask;
     }
   return true;
  }

// The position a deal opened or changed (MqlTradeResult does not say).
ulong DealPosition(ulong deal)
  {
   if(deal == 0 || !HistoryDealSelect(deal))
      return 0;
   return (ulong)HistoryDealGetInteger(deal, DEAL_POSITION_ID);
  }

// order_send: OrderSend or OrderSendAsync; at most once per cmd_id (the caller checks the ring).
void CmdOrderSend(string cmd_id)
  {
   MqlTradeRequest req;
   string why = "";
   if(!BuildRequest(req, why))
     {
      // Refused before execution: nothing traded, nothing remembered; a resend is refused again.
      SendError("bad_message", why, cmd_id);
      return;
     }
   if((req.action == TRADE_ACTION_DEAL || req.action == TRADE_ACTION_PENDING) &&
      (req.symbol == "" || !SymbolSelect(req.symbol, true)))
     {
      string refused = ReplyBody(cmd_id, RC_INVALID, 0, 0, 0, 0, 0, 0, 0,
                                 "unknown symbol \"" + req.symbol + "\"", 0, 0, "", "");
      RingStore(cmd_id, refused);
      SendReply(refused);
      return;
     }
   bool is_async = JGetBool("async", false);
   // Marked before the trade: if the EA stops inside OrderSend, a resend is refused, never repeated.
   RingStore(cmd_id, "");
   MqlTradeResult res;
   ZeroMemory(res);
   bool ok = is_async ? OrderSendAsync(req, res) : OrderSend(req, res);
   uint retcode = res.retcode;
   string comment = res.comment;
   if(!ok && retcode == 0)
     {
      retcode = RC_ERROR;
      comment = "OrderSend failed, error " + IntegerToString(GetLastError());
     }
   if(is_async && res.request_id != 0)
     {
      g_async_ids[g_async_next] = res.request_id;
      g_async_cmds[g_async_next] = cmd_id;
      g_async_next = (g_async_next + 1) % ASYNC_RING_SIZE;
     }
   ulong position = DealPosition(res.deal);
   if(position == 0)
      position = req.position;
   string body = ReplyBody(cmd_id, retcode, res.deal, res.order, position, res.volume, res.price,
                           res.bid, res.ask, comment, res.request_id, res.retcode_external,
                           req.symbol, "");
   RingStore(cmd_id, body);
   SendReply(body);
  }

// order_check: OrderCheck, with MqlTradeCheckResult in `check`.
void CmdOrderCheck(string cmd_id)
  {
   MqlTradeRequest req;
   string why = "";
   if(!BuildRequest(req, why))
     {
      SendError("bad_message", why, cmd_id);
      return;
     }
   MqlTradeCheckResult chk;
   ZeroMemory(chk);
   OrderCheck(req, chk);
   uint retcode = chk.retcode;
   // OrderCheck reports success as 0.
   if(retcode == 0)
      retcode = RC_DONE;
   string extra = JKey("check") + "{" + JKey("balance") + JMoney(chk.balance) +
                  "," + JKey("equity") + JMoney(chk.equity) +
                  "," + JKey("profit") + JMoney(chk.profit) +
                  "," + JKey("margin") + JMoney(chk.margin) +
                  "," + JKey("margin_free") + JMoney(chk.margin_free) +
                  "," + JKey("margin_level") + JMoney(chk.margin_level) + "}";
   SendSimpleReply(cmd_id, retcode, chk.comment, extra);
  }

// Sorts the first n rows of keys ([time, ticket]) by time, then ticket. ArraySort orders by the
// first column only, so runs of equal times are then put in ticket order (they are short).
void SortByTimeThenTicket(long &keys[][2], int n)
  {
   if(n > 1)
      ArraySort(keys);
   int i = 0;
   while(i < n)
     {
      int j = i + 1;
      while(j < n && keys[j][0] == keys[i][0])
         j++;
      for(int a = i + 1; a < j; a++)
        {
         long tm = keys[a][0];
         long tk = keys[a][1];
         int b = a - 1;
         while(b >= i && keys[b][1] > tk)
           {
            keys[b + 1][0] = keys[b][0];
            keys[b + 1][1] = keys[b][1];
            b--;
           }
         keys[b + 1][0] = tm;
         keys[b + 1][1] = tk;
        }
      i = j;
     }
  }

// history: orders (by time_done) then deals (by time) with from <= time < to, in pages, then a
// reply with the totals. The cursor is "<orders sent>:<deals sent>" within the sorted range.
void CmdHistory(string cmd_id)
  {
   long from = JGetLong("from", -1);
   long to = JGetLong("to", -1);
   if(!JHas("from") || !JHas("to") || from < 0 || to < from)
     {
      SendError("bad_message", "history needs 0 <= from <= to (ms)", cmd_id);
      return;
     }
   long page_size = JGetLong("page_size", DEFAULT_PAGE_SIZE);
   if(page_size <= 0)
      page_size = DEFAULT_PAGE_SIZE;
   if(page_size > MAX_PAGE_SIZE)
      page_size = MAX_PAGE_SIZE;
   int order_pos = 0, deal_pos = 0;
   string cursor = JGetStr("cursor", "");
   if(cursor != "")
     {
      string parts[];
      if(StringSplit(cursor, ':', parts) != 2)
        {
         SendSimpleReply(cmd_id, RC_INVALID, "unreadable history cursor", "");
         return;
        }
      order_pos = (int)StringToInteger(parts[0]);
      deal_pos = (int)StringToInteger(parts[1]);
      if(order_pos < 0 || deal_pos < 0)
        {
         SendSimpleReply(cmd_id, RC_INVALID, "unreadable history cursor", "");
         return;
        }
     }
   // HistorySelect works in whole seconds of server time; the exact UTC ms range is applied below.
   // It starts at 0: an order set up before `from` may be done inside the range.
   UpdateServerOffset();
   long to_sec = (to + g_server_offset_ms) / 1000 + 1;
   if(to_sec > MAX_DATETIME)
      to_sec = MAX_DATETIME;             // "everything": datetime ends in the year 3000
   if(to_sec < 0)
      to_sec = 0;
   if(!HistorySelect(0, (datetime)to_sec))
     {
      SendSimpleReply(cmd_id, RC_ERROR, "HistorySelect failed, error " + IntegerToString(GetLastError()), "");
      return;
     }
   // Orders by time_done then ticket, then deals by time then ticket, as the protocol orders them.
   long okeys[][2];
   long dkeys[][2];
   int orders_total = 0, deals_total = 0;
   int n = HistoryOrdersTotal();
   for(int i = 0; i < n; i++)
     {
      ulong t = HistoryOrderGetTicket(i);
      if(t == 0)
         continue;
      long tm = Utc(HistoryOrderGetInteger(t, ORDER_TIME_DONE_MSC));
      if(tm < from || tm >= to)
         continue;
      ArrayResize(okeys, orders_total + 1, 1024);
      okeys[orders_total][0] = tm;
      okeys[orders_total][1] = (long)t;
      orders_total++;
     }
   n = HistoryDealsTotal();
   for(int i = 0; i < n; i++)
     {
      ulong t = HistoryDealGetTicket(i);
      if(t == 0)
         continue;
      long tm = Utc(HistoryDealGetInteger(t, DEAL_TIME_MSC));
      if(tm < from || tm >= to)
         continue;
      ArrayResize(dkeys, deals_total + 1, 1024);
      dkeys[deals_total][0] = tm;
      dkeys[deals_total][1] = (long)t;
      deals_total++;
     }
   SortByTimeThenTicket(okeys, orders_total);
   SortByTimeThenTicket(dkeys, deals_total);
   int page = 0, sent_orders = 0, sent_deals = 0;
   string orders = "", deals = "";
   int in_page = 0;
   // The cursor counts records of the sorted range already sent; history only grows at its end.
   while(order_pos < orders_total || deal_pos < deals_total)
     {
      if(order_pos < orders_total)
        {
         orders += (orders == "" ? "" : ",") + HistoryOrderJson((ulong)okeys[order_pos][1]);
         order_pos++;
         sent_orders++;
        }
      else
        {
         deals += (deals == "" ? "" : ",") + DealJson((ulong)dkeys[deal_pos][1]);
         deal_pos++;
         sent_deals++;
        }
      in_page++;
      if(in_page >= page_size && (order_pos < orders_total || deal_pos < deals_total))
        {
         SendHistoryPage(cmd_id, page, orders, deals,
                         IntegerToString(order_pos) + ":" + IntegerToString(deal_pos), false);
         page++;
         orders = "";
         deals = "";
         in_page = 0;
        }
     }
   string end_cursor = IntegerToString(order_pos) + ":" + IntegerToString(deal_pos);
   SendHistoryPage(cmd_id, page, orders, deals, end_cursor, true);
   page++;
   string extra = JKey("history") + "{" + JKey("pages") + JInt(page) +
                  "," + JKey("orders") + JInt(sent_orders) +
                  "," + JKey("deals") + JInt(sent_deals) +
                  "," + JKey("cursor") + JStr(end_cursor) + "}";
   SendSimpleReply(cmd_id, RC_DONE, "", extra);
  }

// snapshot: a fresh snapshot carrying the cmd_id, then the reply.
void CmdSnapshot(string cmd_id)
  {
   SendSnapshot(cmd_id);
   SendSimpleReply(cmd_id, RC_DONE, "", "");
  }

// symbol_info: one symbol's specification and quote.
void CmdSymbolInfo(string cmd_id)
  {
   string sym = JGetStr("symbol", "");
   if(sym == "" || !SymbolSelect(sym, true))
     {
      SendSimpleReply(cmd_id, RC_INVALID, "unknown symbol \"" + sym + "\"", "");
      return;
     }
   MqlTick tick;
   double bid = 0, ask = 0;
   if(SymbolInfoTick(sym, tick))
     {
      bid = tick.bid;
      ask = tick.ask;
     }
   SendReply(ReplyBody(cmd_id, RC_DONE, 0, 0, 0, 0, 0, bid, ask, "", 0, 0, sym,
                       JKey("symbol") + SymbolJson(sym)));
  }

// ping: answered at once.
void CmdPing(string cmd_id)
  {
   SendSimpleReply(cmd_id, RC_DONE, "pong", "");
  }

// cmd: routes a command by op. A resent order_send gets its first reply and is not executed again.
void HandleCmd()
  {
   string cmd_id = JGetStr("cmd_id", "");
   if(cmd_id == "")
     {
      SendError("bad_message", "cmd without a string cmd_id", "");
      return;
     }
   uchar id_bytes[];
   if(StringToCharArray(cmd_id, id_bytes, 0, WHOLE_ARRAY, CP_UTF8) - 1 > MAX_CMD_ID)
     {
      SendError("bad_message", "cmd_id longer than " + IntegerToString(MAX_CMD_ID) + " bytes", "");
      return;
     }
   string op = JGetStr("op", "");
   if(op == "order_send")
     {
      int k = RingFind(cmd_id);
      if(k >= 0)
        {
         if(g_ring_replies[k] == "")
           {
            LogError("cmd " + cmd_id + " was executing when the EA stopped; refusing to repeat it");
            SendSimpleReply(cmd_id, RC_ERROR, "outcome unknown: the terminal stopped while this command was executing; check the account", "");
            return;
           }
         LogInfo("cmd " + cmd_id + " already executed; resending its reply");
         SendReply(g_ring_replies[k]);
         return;
        }
      CmdOrderSend(cmd_id);
     }
   else if(op == "order_check")
      CmdOrderCheck(cmd_id);
   else if(op == "history")
      CmdHistory(cmd_id);
   else if(op == "snapshot")
      CmdSnapshot(cmd_id);
   else if(op == "symbol_info")
      CmdSymbolInfo(cmd_id);
   else if(op == "ping")
      CmdPing(cmd_id);
   else
      SendError("bad_message", "unknown op \"" + op + "\"", cmd_id);
  }

// One received line: a JSON object with a string `type`.
void HandleLine(string line)
  {
   string trimmed = line;
   StringTrimLeft(trimmed);
   StringTrimRight(trimmed);
   if(StringLen(trimmed) == 0)
      return;                    // blank lines are ignored
   if(!JParse(line))
     {
      SendError("bad_json", g_jerror, "");
      return;
     }
   int k = JFind("type");
   if(k < 0 || g_jkinds[k] != JK_STRING)
     {
      SendError("missing_type", "a message needs a string \"type\"", "");
      return;
     }
   string msg_type = g_jvals[k];
   if(msg_type == "cmd")
      HandleCmd();
   else if(msg_type == "error")
      LogError("agent reports: " + JGetStr("code", "") + ": " + JGetStr("message", ""));
   else
      SendError("unknown_type", "unknown message type \"" + msg_type + "\"", JGetStr("cmd_id", ""));
  }

//+------------------------------------------------------------------+
//| Framing: bytes -> lines, whatever SocketRead returns             |
//+------------------------------------------------------------------+
void ReceiveBytes(const uchar &data[], int n)
  {
   if(g_rx_len + n > ArraySize(g_rx))
      ArrayResize(g_rx, g_rx_len + n, 65536);
   ArrayCopy(g_rx, data, g_rx_len, 0, n);
   g_rx_len += n;
  }

// Handles up to MAX_LINES_PER_TICK complete lines from the buffer; partial lines stay for later.
void ProcessLines()
  {
   int start = 0;
   int handled = 0;
   for(int i = 0; i < g_rx_len && g_connected; i++)
     {
      if(g_rx[i] != '\n')
         continue;
      int end = i;
      if(end > start && g_rx[end - 1] == '\r')
         end--;
      if(g_skipping)
         g_skipping = false;     // the rest of an oversized line ends here
      else if(end - start > MAX_LINE)
         SendError("line_too_long", "line longer than " + IntegerToString(MAX_LINE) + " bytes skipped", "");
      else if(end > start)
         HandleLine(CharArrayToString(g_rx, start, end - start, CP_UTF8));
      start = i + 1;
      handled++;
      if(handled >= MAX_LINES_PER_TICK)
         break;
     }
   if(!g_connected)
      return;
   // Drop what was handled, keep the partial rest.
   if(start > 0)
     {
      int rest = g_rx_len - start;
      if(rest > 0)
        {
         uchar tail[];
         ArrayCopy(tail, g_rx, 0, start, rest);
         ArrayCopy(g_rx, tail, 0, 0, rest);
        }
      g_rx_len = rest;
     }
   // A line longer than the limit is skipped up to its newline and reported once.
   if(g_rx_len > MAX_LINE && !HasNewline())
     {
      if(!g_skipping)
         SendError("line_too_long", "line longer than " + IntegerToString(MAX_LINE) + " bytes skipped", "");
      g_skipping = true;
      g_rx_len = 0;
     }
  }

bool HasNewline()
  {
   for(int i = 0; i < g_rx_len; i++)
      if(g_rx[i] == '\n')
         return true;
   return false;
  }

// Reads whatever is available without waiting.
void Poll()
  {
   if(!SocketIsConnected(g_socket))
     {
      Disconnect("the agent closed the connection");
      return;
     }
   uint avail = SocketIsReadable(g_socket);
   if(avail > 0)
     {
      uchar data[];
      int n = SocketRead(g_socket, data, avail, 1);
      if(n < 0)
        {
         Disconnect("read failed, error " + IntegerToString(GetLastError()));
         return;
        }
      if(n > 0)
         ReceiveBytes(data, n);
     }
   if(g_rx_len > 0)
      ProcessLines();
  }

//+------------------------------------------------------------------+
//| Event handlers                                                   |
//+------------------------------------------------------------------+
int OnInit()
  {
   if(InpAgentPort <= 0 || InpAgentPort > 65535)
     {
      LogError("InpAgentPort must be 1-65535");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(InpPollMs < 1 || InpHeartbeatSec < 1 || InpSnapshotSec < 1)
     {
      LogError("InpPollMs, InpHeartbeatSec and InpSnapshotSec must be positive");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(!EventSetMillisecondTimer(InpPollMs))
     {
      LogError("EventSetMillisecondTimer failed, error " + IntegerToString(GetLastError()));
      return INIT_FAILED;
     }
   if(!TerminalInfoInteger(TERMINAL_TRADE_ALLOWED))
      LogError("algo trading is disabled in the terminal: commands will be refused by the trade server");
   g_next_attempt = GetTickCount();
   LogInfo("version " + EA_VERSION + ", agent " + InpAgentHost + ":" + IntegerToString(InpAgentPort));
   return INIT_SUCCEEDED;
  }

void OnDeinit(const int reason)
  {
   EventKillTimer();
   if(g_socket != INVALID_HANDLE)
      SocketClose(g_socket);
   g_socket = INVALID_HANDLE;
   g_connected = false;
  }

void OnTimer()
  {
   uint now = GetTickCount();
   if(!g_connected)
     {
      // GetTickCount wraps every 49.7 days; the signed difference handles it.
      if((int)(now - g_next_attempt) >= 0)
         Connect();
      return;
     }
   Poll();
   if(!g_connected)
      return;
   now = GetTickCount();
   if((int)(now - g_last_snapshot) >= InpSnapshotSec * 1000)
      SendSnapshot("");
   else if((int)(now - g_last_sent) >= InpHeartbeatSec * 1000)
      SendHeartbeat();
  }

void OnTradeTransaction(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   if(g_connected)
      SendTx(trans, request, result);
  }
//+------------------------------------------------------------------+
