//! `OrderCheck`: what a request would do to the account's money, without executing it.
//!
//! The answer has MT5's `MqlTradeCheckResult` figures *after* the request: balance (with the profit a
//! close would realize), equity, floating profit, margin, free margin and margin level. The retcode
//! is the one `OrderSend` would give for everything that does not depend on chance (injected faults
//! and liquidity are left out), so a check that passes is an order the server takes unless the
//! market moves; a successful check answers 10009 (`Done`), as the bridge EA relays MT5's 0.

use super::{dec, Account};
use hedge_domain::{Money, Retcode, Side, TradeAction};
use hedge_protocol::{CheckResult, Reply, TradeRequest};
use rust_decimal::Decimal;

/// How a request would move the account's margin and balance.
#[derive(Default)]
struct Change {
    /// Margin of the volume the request opens.
    added: Money,
    /// Margin of the volume it closes.
    released: Money,
    /// Profit the close would book into the balance.
    realized: Money,
}

impl Account {
    /// `OrderCheck`: the figures the account would have after `req`, and the retcode `OrderSend`
    /// would answer (10019 when the margin the request adds is more than the free margin).
    pub fn check(&mut self, req: &TradeRequest) -> Reply {
        let symbol = req.symbol.clone();
        let validated = if req.action != TradeAction::Sltp
            && req.action != TradeAction::Modify
            && req.action != TradeAction::Remove
            && !self.config.trade_expert
        {
            Err((
                Retcode::SERVER_DISABLES_AT,
                "trading by Expert Advisors is disabled for this account".to_owned(),
            ))
        } else {
            match req.action {
                TradeAction::Deal => self.validate_market(req).map(|_| ()),
                TradeAction::Pending => self.validate_pending_check(req),
                _ => Ok(()),
            }
        };
        let change = match (&validated, req.action) {
            (Ok(()), TradeAction::Deal) => self.deal_change(req),
            (Ok(()), TradeAction::Pending) => Change {
                added: self.margin_for(&symbol, req.volume),
                ..Change::default()
            },
            _ => Change::default(),
        };
        let equity = self.equity();
        let margin_now = self.margin();
        // The same rule as execution: the margin a request adds must fit in what is free now.
        let needed = match (&validated, req.action) {
            (Ok(()), TradeAction::Deal) => {
                let side = req.order_type.side().unwrap_or(Side::Buy);
                self.added_margin(&symbol, side, req.volume, req.position)
            }
            _ => change.added,
        };
        let (retcode, comment) = match validated {
            Err((code, why)) => (code, why),
            Ok(()) if needed.is_positive() && margin_now + needed > equity => (
                Retcode::NO_MONEY,
                format!("needs margin {needed}, free margin {}", equity - margin_now),
            ),
            Ok(()) => (Retcode::DONE, "Done".to_owned()),
        };
        let margin = margin_now + change.added - change.released;
        let level = if margin.is_positive() {
            Money((equity.0 / margin.0 * dec(100)).round_dp(2))
        } else {
            Money::ZERO
        };
        let mut reply = self.reply(retcode, comment, &symbol);
        reply.check = Some(CheckResult {
            balance: self.balance + change.realized,
            equity,
            profit: self.floating_profit() - change.realized,
            margin,
            margin_free: equity - margin,
            margin_level: level,
        });
        reply
    }

    /// What a market request (already validated) opens, closes and realizes.
    fn deal_change(&self, req: &TradeRequest) -> Change {
        let side = req.order_type.side().unwrap_or(Side::Buy);
        let closing = if self.config.mode.is_netting() {
            self.positions
                .values()
                .find(|p| p.symbol == req.symbol && p.side != side)
        } else if req.position.0 != 0 {
            self.positions.get(&req.position)
        } else {
            None
        };
        let Some(p) = closing else {
            return Change {
                added: self.margin_for(&req.symbol, req.volume),
                ..Change::default()
            };
        };
        let closed = req.volume.min(p.volume);
        let opened = req.volume - closed;
        let realized = match self.close_price(&p.symbol, p.side) {
            Some(price) => self.profit(&p.symbol, p.side, closed, p.price_open, price),
            None => Money::ZERO,
        };
        Change {
            added: if opened.is_positive() {
                self.margin_for(&req.symbol, opened)
            } else {
                Money::ZERO
            },
            released: self.margin_for(&req.symbol, closed),
            realized,
        }
    }

    /// What `OrderCheck` refuses in a pending request before any margin is counted.
    fn validate_pending_check(&self, req: &TradeRequest) -> Result<(), (Retcode, String)> {
        let spec = self
            .spec(&req.symbol)
            .ok_or((Retcode::INVALID, format!("unknown symbol {:?}", req.symbol)))?;
        if !req.order_type.is_pending() {
            return Err((
                Retcode::INVALID_ORDER,
                format!("{} is not a pending order type", req.order_type),
            ));
        }
        self.check_volume(spec, req.volume)?;
        let side = req.order_type.side().unwrap_or(Side::Buy);
        if !spec.allows_open(side) {
            return Err((
                Retcode::TRADE_DISABLED,
                "opening disabled on this symbol".into(),
            ));
        }
        Ok(())
    }

    /// Equity over margin in percent, `None` while no margin is used.
    pub fn margin_level(&self) -> Option<Decimal> {
        let margin = self.margin();
        margin
            .is_positive()
            .then(|| self.equity().0 / margin.0 * dec(100))
    }
}
