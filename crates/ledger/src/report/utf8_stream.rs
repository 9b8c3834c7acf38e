//! A reader that hands on a part's text as UTF-8 whatever encoding it came in.
//!
//! The terminal writes a 100,000-deal report's sheet as about 220 MiB of UTF-16LE. Decoding it
//! byte by byte was the import's largest cost, and keeping the decoded text whole its largest
//! allocation; here the text is converted a chunk at a time (the bytes gathered into code units,
//! then one bulk UTF-16 → UTF-8 conversion with an ASCII fast path) and the XML reader consumes
//! it as it goes.

use super::text::TextEncoding;
use std::io::{self, BufRead, Read};

/// Input bytes converted per step: large enough that per-step costs vanish, small enough to stay
/// in the CPU's cache.
const CHUNK: usize = 128 * 1024;

pub(crate) struct Utf8Stream<R> {
    inner: R,
    enc: TextEncoding,
    /// Bytes read but not converted yet (at most one odd byte of a code unit between steps).
    raw: Vec<u8>,
    units: Vec<u16>,
    /// A high surrogate that ended a step; its low half comes with the next one.
    pending: Option<u16>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl<R: Read> Utf8Stream<R> {
    /// Reads enough of the start to tell the encoding (BOM or the zero bytes of UTF-16), and
    /// drops the BOM.
    pub(crate) fn new(mut inner: R) -> io::Result<Self> {
        let mut raw = vec![0u8; CHUNK];
        let mut filled = 0;
        let mut done = false;
        while filled < 4 {
            let n = read_some(&mut inner, &mut raw[filled..])?;
            if n == 0 {
                done = true;
                break;
            }
            filled += n;
        }
        raw.truncate(filled);
        let (enc, bom) = TextEncoding::sniff(&raw);
        raw.drain(..bom.min(filled));
        let mut stream = Utf8Stream {
            inner,
            enc,
            raw,
            units: Vec::new(),
            pending: None,
            out: Vec::new(),
            pos: 0,
            done,
        };
        stream.convert();
        Ok(stream)
    }

    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() && !self.done {
            let have = self.raw.len();
            self.raw.resize(have + CHUNK, 0);
            let n = read_some(&mut self.inner, &mut self.raw[have..])?;
            self.raw.truncate(have + n);
            self.done = n == 0;
            self.convert();
        }
        Ok(())
    }

    /// Moves what `raw` holds to `out` as UTF-8.
    fn convert(&mut self) {
        let le = match self.enc {
            TextEncoding::Utf8 => {
                // Already UTF-8: the buffers trade places instead of copying.
                self.out.clear();
                std::mem::swap(&mut self.out, &mut self.raw);
                return;
            }
            TextEncoding::Utf16Le => true,
            TextEncoding::Utf16Be => false,
        };
        let whole = self.raw.len() / 2 * 2;
        self.units.clear();
        self.units.extend(self.pending.take());
        let pairs = self.raw[..whole].chunks_exact(2);
        // Two loops rather than a branch per unit, so each one vectorizes.
        if le {
            self.units
                .extend(pairs.map(|b| u16::from_le_bytes([b[0], b[1]])));
        } else {
            self.units
                .extend(pairs.map(|b| u16::from_be_bytes([b[0], b[1]])));
        }
        self.raw.drain(..whole);
        if self.done {
            // A stray odd last byte cannot be part of a code unit.
            self.raw.clear();
        } else if let Some(&last) = self.units.last() {
            if (0xD800..0xDC00).contains(&last) {
                self.pending = self.units.pop();
            }
        }
        let start = self.out.len();
        self.out.resize(start + self.units.len() * 3, 0);
        let written = encoding_rs::mem::convert_utf16_to_utf8(&self.units, &mut self.out[start..]);
        self.out.truncate(start + written);
    }
}

impl<R: Read> Read for Utf8Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Utf8Stream<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.out.len() {
            self.refill()?;
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, so chunk edges fall inside code units and pairs.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn through(bytes: &[u8], step: usize) -> String {
        let mut s = String::new();
        Utf8Stream::new(Trickle(bytes, step))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn every_encoding_and_every_split_gives_the_same_text() {
        let text = "<c><t>é 😀 中文 &amp; x</t></c>".repeat(50);
        let mut le = vec![0xFF, 0xFE];
        le.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
        let be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let mut utf8 = b"\xEF\xBB\xBF".to_vec();
        utf8.extend(text.as_bytes());
        for step in [1, 3, 5, 4096] {
            assert_eq!(through(&le, step), text, "UTF-16LE, step {step}");
            assert_eq!(through(&be, step), text, "UTF-16BE, step {step}");
            assert_eq!(through(&utf8, step), text, "UTF-8, step {step}");
        }
        let mut odd = le.clone();
        odd.push(0x0A);
        assert_eq!(through(&odd, 7), text);
        assert_eq!(through(b"", 1), "");
    }
}
