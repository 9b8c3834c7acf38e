//! Bearer tokens per agent and what each role may do.
//!
//! Tokens come from the config file and/or `HEDGE_CENTER_TOKENS`. A presented token is compared
//! with every configured one in constant time (`subtle`), so neither the match nor its position
//! leaks through timing. Tokens never appear in logs, errors or `Debug` output; a token is known by
//! its name.

use crate::model::{Account, AccountRole, Allocation, Event, EventKind};
use hedge_domain::Login;
use serde::Deserialize;
use std::collections::BTreeSet;
use subtle::ConstantTimeEq;

/// What a token is allowed to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A client agent: reports positions of its own account.
    Client(Login),
    /// A hedger agent: reads the plan of its own account and records its hedges.
    Hedge(Login),
    /// A tumbler agent: registers and reports status for its own account.
    Tumbler(Login),
    /// Operators: everything, including pause/resume.
    Admin,
    /// The dashboard's read-only view.
    Viewer,
}

impl Role {
    /// The account this role is bound to.
    pub fn login(self) -> Option<Login> {
        match self {
            Role::Client(l) | Role::Hedge(l) | Role::Tumbler(l) => Some(l),
            Role::Admin | Role::Viewer => None,
        }
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }

    /// May act as (register, heartbeat) account `login`.
    pub fn may_act_for(self, login: Login) -> bool {
        self.is_admin() || self.login() == Some(login)
    }

    /// May record a tumbler firing on `login`.
    pub fn may_fire_for(self, login: Login) -> bool {
        self.is_admin() || self == Role::Tumbler(login)
    }

    /// May report positions of `login`.
    pub fn may_report_for(self, login: Login) -> bool {
        self.is_admin() || self == Role::Client(login)
    }

    /// May read the plan of / record hedges on `login`.
    pub fn may_hedge_for(self, login: Login) -> bool {
        self.is_admin() || self == Role::Hedge(login)
    }

    fn parse(role: &str, login: Option<u64>) -> Result<Role, TokenError> {
        let need = |role: &'static str| {
            login
                .filter(|l| *l > 0)
                .map(Login)
                .ok_or(TokenError::NeedsLogin { role })
        };
        match role {
            "client" => Ok(Role::Client(need("client")?)),
            "hedge" => Ok(Role::Hedge(need("hedge")?)),
            "tumbler" => Ok(Role::Tumbler(need("tumbler")?)),
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(TokenError::UnknownRole(other.to_owned())),
        }
    }
}

/// What a token may read. Positions, accounts and events are another account's business: an
/// account token reads its own account, a hedge token also the client accounts it covers (its
/// plan is made of them), operators and the dashboard everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadScope {
    All,
    /// A client or tumbler token: its own account.
    Account(Login),
    /// A hedge token: its own account and hedges, and the registered client accounts whose
    /// hedge account is it or unnamed, or that an allocation gives it a share of (see
    /// [`ReadScope::covering`]).
    Hedge {
        own: Login,
        covered: BTreeSet<Login>,
    },
}

impl ReadScope {
    /// The scope of `role`; a hedge role's covered clients are taken from `accounts` and the
    /// operator's `allocations`.
    pub fn of(role: Role, accounts: &[Account], allocations: &[Allocation]) -> ReadScope {
        match role {
            Role::Admin | Role::Viewer => ReadScope::All,
            Role::Client(l) | Role::Tumbler(l) => ReadScope::Account(l),
            Role::Hedge(own) => ReadScope::Hedge {
                own,
                covered: Self::covering(own, accounts, allocations),
            },
        }
    }

    /// The client accounts the plan of hedge account `own` may count (`plan::compute`): those
    /// registered with no hedge account or with `own`, and those an allocation of their own
    /// gives a share to `own`. A superset where allocations by symbol decide, so a hedger never
    /// misses a change that moves its plan.
    pub fn covering(
        own: Login,
        accounts: &[Account],
        allocations: &[Allocation],
    ) -> BTreeSet<Login> {
        let allocated: BTreeSet<Login> = allocations
            .iter()
            .filter(|a| a.weights.iter().any(|w| w.hedge_login == own))
            .filter_map(|a| a.client_login)
            .collect();
        accounts
            .iter()
            .map(|a| &a.registration)
            .filter(|r| {
                r.role == AccountRole::Client
                    && r.login != own
                    && (r.hedge_login.is_none_or(|h| h == own) || allocated.contains(&r.login))
            })
            .map(|r| r.login)
            .collect()
    }

    /// Re-reads a hedge token's covered clients from `accounts` and `allocations`.
    pub fn refresh(&mut self, accounts: &[Account], allocations: &[Allocation]) {
        if let ReadScope::Hedge { own, covered } = self {
            *covered = Self::covering(*own, accounts, allocations);
        }
    }

    /// Whether the scope's covered clients follow the registry (only a hedge token's do).
    pub fn follows_registry(&self) -> bool {
        matches!(self, ReadScope::Hedge { .. })
    }

    /// May read account `login`, its positions and its events.
    pub fn sees_account(&self, login: Login) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Account(own) => *own == login,
            ReadScope::Hedge { own, covered } => *own == login || covered.contains(&login),
        }
    }

    /// May read the hedges recorded on hedge account `login`.
    pub fn sees_hedges_of(&self, login: Login) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Account(_) => false,
            ReadScope::Hedge { own, .. } => *own == login,
        }
    }

    /// May read `event`. Events without an account (pauses and commands for every account,
    /// the legacy book) are operator matters; a hedger sees them too, the legacy book aside,
    /// because they change its plan and its commands.
    pub fn sees_event(&self, event: &Event) -> bool {
        match (self, event.login) {
            (ReadScope::All, _) => true,
            (_, Some(login)) => self.sees_account(login),
            (ReadScope::Hedge { .. }, None) => event.kind != EventKind::LegacyPosition,
            (ReadScope::Account(_), None) => false,
        }
    }
}

/// Shortest accepted token secret: long enough that guessing one over the network is hopeless.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a token, or a set of tokens, cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("a {role} token needs a login")]
    NeedsLogin { role: &'static str },
    #[error("unknown token role {0:?} (client, hedge, tumbler, admin, viewer)")]
    UnknownRole(String),
    #[error("a token must be at least {MIN_SECRET_LEN} characters (a generated one is 64)")]
    TooShort,
    #[error("a token must not contain spaces")]
    Whitespace,
    #[error("environment variable {0} (token) is not set")]
    EnvNotSet(String),
    #[error("a token needs exactly one of `token` or `token_env`")]
    SecretSource,
    /// Two entries with one secret: the first would win, so the second role could never be used
    /// and whoever holds it acts with the first role's rights.
    #[error(
        "token entries #{first} ({first_name}) and #{second} ({second_name}) share a secret: \
         every token needs a secret of its own"
    )]
    SharedSecret {
        first: usize,
        first_name: String,
        second: usize,
        second_name: String,
    },
    /// An entry of `HEDGE_CENTER_TOKENS` without its `=`.
    #[error("token entry #{0} is not of the form role[:login]=token")]
    EntryForm(usize),
    #[error("token entry #{entry}: login {login:?} is not a number")]
    EntryLogin { entry: usize, login: String },
    /// An entry of `HEDGE_CENTER_TOKENS` refused for one of the reasons above.
    #[error("token entry #{entry}: {problem}")]
    Entry {
        entry: usize,
        problem: Box<TokenError>,
    },
}

/// One configured token.
#[derive(Clone)]
pub struct TokenEntry {
    /// How the token appears in logs and in the event log (`actor`).
    pub name: String,
    pub role: Role,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    pub fn new(
        name: impl Into<String>,
        role: Role,
        secret: impl Into<String>,
    ) -> Result<Self, TokenError> {
        let secret = secret.into();
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(TokenError::TooShort);
        }
        if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::Whitespace);
        }
        Ok(TokenEntry {
            name: name.into(),
            role,
            secret: secret.into_bytes(),
        })
    }
}

/// `[[token]]` in the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: Option<String>,
    pub role: String,
    #[serde(default)]
    pub login: Option<u64>,
    /// The secret itself, or
    #[serde(default)]
    pub token: Option<String>,
    /// the name of an environment variable holding it.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl TokenConfig {
    pub fn entry(&self) -> Result<TokenEntry, TokenError> {
        let role = Role::parse(&self.role, self.login)?;
        let secret = match (&self.token, &self.token_env) {
            (Some(t), None) => t.clone(),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| TokenError::EnvNotSet(var.clone()))?
            }
            _ => return Err(TokenError::SecretSource),
        };
        let name = self.name.clone().unwrap_or_else(|| default_name(role));
        TokenEntry::new(name, role, secret)
    }
}

fn default_name(role: Role) -> String {
    match role {
        Role::Client(l) => format!("client-{l}"),
        Role::Hedge(l) => format!("hedge-{l}"),
        Role::Tumbler(l) => format!("tumbler-{l}"),
        Role::Admin => "admin".into(),
        Role::Viewer => "viewer".into(),
    }
}

/// Parses `HEDGE_CENTER_TOKENS`: entries `role[:login]=token` separated by commas or whitespace,
/// e.g. `client:1001=s3cret-1,hedge:2001=s3cret-2,admin=s3cret-3`.
pub fn parse_env_tokens(text: &str) -> Result<Vec<TokenEntry>, TokenError> {
    let mut out = Vec::new();
    for (i, entry) in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let n = i + 1;
        let (who, secret) = entry.split_once('=').ok_or(TokenError::EntryForm(n))?;
        let (role, login) = match who.split_once(':') {
            Some((r, l)) => (
                r,
                Some(l.parse::<u64>().map_err(|_| TokenError::EntryLogin {
                    entry: n,
                    login: l.to_owned(),
                })?),
            ),
            None => (who, None),
        };
        let in_entry = |e: TokenError| TokenError::Entry {
            entry: n,
            problem: Box::new(e),
        };
        let role = Role::parse(role, login).map_err(in_entry)?;
        out.push(TokenEntry::new(default_name(role), role, secret).map_err(in_entry)?);
    }
    Ok(out)
}

/// The configured tokens.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

impl Tokens {
    pub fn new(entries: Vec<TokenEntry>) -> Self {
        Tokens { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Refuses entries that share a secret (numbered from 1 in configuration order).
    pub fn check(&self) -> Result<(), TokenError> {
        for (i, a) in self.entries.iter().enumerate() {
            for (j, b) in self.entries.iter().enumerate().skip(i + 1) {
                if bool::from(a.secret.as_slice().ct_eq(&b.secret)) {
                    return Err(TokenError::SharedSecret {
                        first: i + 1,
                        first_name: a.name.clone(),
                        second: j + 1,
                        second_name: b.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry whose secret equals `presented`. Every entry is compared, in constant time each.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&TokenEntry> {
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.secret.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }

    /// A fresh random secret (hex, 256 bits).
    pub fn generate_secret() -> String {
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hedge_token_covers_the_clients_allocated_to_it() {
        let client = |login: u64, hedge: Option<u64>| Account {
            registration: crate::model::AccountRegistration {
                login: Login(login),
                role: AccountRole::Client,
                server: String::new(),
                company: String::new(),
                margin_mode: hedge_domain::AccountMarginMode::RetailHedging,
                symbol_map: hedge_domain::SymbolMap::identity(),
                hedge_ratio: rust_decimal::Decimal::ONE,
                hedge_login: hedge.map(Login),
                symbols: vec![],
                currency: String::new(),
            },
            registered_ms: 0,
            last_seen_ms: 0,
            status: None,
            overrides: Default::default(),
        };
        let accounts = [client(1, None), client(2, Some(901)), client(3, Some(902))];
        let to_900 = Allocation {
            client_login: Some(Login(3)),
            symbol: None,
            weights: vec![crate::model::AllocationWeight {
                hedge_login: Login(900),
                weight: rust_decimal::Decimal::ONE,
            }],
            actor: "ops".into(),
            reason: String::new(),
            since_ms: 0,
            event_id: crate::model::EventId(1),
        };
        let logins =
            |covered: BTreeSet<Login>| covered.into_iter().map(|l| l.0).collect::<Vec<_>>();
        assert_eq!(
            logins(ReadScope::covering(Login(900), &accounts, &[])),
            vec![1]
        );
        assert_eq!(
            logins(ReadScope::covering(Login(900), &accounts, &[to_900])),
            vec![1, 3]
        );
        assert_eq!(
            logins(ReadScope::covering(Login(901), &accounts, &[])),
            vec![1, 2]
        );
    }

    #[test]
    fn env_tokens_and_lookup() {
        let tokens = Tokens::new(
            parse_env_tokens("client:1001=aaaaaaaaaaaaaaa1, admin=bbbbbbbbbbbbbbb2").unwrap(),
        );
        assert_eq!(
            tokens.authenticate(b"aaaaaaaaaaaaaaa1").unwrap().role,
            Role::Client(Login(1001))
        );
        assert_eq!(
            tokens.authenticate(b"bbbbbbbbbbbbbbb2").unwrap().role,
            Role::Admin
        );
        assert!(tokens.authenticate(b"aaaaaaaaaaaaaaa").is_none());
        assert!(parse_env_tokens("client=aaaaaaaaaaaaaaa1").is_err());
        assert!(parse_env_tokens("boss:1=aaaaaaaaaaaaaaa1").is_err());
        assert!(parse_env_tokens("admin=short").is_err());
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("aaaaaaaaaaaaaaa1"));
    }

    #[test]
    fn a_short_secret_is_refused() {
        let err = parse_env_tokens("admin=abcdefgh12345")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 16 characters"), "{err}");
        assert!(!err.contains("abcdefgh12345"), "{err}");
        assert!(TokenEntry::new("ops", Role::Admin, "abcdefgh123456789").is_ok());
    }

    #[test]
    fn two_entries_sharing_a_secret_are_refused_by_name() {
        let tokens = Tokens::new(
            parse_env_tokens(
                "client:1001=shared-secret-0001,viewer=viewer-secret-0001,admin=shared-secret-0001",
            )
            .unwrap(),
        );
        let err = tokens.check().unwrap_err();
        assert_eq!(
            err,
            TokenError::SharedSecret {
                first: 1,
                first_name: "client-1001".into(),
                second: 3,
                second_name: "admin".into(),
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("#1 (client-1001) and #3 (admin) share a secret"),
            "{text}"
        );
        assert!(!text.contains("shared-secret-0001"), "{text}");
        let distinct = Tokens::new(
            parse_env_tokens("client:1001=secret-number-0001,admin=secret-number-0002").unwrap(),
        );
        assert_eq!(distinct.check(), Ok(()));
    }

    #[test]
    fn permissions() {
        let c = Role::Client(Login(1));
        assert!(c.may_report_for(Login(1)) && !c.may_report_for(Login(2)));
        assert!(!c.may_hedge_for(Login(1)));
        assert!(Role::Hedge(Login(5)).may_hedge_for(Login(5)));
        assert!(!Role::Viewer.may_act_for(Login(5)));
        assert!(Role::Admin.may_report_for(Login(9)));
    }
}
