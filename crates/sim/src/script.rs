//! Scripted scenarios: timed trades on the simulated terminal (see `docs/simulator.md`).
//!
//! One step per line, `at <time> <action> [args] [key=value ...]`; `#` starts a comment. Times are
//! offsets from the start (`250ms`, `2s`, `1.5s`, `1m`). Positions are named by ticket (`123`) or by
//! `#N`, the position opened by the N-th `open` of the script.

use crate::terminal::SimTerminal;
use hedge_domain::{Magic, OrderTime, OrderType, PositionId, Price, Side, TradeAction, Volume};
use hedge_protocol::{Filling, TradeRequest};
use std::sync::Arc;
use std::time::Duration;

/// A position named in a script.
#[derive(Clone, Debug, PartialEq)]
pub enum PosRef {
    Ticket(PositionId),
    /// 1-based index of the script's `open` steps.
    Opened(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Open {
        symbol: String,
        side: Side,
        volume: Volume,
        magic: Magic,
        comment: String,
        sl: Price,
        tp: Price,
        filling: Filling,
    },
    Close {
        position: PosRef,
    },
    Partial {
        position: PosRef,
        volume: Volume,
    },
    Modify {
        position: PosRef,
        sl: Price,
        tp: Price,
    },
    Pending {
        symbol: String,
        order_type: OrderType,
        volume: Volume,
        price: Price,
        magic: Magic,
        comment: String,
    },
    Quote {
        symbol: String,
        bid: Price,
        /// `None` keeps the symbol's current spread.
        ask: Option<Price>,
    },
    Disconnect,
}

impl Action {
    /// The symbol the action trades or quotes, if it names one.
    fn symbol_mut(&mut self) -> Option<&mut String> {
        match self {
            Action::Open { symbol, .. }
            | Action::Pending { symbol, .. }
            | Action::Quote { symbol, .. } => Some(symbol),
            Action::Close { .. }
            | Action::Partial { .. }
            | Action::Modify { .. }
            | Action::Disconnect => None,
        }
    }

    /// Replaces a canonical symbol name (`EURUSD`) with the account's (`EURUSD.r`).
    pub fn map_symbol<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), crate::symbols::SymbolNameError> {
        if let Some(symbol) = self.symbol_mut() {
            *symbol = crate::symbols::account_name(names, symbol)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
    pub line: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("script line {line}: {problem}")]
pub struct ScriptError {
    pub line: usize,
    pub problem: ScriptProblem,
}

/// What is wrong with a script line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptProblem {
    #[error("expected: at <time> <action> ...")]
    NotAStep,
    #[error("bad time {0:?}")]
    Time(String),
    #[error(transparent)]
    Action(#[from] ActionError),
    /// A symbol the account does not have (or names ambiguously).
    #[error(transparent)]
    Symbol(#[from] crate::symbols::SymbolNameError),
}

/// Why the words of an action (a script step's or a control line's) are refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    #[error("{0}: missing arguments")]
    MissingArguments(String),
    /// More arguments than the action takes; the text says what it takes.
    #[error("{0}")]
    ExtraArguments(&'static str),
    #[error("bad position reference {0:?}")]
    PositionReference(String),
    #[error("bad position {0:?} (a ticket or #N)")]
    Position(String),
    #[error("bad volume {0:?}")]
    Volume(String),
    #[error("bad price {0:?}")]
    Price(String),
    #[error("ask {ask} is below bid {bid}")]
    AskBelowBid { ask: String, bid: Price },
    #[error("bad order type {0:?}")]
    OrderType(String),
    #[error("{0} is not a pending type")]
    NotPending(String),
    /// A side or filling mode the domain does not know; the text is its refusal.
    #[error("{0}")]
    Word(String),
    #[error("expected key=value, got {0:?}")]
    NotKeyValue(String),
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("bad magic {0:?}")]
    Magic(String),
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 0.001)
    };
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| Duration::from_secs_f64(v * unit))
}

/// Splits on whitespace, keeping `"quoted strings"` (also in `key="a b"`) together.
pub(crate) fn tokens(line: &str) -> Result<Vec<String>, ActionError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut has = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                has = true;
            }
            c if c.is_whitespace() && !quoted => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if quoted {
        return Err(ActionError::UnterminatedQuote);
    }
    if has {
        out.push(cur);
    }
    Ok(out)
}

fn pos_ref(s: &str) -> Result<PosRef, ActionError> {
    if let Some(n) = s.strip_prefix('#') {
        match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(PosRef::Opened(n)),
            _ => Err(ActionError::PositionReference(s.to_owned())),
        }
    } else {
        s.parse::<u64>()
            .map(|t| PosRef::Ticket(PositionId(t)))
            .map_err(|_| ActionError::Position(s.to_owned()))
    }
}

fn volume(s: &str) -> Result<Volume, ActionError> {
    s.parse::<Volume>()
        .ok()
        .filter(|v| v.is_positive())
        .ok_or_else(|| ActionError::Volume(s.to_owned()))
}

fn price(s: &str) -> Result<Price, ActionError> {
    s.parse::<Price>()
        .ok()
        .filter(|p| !p.is_negative())
        .ok_or_else(|| ActionError::Price(s.to_owned()))
}

fn order_type(s: &str) -> Result<OrderType, ActionError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "buy" => OrderType::Buy,
        "sell" => OrderType::Sell,
        "buy_limit" => OrderType::BuyLimit,
        "sell_limit" => OrderType::SellLimit,
        "buy_stop" => OrderType::BuyStop,
        "sell_stop" => OrderType::SellStop,
        other => return Err(ActionError::OrderType(other.to_owned())),
    })
}

struct Options {
    magic: Magic,
    comment: String,
    sl: Price,
    tp: Price,
    filling: Filling,
}

fn options(args: &[String]) -> Result<Options, ActionError> {
    let mut o = Options {
        magic: Magic(0),
        comment: String::new(),
        sl: Price::ZERO,
        tp: Price::ZERO,
        filling: Filling::Auto,
    };
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| ActionError::NotKeyValue(a.clone()))?;
        match k {
            "magic" => o.magic = v.parse().map_err(|_| ActionError::Magic(v.to_owned()))?,
            "comment" => o.comment = v.to_owned(),
            "sl" => o.sl = price(v)?,
            "tp" => o.tp = price(v)?,
            "filling" => {
                o.filling = if v.eq_ignore_ascii_case("auto") {
                    Filling::Auto
                } else {
                    Filling::Mode(v.parse().map_err(ActionError::Word)?)
                }
            }
            other => return Err(ActionError::UnknownOption(other.to_owned())),
        }
    }
    Ok(o)
}

/// One action from its words (`open EURUSD buy 0.1 magic=7`), as a script step has it after
/// `at <time>` and a control line has it alone.
pub(crate) fn parse_action(t: &[String]) -> Result<Action, ActionError> {
    let word = t.first().map(String::as_str).unwrap_or("");
    let need = |n: usize| -> Result<(), ActionError> {
        if t.len() < n {
            Err(ActionError::MissingArguments(word.to_owned()))
        } else {
            Ok(())
        }
    };
    Ok(match word {
        "open" => {
            need(4)?;
            let side: Side = t[2].parse().map_err(ActionError::Word)?;
            let o = options(&t[4..])?;
            Action::Open {
                symbol: t[1].clone(),
                side,
                volume: volume(&t[3])?,
                magic: o.magic,
                comment: o.comment,
                sl: o.sl,
                tp: o.tp,
                filling: o.filling,
            }
        }
        "close" => {
            need(2)?;
            if t.len() > 2 {
                return Err(ActionError::ExtraArguments("close takes one position"));
            }
            Action::Close {
                position: pos_ref(&t[1])?,
            }
        }
        "partial" => {
            need(3)?;
            Action::Partial {
                position: pos_ref(&t[1])?,
                volume: volume(&t[2])?,
            }
        }
        "modify" => {
            need(2)?;
            let o = options(&t[2..])?;
            Action::Modify {
                position: pos_ref(&t[1])?,
                sl: o.sl,
                tp: o.tp,
            }
        }
        "pending" => {
            need(5)?;
            let o = options(&t[5..])?;
            let order_type = order_type(&t[2])?;
            if !order_type.is_pending() {
                return Err(ActionError::NotPending(t[2].clone()));
            }
            Action::Pending {
                symbol: t[1].clone(),
                order_type,
                volume: volume(&t[3])?,
                price: price(&t[4])?,
                magic: o.magic,
                comment: o.comment,
            }
        }
        "quote" => {
            need(3)?;
            if t.len() > 4 {
                return Err(ActionError::ExtraArguments(
                    "quote takes a symbol, a bid and an ask (optional)",
                ));
            }
            let bid = price(&t[2])?;
            let ask = t.get(3).map(|a| price(a)).transpose()?;
            if ask.is_some_and(|ask| ask < bid) {
                return Err(ActionError::AskBelowBid {
                    ask: t[3].clone(),
                    bid,
                });
            }
            Action::Quote {
                symbol: t[1].clone(),
                bid,
                ask,
            }
        }
        "disconnect" => Action::Disconnect,
        other => return Err(ActionError::UnknownAction(other.to_owned())),
    })
}

impl Script {
    pub fn parse(text: &str) -> Result<Script, ScriptError> {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let err = |problem: ScriptProblem| ScriptError { line, problem };
            let t = tokens(trimmed).map_err(|e| err(e.into()))?;
            if t.len() < 3 || t[0] != "at" {
                return Err(err(ScriptProblem::NotAStep));
            }
            let at = parse_duration(&t[1]).ok_or_else(|| err(ScriptProblem::Time(t[1].clone())))?;
            let action = parse_action(&t[2..]).map_err(|e| err(e.into()))?;
            steps.push(Step { at, action, line });
        }
        // Stable: steps at the same time keep their order.
        steps.sort_by_key(|s| s.at);
        Ok(Script { steps })
    }

    /// Puts the account's symbol names in place of canonical ones (see
    /// [`crate::symbols::account_name`]); a symbol the account lacks is an error naming its line.
    pub fn map_symbols(&mut self, names: &[String]) -> Result<(), ScriptError> {
        for step in &mut self.steps {
            step.action
                .map_symbol(names.iter().map(String::as_str))
                .map_err(|e| ScriptError {
                    line: step.line,
                    problem: e.into(),
                })?;
        }
        Ok(())
    }
}

/// What carrying out one action gave.
#[derive(Debug)]
pub enum Outcome {
    /// The terminal's answer to a trade.
    Reply(Box<hedge_protocol::Reply>),
    /// A quote was set or the link dropped: nothing to answer.
    Done,
    /// The action names a position (`#N`) that was never opened.
    NotOpened,
}

/// Carries out one action on `terminal`. `opened` lists the positions of the `open` actions so far,
/// so `#N` names the N-th; a failed open takes its place too, keeping the numbering aligned.
pub fn apply(terminal: &SimTerminal, action: &Action, opened: &mut Vec<PositionId>) -> Outcome {
    let resolve = |r: &PosRef, opened: &[PositionId]| -> Option<PositionId> {
        match r {
            PosRef::Ticket(t) => Some(*t),
            PosRef::Opened(n) => opened.get(n - 1).copied().filter(|p| p.0 != 0),
        }
    };
    let reply = match action {
        Action::Open {
            symbol,
            side,
            volume,
            magic,
            comment,
            sl,
            tp,
            filling,
        } => {
            let mut r = TradeRequest::market(symbol.clone(), OrderType::market(*side), *volume);
            r.magic = *magic;
            r.comment = comment.clone();
            r.sl = *sl;
            r.tp = *tp;
            r.type_filling = *filling;
            let reply = terminal.trade(r);
            opened.push(reply.position);
            reply
        }
        Action::Close { position } => match resolve(position, opened) {
            Some(p) => terminal.close(p, None),
            None => return Outcome::NotOpened,
        },
        Action::Partial { position, volume } => match resolve(position, opened) {
            Some(p) => terminal.close(p, Some(*volume)),
            None => return Outcome::NotOpened,
        },
        Action::Modify { position, sl, tp } => match resolve(position, opened) {
            Some(p) => terminal.modify(p, *sl, *tp),
            None => return Outcome::NotOpened,
        },
        Action::Pending {
            symbol,
            order_type,
            volume,
            price,
            magic,
            comment,
        } => {
            let mut r = TradeRequest::market(symbol.clone(), *order_type, *volume);
            r.action = TradeAction::Pending;
            r.price = *price;
            r.magic = *magic;
            r.comment = comment.clone();
            r.type_time = OrderTime::Gtc;
            terminal.trade(r)
        }
        Action::Quote { symbol, bid, ask } => {
            terminal.set_quote_keeping_spread(symbol, *bid, *ask);
            return Outcome::Done;
        }
        Action::Disconnect => {
            terminal.disconnect();
            return Outcome::Done;
        }
    };
    Outcome::Reply(Box::new(reply))
}

impl Script {
    /// Runs the script against `terminal` in the background.
    pub fn spawn(self, terminal: &Arc<SimTerminal>) -> tokio::task::JoinHandle<()> {
        let terminal = terminal.clone();
        tokio::spawn(async move { run(&terminal, &self).await })
    }
}

/// Runs every step at its time, logging each outcome.
pub async fn run(terminal: &SimTerminal, script: &Script) {
    let start = tokio::time::Instant::now();
    let mut opened: Vec<PositionId> = Vec::new();
    for step in &script.steps {
        tokio::time::sleep_until(start + step.at).await;
        match apply(terminal, &step.action, &mut opened) {
            Outcome::Reply(r) => tracing::info!(
                line = step.line, retcode = %r.retcode, order = %r.order, position = %r.position,
                comment = %r.comment, "script step"
            ),
            Outcome::NotOpened => tracing::warn!(
                line = step.line,
                "script step names a position that was not opened"
            ),
            Outcome::Done => tracing::info!(line = step.line, "script step"),
        }
    }
    tracing::info!("script finished");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::SymbolNameError;

    #[test]
    fn parses_every_action() {
        let text = r#"
# a comment
at 500ms open EURUSD buy 0.1 magic=7 comment="spike signal" sl=1.07 filling=IOC
at 1s partial #1 0.05
at 1.5s modify #1 sl=1.075 tp=1.09
at 2s close 100001
at 3s pending XAUUSD buy_limit 1 1900.5 magic=2
at 2500 quote EURUSD 1.1 1.1002
at 1m disconnect
"#;
        let s = Script::parse(text).unwrap();
        assert_eq!(s.steps.len(), 7);
        assert_eq!(s.steps[0].at, Duration::from_millis(500));
        match &s.steps[0].action {
            Action::Open {
                comment,
                magic,
                filling,
                ..
            } => {
                assert_eq!(comment, "spike signal");
                assert_eq!(*magic, Magic(7));
                assert_eq!(*filling, Filling::Mode(hedge_domain::OrderFilling::Ioc));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.steps[4].at, Duration::from_millis(2500));
        assert!(matches!(s.steps[6].action, Action::Disconnect));
    }

    #[test]
    fn errors_name_the_line() {
        let e = Script::parse("at 1s open EURUSD up 0.1").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(Script::parse("\nat x open EURUSD buy 1").unwrap_err().line == 2);
        assert!(Script::parse("at 1s open EURUSD buy -1").is_err());
        assert!(Script::parse("at 1s close #0").is_err());
        assert!(Script::parse("at 1s fly").is_err());
        assert!(Script::parse("open EURUSD buy 1").is_err());
        assert!(Script::parse("at 1s open EURUSD buy 1 comment=\"x").is_err());
        assert!(Script::parse("at 1s open EURUSD buy 1 colour=red").is_err());
        assert!(Script::parse("at 1s quote EURUSD 1.1 1.0").is_err());
    }

    #[test]
    fn canonical_names_are_mapped_to_the_account() {
        let mut s =
            Script::parse("at 1s open EURUSD buy 0.1\nat 2s quote XAUUSD 1900\nat 3s close #1\n")
                .unwrap();
        let names = vec!["EURUSD.r".to_owned(), "XAUUSD.r".to_owned()];
        s.map_symbols(&names).unwrap();
        assert!(matches!(&s.steps[0].action, Action::Open { symbol, .. } if symbol == "EURUSD.r"));
        assert!(
            matches!(&s.steps[1].action, Action::Quote { symbol, ask: None, .. } if symbol == "XAUUSD.r")
        );
        let mut bad = Script::parse("\nat 1s open GBPUSD sell 1").unwrap();
        let err = bad.map_symbols(&names).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            matches!(&err.problem, ScriptProblem::Symbol(SymbolNameError::Unknown { wanted, .. }) if wanted == "GBPUSD"),
            "{err}"
        );
        assert!(err
            .to_string()
            .starts_with("script line 2: unknown symbol \"GBPUSD\""));
    }
}
