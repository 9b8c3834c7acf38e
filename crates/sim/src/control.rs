//! Trading into a running `hedge sim` by hand: one command per line (on stdin or a loopback TCP
//! port, `--control`), one answer line per command (see `docs/simulator.md`).
//!
//! The commands are the script's actions without `at <time>` (`open EURUSD buy 0.1`,
//! `close 100001`, `partial #1 0.05`, `quote EURUSD 1.0851`), plus `positions` and `help`. Symbols
//! may be given by their canonical names. A line that does not parse, or names a symbol the account
//! lacks, is answered with `error: ...` and changes nothing.

use crate::script::{self, Action, ActionError, Outcome};
use crate::terminal::SimTerminal;
use hedge_domain::PositionId;
use hedge_protocol::Reply;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest control line read; a longer one is answered with an error and skipped.
pub const MAX_LINE: usize = 4096;

const HELP: &str =
    "commands: open SYMBOL buy|sell VOLUME [magic=N] [comment=\"..\"] [sl=P] [tp=P] \
    [filling=FOK|IOC|RETURN|auto]; close POSITION; partial POSITION VOLUME; modify POSITION [sl=P] \
    [tp=P]; pending SYMBOL buy_limit|sell_limit|buy_stop|sell_stop VOLUME PRICE; quote SYMBOL BID \
    [ASK]; disconnect; positions; help (POSITION: a position id, or #N for the N-th open here)";

/// A control line, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Trade(Action),
    Positions,
    Help,
    /// An empty line or a `#` comment.
    Nothing,
}

/// Why a control line cannot be carried out; shown to the operator after `error: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{0} takes no arguments")]
    NoArguments(String),
    #[error("control lines run now: drop `at <time>`")]
    Timed,
    #[error("{0}; `help` lists the commands")]
    UnknownAction(ActionError),
    /// The action's words, as a script line would be refused.
    #[error("{0}")]
    Action(ActionError),
}

/// Parses one control line (pure: symbols are mapped when the line is carried out).
pub fn parse(line: &str) -> Result<Command, ControlError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Command::Nothing);
    }
    let words = script::tokens(line).map_err(ControlError::Action)?;
    match words.first().map(String::as_str) {
        Some("positions") if words.len() == 1 => Ok(Command::Positions),
        Some("help") if words.len() == 1 => Ok(Command::Help),
        Some("positions" | "help") => Err(ControlError::NoArguments(words[0].clone())),
        Some("at") => Err(ControlError::Timed),
        _ => script::parse_action(&words)
            .map(Command::Trade)
            .map_err(|e| match e {
                ActionError::UnknownAction(_) => ControlError::UnknownAction(e),
                e => ControlError::Action(e),
            }),
    }
}

/// One operator's control session: `#N` names the N-th position opened in it.
#[derive(Debug, Default)]
pub struct Session {
    opened: Vec<PositionId>,
}

impl Session {
    /// Carries out one line and returns its answer (`ok: ...`, `refused: ...` or `error: ...`).
    pub fn handle(&mut self, terminal: &SimTerminal, line: &str) -> Option<String> {
        let mut action = match parse(line) {
            Ok(Command::Nothing) => return None,
            Ok(Command::Help) => return Some(format!("ok: {HELP}")),
            Ok(Command::Positions) => return Some(positions(terminal)),
            Ok(Command::Trade(action)) => action,
            Err(e) => return Some(format!("error: {e}")),
        };
        let names = terminal.symbol_names();
        if let Err(e) = action.map_symbol(names.iter().map(String::as_str)) {
            return Some(format!("error: {e}"));
        }
        let answer = match script::apply(terminal, &action, &mut self.opened) {
            Outcome::Reply(reply) => describe(&reply),
            Outcome::Done => "ok".to_owned(),
            Outcome::NotOpened => "error: no position was opened under that #N here".to_owned(),
        };
        tracing::info!(line = line.trim(), answer = %answer, "control");
        Some(answer)
    }
}

fn describe(reply: &Reply) -> String {
    let r = reply.retcode.code();
    // 10008 placed, 10009 done, 10010 partly done: the request was carried out.
    let verdict = if (10008..=10010).contains(&r) {
        "ok"
    } else {
        "refused"
    };
    let mut text = format!("{verdict}: retcode {}", reply.retcode);
    if reply.position.0 != 0 {
        text.push_str(&format!(" position {}", reply.position));
    }
    if reply.order.0 != 0 {
        text.push_str(&format!(" order {}", reply.order));
    }
    if reply.deal.0 != 0 {
        text.push_str(&format!(
            " deal {} volume {} price {}",
            reply.deal, reply.volume, reply.price
        ));
    }
    if !reply.comment.is_empty() {
        text.push_str(&format!(" ({})", reply.comment));
    }
    text
}

fn positions(terminal: &SimTerminal) -> String {
    let list: Vec<String> = terminal
        .positions()
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {} at {} profit {}",
                p.identifier,
                p.position_type.side(),
                p.volume,
                p.symbol,
                p.price_open,
                p.profit
            )
        })
        .collect();
    match list.is_empty() {
        true => "ok: no open positions".to_owned(),
        false => format!("ok: {}", list.join("; ")),
    }
}

/// Reads control lines from `input` until it ends, answering each on `output`.
pub async fn serve<R, W>(terminal: &SimTerminal, mut input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let answer = if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            skip_line(&mut input).await?;
            Some(format!("error: line longer than {MAX_LINE} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
                Ok(line) => session.handle(terminal, line),
                Err(_) => Some("error: not UTF-8 text".to_owned()),
            }
        };
        if let Some(answer) = answer {
            output.write_all(answer.as_bytes()).await?;
            output.write_all(b"\n").await?;
            output.flush().await?;
        }
    }
}

/// Drops the rest of an over-long line without holding it.
async fn skip_line<R: AsyncBufRead + Unpin>(input: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let len = chunk.len();
                input.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hedge_domain::Side;

    #[test]
    fn lines_parse_to_commands() {
        assert_eq!(parse("  "), Ok(Command::Nothing));
        assert_eq!(parse("# note"), Ok(Command::Nothing));
        assert_eq!(parse("positions"), Ok(Command::Positions));
        assert_eq!(parse("help"), Ok(Command::Help));
        match parse("open EURUSD buy 0.1 magic=7") {
            Ok(Command::Trade(Action::Open {
                symbol,
                side,
                volume,
                ..
            })) => {
                assert_eq!(symbol, "EURUSD");
                assert_eq!(side, Side::Buy);
                assert_eq!(volume, "0.1".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("quote EURUSD 1.0851"),
            Ok(Command::Trade(Action::Quote { ask: None, .. }))
        ));
        assert!(matches!(
            parse("partial 100001 0.05"),
            Ok(Command::Trade(Action::Partial { .. }))
        ));
    }

    #[test]
    fn bad_lines_say_why() {
        let err = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(
            err("fly EURUSD"),
            "unknown action \"fly\"; `help` lists the commands"
        );
        assert_eq!(
            err("open EURUSD up 0.1"),
            "not a side: \"up\" (expected buy or sell)"
        );
        assert_eq!(err("open EURUSD buy -1"), "bad volume \"-1\"");
        assert_eq!(err("close"), "close: missing arguments");
        assert_eq!(err("close 1 2"), "close takes one position");
        assert_eq!(err("positions now"), "positions takes no arguments");
        assert_eq!(
            err("at 1s close 1"),
            "control lines run now: drop `at <time>`"
        );
        assert_eq!(err("open EURUSD buy 1 comment=\"x"), "unterminated quote");
    }
}
