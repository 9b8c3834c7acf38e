//! The dashboard's files, embedded at compile time, with their content types and validators.

use std::sync::OnceLock;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The file name under `/assets/` (the page is `index.html`, served at `/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        Asset {
            name,
            content_type,
            bytes,
            etag: OnceLock::new(),
        }
    }

    /// A strong validator derived from the content, so a browser revalidates cheaply and picks up a
    /// new binary's assets at once.
    pub fn etag(&self) -> &str {
        self.etag
            .get_or_init(|| format!("\"{:016x}-{:x}\"", fnv1a(self.bytes), self.bytes.len()))
    }
}

/// Every file the dashboard serves.
pub static ASSETS: [Asset; 4] = [
    Asset::new(
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    Asset::new(
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    Asset::new(
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    Asset::new(
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../assets/icon.svg"),
    ),
];

/// The asset with this exact name.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// 64-bit FNV-1a: enough to tell two versions of a file apart, with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_has_a_distinct_etag() {
        let mut tags = Vec::new();
        for a in &ASSETS {
            assert!(!a.bytes.is_empty(), "{} is empty", a.name);
            assert!(a.etag().starts_with('"') && a.etag().ends_with('"'));
            tags.push(a.etag().to_owned());
        }
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn lookups_are_exact() {
        assert!(find("app.js").is_some());
        assert!(find("APP.JS").is_none());
        assert!(find("../Cargo.toml").is_none());
    }
}
