//! File I/O at the edge: owner-only writes, UTF-16LE text as the terminal writes it, and reading
//! either encoding back.

use std::io::Write;
use std::path::Path;

/// `text` as UTF-16LE with a byte-order mark, the encoding MT5 uses for its own ini, `.set` and log
/// files (it reads plain ANSI too, but UTF-16 carries any character a password or server may hold).
pub fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + text.len() * 2);
    out.extend_from_slice(&[0xFF, 0xFE]);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

/// Text from a file MT5 wrote: UTF-16LE (with a BOM, or recognisable by its zero high bytes) or
/// UTF-8. Invalid sequences become U+FFFD rather than an error: these files are only searched.
pub fn decode_text(bytes: &[u8]) -> String {
    let (body, utf16) = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        (rest, true)
    } else if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        (rest, false)
    } else {
        let sample = &bytes[..bytes.len().min(64)];
        let zero_odd = sample
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|b| **b == 0)
            .count();
        (bytes, sample.len() >= 4 && zero_odd * 2 >= sample.len() / 2)
    };
    if utf16 {
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Writes `bytes` to a new file readable and writable by its owner only (0600 on Unix), replacing
/// any stale file of that name first so that the permissions are always the ones set here.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_round_trips_non_ascii() {
        let text = "Login=1\r\nPassword=pä\"ß€\r\n";
        assert_eq!(decode_text(&utf16le_with_bom(text)), text);
        let no_bom = &utf16le_with_bom(text)[2..];
        assert_eq!(decode_text(no_bom), text);
        assert_eq!(decode_text("plain ütf8".as_bytes()), "plain ütf8");
        assert_eq!(decode_text(&[0xFF, 0xFE, 0x41]), "");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_even_over_a_stale_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ini");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        remove_if_exists(&path).unwrap();
        remove_if_exists(&path).unwrap();
        assert!(!path.exists());
    }
}
