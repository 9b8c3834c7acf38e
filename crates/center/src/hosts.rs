//! Which `Host` a request may name.
//!
//! A web page can make a browser send requests to the center through a name that the page's
//! owner resolves to the center's address (DNS rebinding); the request then carries that foreign
//! name in `Host` (or in an absolute-form target). The center answers only requests that name it
//! by an IP address, `localhost`, or one of the host names it was configured with.

use axum::http::{header, Request};
use std::net::IpAddr;

/// The host names a request may use besides IP addresses and `localhost`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Names compared case-insensitively, without port.
    pub fn new(names: impl IntoIterator<Item = String>) -> Self {
        AllowedHosts {
            names: names
                .into_iter()
                .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        }
    }

    /// Whether `authority` (`host[:port]`) names this center.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_of(authority)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        host == "localhost" || host.parse::<IpAddr>().is_ok() || self.names.contains(&host)
    }

    /// The name a request uses that this center does not answer to, if any: the target's
    /// authority (absolute form) and the `Host` header are both checked. A request naming no
    /// host (HTTP/1.0) passes: a browser always sends one.
    pub fn refused<B>(&self, req: &Request<B>) -> Option<String> {
        let from_target = req.uri().authority().map(|a| a.as_str().to_owned());
        let from_header = req
            .headers()
            .get(header::HOST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        [from_target, from_header]
            .into_iter()
            .flatten()
            .find(|a| !self.allows(a))
    }
}

/// `host` of `host[:port]`, `[v6]:port` and bare IPv6 forms.
fn host_of(authority: &str) -> &str {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_localhost_and_configured_names_pass() {
        let hosts = AllowedHosts::new(["Center.Example.NET".to_owned()]);
        for ok in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "::1",
            "localhost:8080",
            "LOCALHOST",
            "center.example.net:443",
            "center.example.net.",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "other.example",
            "other.example:8080",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn an_absolute_form_target_is_checked_too() {
        let hosts = AllowedHosts::default();
        let req = Request::builder()
            .uri("http://other.example/healthz")
            .header(header::HOST, "127.0.0.1")
            .body(())
            .unwrap();
        assert_eq!(hosts.refused(&req).as_deref(), Some("other.example"));
        let req = Request::builder().uri("/healthz").body(()).unwrap();
        assert_eq!(hosts.refused(&req), None);
    }
}
