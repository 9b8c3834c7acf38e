//! The terminal line protocol of hedge, and the agent's client for it.
//!
//! An MT5 terminal (through the hedge Expert Advisor, or `hedge sim`) connects out to an agent over TCP
//! and the two exchange newline-delimited JSON objects, one message per line, as specified in
//! `docs/protocol.md`. The terminal says `hello`, sends its `symbols` and a full `snapshot`, then pushes
//! every trade transaction (`tx`), heartbeats and periodic snapshots; the agent sends `cmd`s, each with a
//! unique `cmd_id`, which the terminal executes at most once and answers with one `reply`. This crate
//! holds the typed messages ([`message`]), the framing and codec with its error classification
//! ([`codec`]), and [`Terminal`], the async agent-side client every agent is built on ([`terminal`]).

pub mod codec;
mod command;
pub mod message;
pub mod terminal;

pub use codec::{
    check_version, decode_agent, decode_terminal, encode, encode_limited, EncodeError, LineBuffer,
    LineReader, ProtocolError, MAX_LINE,
};
pub use message::{json_len, split_by_size};
pub use message::{
    AccountInfo, AgentMsg, CheckResult, Cmd, DealRecord, ErrorCode, ErrorMsg, Filling, Heartbeat,
    Hello, HistoryPage, HistoryRange, HistorySummary, InvalidMessage, Op, OrderRecord,
    PositionRecord, Reply, Snapshot, SymbolInfo, Symbols, TerminalMsg, TimeMs, TradeRequest, Tx,
    LINE_RESERVE, PROTOCOL_VERSION,
};
pub use terminal::{
    connected_to_itself, free_listen_port, History, Terminal, TerminalConfig, TerminalError,
    TerminalEvent, TerminalListener, TerminalState,
};
