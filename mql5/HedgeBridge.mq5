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

#define EA_VERSION        "1.1.0"
#define PROTOCOL_VERSION  1
#define MAX_LINE          1048576   // longest accepted line, bytes (the protocol's limit)
#define RING_SIZE         1024      // trading commands remembered for at-most-once execution
#define ASYNC_RING_SIZE   256       // request ids remembered for tx REQUEST
#define DEFAULT_PAGE_SIZE 500
#define MAX_PAGE_SIZE     2000
#define CONNECT_TIMEOUT   500       // ms; SocketConnect blocks at most this long
#define SEND_TIMEOUT      2000      // ms per SocketSend
#define MAX_LINES_PER_TICK 64       // lines handled per timer tick, so the terminal stays responsive
#define BACKOFF_MIN_MS    500
#define BACKOFF_MAX_MS    10000
#define STABLE_MS         10000     // a link up this long resets the backoff
#define SETTLE_MS         1000      // the trade server link must be up this long before a snapshot
#define READY_RETRY_MS    1000      // how often to look again while the terminal is not ready
#define LINE_BUDGET       (MAX_LINE - 4096) // bytes of records per line, the rest for the envelope
#define MAX_COMMENT       31        // characters of an order comment the trade server keeps
#define LOCK_PREFIX       "HedgeBridge.port."  // + the agent port: one instance per agent link
#define LOCK_LEASE_SEC    60        // a holder that did not renew for this long has died

//--- retcodes used for commands that are not trade requests
#define RC_PLACED  10008
#define RC_DONE    10009
#define RC_DONE_PARTIAL 10010
#define RC_ERROR   10011
#define RC_INVALID 10013
#define RC_SERVER_DISABLES_AT 10026
#define RC_INVALID_FILL 10030
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
uint   g_connected_at = 0;          // GetTickCount() of the handshake
long   g_hello_login = 0;           // the login the current connection said hello with
bool   g_server_link = false;       // TERMINAL_CONNECTED as last seen
uint   g_server_since = 0;          // GetTickCount() of its last change
bool   g_snapshot_due = false;      // the trade server link came back: send a fresh snapshot
string g_wait_reason = "";          // why the last connect attempt waited, logged once per reason

//--- one instance per terminal (and so per account): see LockTake()
string g_lock_name = "";            // LOCK_PREFIX + InpAgentPort
double g_lock_value = 0;            // our value of that global variable; 0: not held
int    g_instance_tag = 0;          // 1-999, tells instances apart within one second
string g_instance = "";             // hello.instance: the same across this instance's reconnections

//--- at-most-once ring: cmd_id -> the body of its first reply
string g_ring_ids[RING_SIZE];
string g_ring_replies[RING_SIZE];   // "" while the command is executing
int    g_ring_next = 0;

//--- request_id -> cmd_id (OrderSend and OrderSendAsync), so the REQUEST transaction names its command
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

// Whether the terminal can give a truthful handshake. At terminal start the EA runs before the
// account is logged in (ACCOUNT_LOGIN 0: the agent would refuse the hello) and before positions are
// synchronised with the trade server (the agent replaces its whole view with the snapshot), so the
// connection waits for TERMINAL_CONNECTED and a login, and for the server link to have settled.
bool TerminalReady(string &why)
  {
   if(TerminalInfoInteger(TERMINAL_CONNECTED) == 0)
     {
      why = "the terminal is not connected to the trade server";
      return false;
     }
   if(AccountInfoInteger(ACCOUNT_LOGIN) == 0)
     {
      why = "no account is logged in yet";
      return false;
     }
   if((int)(GetTickCount() - g_server_since) < SETTLE_MS)
     {
      why = "the trade server connection has just come up";
      return false;
     }
   return true;
  }

// Follows TERMINAL_CONNECTED. When the trade server link comes back while the agent is connected,
// positions may have changed meanwhile: a fresh snapshot is sent once the link has settled.
void WatchServerLink()
  {
   bool up = TerminalInfoInteger(TERMINAL_CONNECTED) != 0;
   if(up == g_server_link)
      return;
   g_server_link = up;
   g_server_since = GetTickCount();
   if(g_connected)
     {
      LogInfo(up ? "trade server connection restored; a fresh snapshot follows"
                 : "trade server connection lost");
      if(up)
         g_snapshot_due = true;
     }
  }

// Writes the first Market Watch symbol to MQL5/Files/HedgeBridge-<login>.symbol: the launcher opens
// the bridge's chart on it next time, a name this broker has (EURUSD does not exist where symbols
// carry a suffix). Only a convenience: a failure is logged and changes nothing else.
void RememberChartSymbol()
  {
   string sym = SymbolName(0, true);
   if(sym == "")
      return;
   string name = "HedgeBridge-" + IntegerToString(AccountInfoInteger(ACCOUNT_LOGIN)) + ".symbol";
   int h = FileOpen(name, FILE_WRITE | FILE_TXT | FILE_ANSI, '\t', CP_UTF8);
   if(h == INVALID_HANDLE)
     {
      LogDebug("cannot write " + name + ", error " + IntegerToString(GetLastError()));
      return;
     }
   FileWriteString(h, sym + "\r\n");
   FileClose(h);
  }

// Opens the connection and sends the handshake: hello, symbols, snapshot.
bool Connect()
  {
   string why = "";
   if(!TerminalReady(why))
     {
      if(why != g_wait_reason)
         LogInfo("waiting before connecting to the agent: " + why);
      g_wait_reason = why;
      g_next_attempt = GetTickCount() + READY_RETRY_MS;
      return false;
     }
   g_wait_reason = "";
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
               (err == 4014 ? " (the address is not allowed: Tools > Options > Expert Advisors, tick \"Allow WebRequest for listed URL\" and add " + InpAgentHost + ")" : ""));
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
   g_snapshot_due = false;
   g_connected_at = GetTickCount();
   g_hello_login = AccountInfoInteger(ACCOUNT_LOGIN);
   LogInfo("connected to " + InpAgentHost + ":" + IntegerToString(InpAgentPort));
   SendHello();
   SendSymbols();
   SendSnapshot("");
   RememberChartSymbol();
   // The backoff is reset only once the link has proved stable (OnTimer): an agent that accepts and
   // then refuses (another login, a second instance) must not be retried every half second.
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
   // The agent skips a line over the limit; sending it would only cost a seq gap. Lists are split
   // before this point (SendSymbols, CmdHistory), so only a pathological snapshot can get here.
   if(len - 1 > MAX_LINE)
     {
      LogError(kind + " of " + IntegerToString(len) + " bytes exceeds the line limit; not sent");
      g_seq--;
      return false;
     }
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
                 "," + JKey("time") + JInt(NowMs()) +
                 "," + JKey("trade_expert") + JBool(AccountInfoInteger(ACCOUNT_TRADE_EXPERT) != 0) +
                 "," + JKey("account_trade_allowed") + JBool(AccountInfoInteger(ACCOUNT_TRADE_ALLOWED) != 0) +
                 "," + JKey("instance") + JStr(g_instance);
   WriteMessage("hello", body);
  }

// Bytes of a string once sent as UTF-8.
int Utf8Len(const string s)
  {
   uchar bytes[];
   int n = StringToCharArray(s, bytes, 0, WHOLE_ARRAY, CP_UTF8);
   // The count includes the terminating zero.
   return n > 0 ? n - 1 : 0;
  }

// symbols: every symbol in Market Watch, in as many `symbols` messages as the line limit needs
// (thousands of symbols do not fit in one); during the handshake the snapshot ends the list.
void SendSymbols()
  {
   string list = "";
   int bytes = 0;
   int total = SymbolsTotal(true);
   for(int i = 0; i < total && g_connected; i++)
     {
      string sym = SymbolName(i, true);
      if(sym == "")
         continue;
      string item = SymbolJson(sym);
      int len = Utf8Len(item) + 1;
      if(list != "" && bytes + len > LINE_BUDGET)
        {
         WriteMessage("symbols", JKey("symbols") + "[" + list + "]");
         list = "";
         bytes = 0;
        }
      if(list != "")
         list += ",";
      list += item;
      bytes += len;
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
// The filling mode for a request: the one asked for, or with "auto" (or none) the one MT5 takes
// (FillingModes::choose_for in crates/domain is the same rule):
// - a pending order: RETURN, whatever the execution mode (the reference of ORDER_TYPE_FILLING);
// - a market order: FOK, then IOC from SYMBOL_FILLING_MODE, then RETURN unless the symbol uses
//   Market execution, which does not take RETURN. With none of them there is no valid mode: false
//   with `refuse` = 10030 and an explanation, instead of sending what the server would refuse.
// Closes go the same way, which is what prevents retcode 10030.
bool ChooseFilling(string sym, long action, ENUM_ORDER_TYPE_FILLING &filling, string &why, uint &refuse)
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
   if(action == TRADE_ACTION_PENDING)
     {
      filling = ORDER_FILLING_RETURN;
      return true;
     }
   long flags = 0;
   long exemode = SYMBOL_TRADE_EXECUTION_MARKET;
   if(sym == "" || !SymbolInfoInteger(sym, SYMBOL_FILLING_MODE, flags) ||
      !SymbolInfoInteger(sym, SYMBOL_TRADE_EXEMODE, exemode))
     {
      // An unknown symbol: the caller answers for it (10013), not the filling rule.
      filling = ORDER_FILLING_FOK;
      return true;
     }
   if((flags & SYMBOL_FILLING_FOK) != 0)
      filling = ORDER_FILLING_FOK;
   else if((flags & SYMBOL_FILLING_IOC) != 0)
      filling = ORDER_FILLING_IOC;
   else if(exemode != SYMBOL_TRADE_EXECUTION_MARKET)
      filling = ORDER_FILLING_RETURN;
   else
     {
      why = sym + " uses market execution and allows neither FOK nor IOC, and RETURN is not valid there: no filling mode can be sent";
      refuse = RC_INVALID_FILL;
      return false;
     }
   return true;
  }

// The agent names positions by POSITION_IDENTIFIER (it is what deals and orders carry);
// MqlTradeRequest::position takes POSITION_TICKET. The two are equal until the server re-opens the
// position (swap rollover, split), which changes the ticket and keeps the identifier. A number that
// is no open position's identifier is passed on unchanged: it may already be a ticket, and if it is
// neither the server answers for it.
ulong PositionTicketOf(ulong id)
  {
   if(id == 0)
      return 0;
   int total = PositionsTotal();
   for(int i = 0; i < total; i++)
     {
      ulong t = PositionGetTicket(i);
      if(t != 0 && (ulong)PositionGetInteger(POSITION_IDENTIFIER) == id)
         return t;
     }
   return id;
  }

// A price on the symbol's tick grid: the server refuses prices between ticks (10015/10016), and an
// agent computing in decimals may send one (an SL at a round figure on a 0.25-tick future).
double NormalizePrice(string sym, double price)
  {
   if(price <= 0 || sym == "")
      return price;
   double tick = SymbolInfoDouble(sym, SYMBOL_TRADE_TICK_SIZE);
   int digits = (int)SymbolInfoInteger(sym, SYMBOL_DIGITS);
   if(tick > 0)
      price = MathRound(price / tick) * tick;
   return NormalizeDouble(price, digits);
  }

// Fills an MqlTradeRequest from the parsed command; false (with why) on an invalid field, or when
// the request cannot succeed: then `refuse` holds the retcode to answer with (0: a bad field).
bool BuildRequest(MqlTradeRequest &req, string &why, uint &refuse)
  {
   ZeroMemory(req);
   refuse = 0;
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
   // The server keeps 31 characters; cutting here keeps the stored and the sent comment equal.
   if(StringLen(req.comment) > MAX_COMMENT)
      req.comment = StringSubstr(req.comment, 0, MAX_COMMENT);
   req.position = PositionTicketOf((ulong)JGetLong("position", 0));
   req.position_by = PositionTicketOf((ulong)JGetLong("position_by", 0));
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
      ENUM_ORDER_TYPE_FILLING filling = ORDER_FILLING_FOK;
      if(!ChooseFilling(req.symbol, action, filling, why, refuse))
         return false;
      req.type_filling = filling;
     }
   // Prices on the tick grid of the symbol the request is about (for SL/TP and order changes the
   // symbol may be left out: it is the position's or the order's).
   string price_symbol = req.symbol;
   if(price_symbol == "" && req.position > 0 && PositionSelectByTicket(req.position))
      price_symbol = PositionGetString(POSITION_SYMBOL);
   if(price_symbol == "" && req.order > 0 && OrderSelect(req.order))
      price_symbol = OrderGetString(ORDER_SYMBOL);
   req.price = NormalizePrice(price_symbol, req.price);
   req.stoplimit = NormalizePrice(price_symbol, req.stoplimit);
   req.sl = NormalizePrice(price_symbol, req.sl);
   req.tp = NormalizePrice(price_symbol, req.tp);
   // A market order with price 0 means "at the current price".
   if(action == TRADE_ACTION_DEAL && req.price <= 0)
     {
      MqlTick tick;
      if(SymbolInfoTick(req.symbol, tick))
         req.price = (req.type == ORDER_TYPE_SELL) ? tick.bid : tick.ask;
     }
   return true;
  }

// The position (identifier) a market order opened or changed; MqlTradeResult does not say. The
// deal knows, but right after a synchronous OrderSend it may not be in the terminal's history yet
// (HistoryDealSelect fails). Then: on a hedging account the identifier of a new position is the
// ticket of the order that opened it, and a close names its position; on a netting account it is
// the symbol's position. The tx that follows carries the deal with its position_id, from which the
// agent corrects a guess.
ulong ReplyPosition(const MqlTradeRequest &req, const MqlTradeResult &res, ulong requested)
  {
   if(res.deal != 0 && HistoryDealSelect(res.deal))
     {
      ulong id = (ulong)HistoryDealGetInteger(res.deal, DEAL_POSITION_ID);
      if(id != 0)
         return id;
     }
   if(req.action != TRADE_ACTION_DEAL || (res.retcode != RC_DONE && res.retcode != RC_DONE_PARTIAL))
      return requested;
   if(AccountInfoInteger(ACCOUNT_MARGIN_MODE) == ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
      return requested != 0 ? requested : res.order;
   if(PositionSelect(req.symbol))
      return (ulong)PositionGetInteger(POSITION_IDENTIFIER);
   return requested;
  }

// order_send: OrderSend or OrderSendAsync; at most once per cmd_id (the caller checks the ring).
void CmdOrderSend(string cmd_id)
  {
   MqlTradeRequest req;
   string why = "";
   uint refuse = 0;
   if(!BuildRequest(req, why, refuse))
     {
      if(refuse != 0)
        {
         // Could not succeed (no valid filling mode): answered like the server would, with why.
         string refused_body = ReplyBody(cmd_id, refuse, 0, 0, 0, 0, 0, 0, 0, why, 0, 0, "", "");
         RingStore(cmd_id, refused_body);
         SendReply(refused_body);
         return;
        }
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
   // The REQUEST transaction carries the request_id of the result, for OrderSend as well as for
   // OrderSendAsync: remembered so that it names its command in both cases.
   if(res.request_id != 0)
     {
      g_async_ids[g_async_next] = res.request_id;
      g_async_cmds[g_async_next] = cmd_id;
      g_async_next = (g_async_next + 1) % ASYNC_RING_SIZE;
     }
   ulong position = ReplyPosition(req, res, (ulong)JGetLong("position", 0));
   string body = ReplyBody(cmd_id, retcode, res.deal, res.order, position, res.volume, res.price,
                           res.bid, res.ask, comment, res.request_id, res.retcode_external,
                           req.symbol, "");
   RingStore(cmd_id, body);
   SendReply(body);
  }

// order_check: OrderCheck, with MqlTradeCheckResult in `check`: balance, equity, profit, margin,
// free margin and margin level as they would be after the request. Read-only, so never kept in the
// ring: a resent id is checked again. Success is answered as 10009, like every command.
void CmdOrderCheck(string cmd_id)
  {
   MqlTradeRequest req;
   string why = "";
   uint refuse = 0;
   if(!BuildRequest(req, why, refuse))
     {
      if(refuse != 0)
         SendSimpleReply(cmd_id, refuse, why, "");
      else
         SendError("bad_message", why, cmd_id);
      return;
     }
   if((req.action == TRADE_ACTION_DEAL || req.action == TRADE_ACTION_PENDING) &&
      (req.symbol == "" || !SymbolSelect(req.symbol, true)))
     {
      // The same answer order_send gives for a symbol the terminal does not have.
      SendSimpleReply(cmd_id, RC_INVALID, "unknown symbol \"" + req.symbol + "\"", "");
      return;
     }
   MqlTradeCheckResult chk;
   ZeroMemory(chk);
   ResetLastError();
   bool ok = OrderCheck(req, chk);
   uint retcode = chk.retcode;
   string comment = chk.comment;
   if(ok && retcode == 0)
      // OrderCheck reports success as 0.
      retcode = RC_DONE;
   else
      if(!ok && retcode == 0)
        {
         // Refused without a trade server code (a bad structure): never answered as success.
         retcode = RC_ERROR;
         comment = "OrderCheck failed, error " + IntegerToString(GetLastError());
        }
   string extra = JKey("check") + "{" + JKey("balance") + JMoney(chk.balance) +
                  "," + JKey("equity") + JMoney(chk.equity) +
                  "," + JKey("profit") + JMoney(chk.profit) +
                  "," + JKey("margin") + JMoney(chk.margin) +
                  "," + JKey("margin_free") + JMoney(chk.margin_free) +
                  "," + JKey("margin_level") + JMoney(chk.margin_level) + "}";
   SendSimpleReply(cmd_id, retcode, comment, extra);
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
   int in_page = 0, page_bytes = 0;
   // The cursor counts records of the sorted range already sent; history only grows at its end.
   // A page ends at page_size records or before the line limit, whichever comes first: 2,000
   // orders with long comments are more than 1 MiB.
   while(order_pos < orders_total || deal_pos < deals_total)
     {
      bool is_order = order_pos < orders_total;
      string record = is_order ? HistoryOrderJson((ulong)okeys[order_pos][1])
                               : DealJson((ulong)dkeys[deal_pos][1]);
      int len = Utf8Len(record) + 1;
      if(in_page > 0 && page_bytes + len > LINE_BUDGET)
        {
         SendHistoryPage(cmd_id, page, orders, deals,
                         IntegerToString(order_pos) + ":" + IntegerToString(deal_pos), false);
         page++;
         orders = "";
         deals = "";
         in_page = 0;
         page_bytes = 0;
        }
      if(is_order)
        {
         orders += (orders == "" ? "" : ",") + record;
         order_pos++;
         sent_orders++;
        }
      else
        {
         deals += (deals == "" ? "" : ",") + record;
         deal_pos++;
         sent_deals++;
        }
      in_page++;
      page_bytes += len;
      if(in_page >= page_size && (order_pos < orders_total || deal_pos < deals_total))
        {
         SendHistoryPage(cmd_id, page, orders, deals,
                         IntegerToString(order_pos) + ":" + IntegerToString(deal_pos), false);
         page++;
         orders = "";
         deals = "";
         in_page = 0;
         page_bytes = 0;
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
      if(AccountInfoInteger(ACCOUNT_TRADE_EXPERT) == 0)
        {
         // The server would refuse every order from an Expert Advisor on this account; say so
         // plainly instead of a bare retcode.
         string refused = ReplyBody(cmd_id, RC_SERVER_DISABLES_AT, 0, 0, 0, 0, 0, 0, 0,
                                    "trading by Expert Advisors is disabled for this account (ACCOUNT_TRADE_EXPERT is false); ask the broker to enable it",
                                    0, 0, "", "");
         RingStore(cmd_id, refused);
         SendReply(refused);
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

// An error from the agent. After these codes the agent closes the connection: retrying at once would
// only be refused again, so the next attempt waits the longest backoff.
void HandleAgentError(string code, string message)
  {
   LogError("agent reports: " + code + ": " + message);
   if(code == "login_mismatch" || code == "unsupported_version" || code == "handshake" ||
      code == "not_ready" || code == "duplicate")
     {
      if(code == "duplicate")
         LogError("another terminal or EA is already connected to this agent for account " +
                  IntegerToString(AccountInfoInteger(ACCOUNT_LOGIN)) + "; run one HedgeBridge per account");
      g_backoff = BACKOFF_MAX_MS;
     }
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
      HandleAgentError(JGetStr("code", ""), JGetStr("message", ""));
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
         // SocketIsReadable may report bytes speculatively on an empty buffer (typically the first
         // call), and SocketRead then returns -1 when nothing arrives within its timeout. With the
         // socket still connected that is "no data yet"; a dead peer shows up here as a closed
         // socket, or at the latest as the heartbeat's failed SocketSend.
         int err = GetLastError();
         ResetLastError();
         if(!SocketIsConnected(g_socket))
           {
            Disconnect("read failed, error " + IntegerToString(err));
            return;
           }
         LogDebug("no data to read yet (SocketRead error " + IntegerToString(err) + ")");
        }
      else if(n > 0)
         ReceiveBytes(data, n);
     }
   if(g_rx_len > 0)
      ProcessLines();
  }

//+------------------------------------------------------------------+
//| One instance per terminal                                        |
//| A terminal runs one account, and a profile-restored chart plus   |
//| the start-up chart can run the EA twice: each copy would keep    |
//| its own ring of executed cmd_ids (a resent command could trade   |
//| twice) and replace the other's connection. Copies for the same   |
//| agent port share one temporary terminal global variable (copies  |
//| for other agents, e.g. a tumbler's, are separate links and may   |
//| run), changed only with                                          |
//| GlobalVariableSetOnCondition (atomic between EAs of a terminal). |
//| Its value is <lease second> * 1000 + <instance tag>: who holds   |
//| it and when the holder last renewed. A holder that stopped       |
//| without OnDeinit stops renewing, and after LOCK_LEASE_SEC its    |
//| lease may be taken over. The variable is temporary, so it does   |
//| not outlive the terminal.                                        |
//+------------------------------------------------------------------+
double LockValue(datetime when) { return (double)(long)when * 1000.0 + (double)g_instance_tag; }
long   LockSecond(double value) { return (long)MathFloor(value / 1000.0); }

// Takes the lock; false (with who holds it in `why`) when a live instance has it.
bool LockTake(string &why)
  {
   if(!GlobalVariableCheck(g_lock_name) && !GlobalVariableTemp(g_lock_name) && !GlobalVariableCheck(g_lock_name))
     {
      why = "cannot create the terminal global variable " + g_lock_name + ", error " + IntegerToString(GetLastError());
      return false;
     }
   for(int attempt = 0; attempt < 3; attempt++)
     {
      long now = (long)TimeLocal();
      double held = GlobalVariableGet(g_lock_name);
      if(held != 0 && now - LockSecond(held) < LOCK_LEASE_SEC)
        {
         why = "another HedgeBridge for agent port " + IntegerToString(InpAgentPort) +
               " is already running in this terminal (instance " +
               IntegerToString((long)MathMod(held, 1000.0)) + ", renewed " +
               IntegerToString(now - LockSecond(held)) + " s ago)";
         return false;
        }
      // Free (0) or a stale lease: swap in ours only if nobody changed it since we read it.
      double mine = LockValue((datetime)now);
      if(GlobalVariableSetOnCondition(g_lock_name, mine, held))
        {
         g_lock_value = mine;
         return true;
        }
     }
   why = "another HedgeBridge took the terminal global variable " + g_lock_name + " at the same time";
   return false;
  }

// Renews the lease (at most once a second); false when another instance took the lock over, which
// happens only after this one stalled for LOCK_LEASE_SEC.
bool LockRenew()
  {
   if(g_lock_value == 0)
      return false;
   long now = (long)TimeLocal();
   if(now == LockSecond(g_lock_value))
      return true;
   double next = LockValue((datetime)now);
   if(!GlobalVariableSetOnCondition(g_lock_name, next, g_lock_value))
      return false;
   g_lock_value = next;
   return true;
  }

void LockRelease()
  {
   if(g_lock_value != 0)
      GlobalVariableSetOnCondition(g_lock_name, 0, g_lock_value);
   g_lock_value = 0;
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
   g_lock_name = LOCK_PREFIX + IntegerToString(InpAgentPort);
   g_instance_tag = (int)(((ulong)ChartID() ^ GetMicrosecondCount()) % 999) + 1;
   g_instance = IntegerToString(ChartID()) + "-" + IntegerToString(g_instance_tag);
   string held_by = "";
   if(!LockTake(held_by))
     {
      // INIT_FAILED removes this copy from its chart; the running one is left alone.
      LogError(held_by + "; this copy stops: one HedgeBridge per account");
      return INIT_FAILED;
     }
   if(!EventSetMillisecondTimer(InpPollMs))
     {
      LogError("EventSetMillisecondTimer failed, error " + IntegerToString(GetLastError()));
      LockRelease();
      return INIT_FAILED;
     }
   if(!TerminalInfoInteger(TERMINAL_TRADE_ALLOWED))
      LogError("algo trading is disabled in the terminal: commands will be refused by the trade server");
   g_next_attempt = GetTickCount();
   g_server_link = TerminalInfoInteger(TERMINAL_CONNECTED) != 0;
   g_server_since = GetTickCount();
   LogInfo("version " + EA_VERSION + ", instance " + g_instance + ", agent " + InpAgentHost + ":" +
           IntegerToString(InpAgentPort));
   return INIT_SUCCEEDED;
  }

void OnDeinit(const int reason)
  {
   EventKillTimer();
   if(g_socket != INVALID_HANDLE)
      SocketClose(g_socket);
   g_socket = INVALID_HANDLE;
   g_connected = false;
   LockRelease();
  }

void OnTimer()
  {
   if(!LockRenew())
     {
      LogError("another HedgeBridge took over this terminal after this one stalled; this copy stops");
      if(g_connected)
         Disconnect("another instance took over");
      EventKillTimer();
      g_lock_value = 0;
      ExpertRemove();
      return;
     }
   WatchServerLink();
   uint now = GetTickCount();
   if(!g_connected)
     {
      // GetTickCount wraps every 49.7 days; the signed difference handles it.
      if((int)(now - g_next_attempt) >= 0)
         Connect();
      return;
     }
   // Another account logged in on this terminal: the agent must see a new hello.
   if(AccountInfoInteger(ACCOUNT_LOGIN) != g_hello_login)
     {
      Disconnect("the terminal switched to account " + IntegerToString(AccountInfoInteger(ACCOUNT_LOGIN)));
      return;
     }
   if(g_backoff != BACKOFF_MIN_MS && (int)(now - g_connected_at) >= STABLE_MS)
      g_backoff = BACKOFF_MIN_MS;
   Poll();
   if(!g_connected)
      return;
   now = GetTickCount();
   if(g_snapshot_due && g_server_link && (int)(now - g_server_since) >= SETTLE_MS)
     {
      g_snapshot_due = false;
      SendSnapshot("");
     }
   else if((int)(now - g_last_snapshot) >= InpSnapshotSec * 1000)
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
