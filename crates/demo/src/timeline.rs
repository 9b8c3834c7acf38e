//! Printing what happens as it happens: readable lines, or one JSON object per line (`--json`).

use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where the demo writes its timeline. Cheap to clone; every clone shares the start time.
#[derive(Clone)]
pub struct Timeline {
    start: Instant,
    json: bool,
    quiet: bool,
    /// Every line written, kept for tests.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Timeline {
    pub fn new(json: bool) -> Self {
        Timeline {
            start: Instant::now(),
            json,
            quiet: false,
            lines: Arc::default(),
        }
    }

    /// A timeline that only records (for tests).
    pub fn quiet(json: bool) -> Self {
        Timeline {
            quiet: true,
            ..Timeline::new(json)
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// One entry: `kind` classifies it, `text` is the readable line, `fields` the machine-readable
    /// details (merged into the JSON object).
    pub fn emit(&self, kind: &str, text: impl AsRef<str>, fields: Value) {
        let t = self.elapsed_ms();
        let line = if self.json {
            let mut obj = json!({ "t_ms": (t * 1000.0).round() / 1000.0, "kind": kind, "message": text.as_ref() });
            if let (Some(o), Value::Object(extra)) = (obj.as_object_mut(), fields) {
                for (k, v) in extra {
                    o.insert(k, v);
                }
            }
            obj.to_string()
        } else {
            format!("[{t:>9.1} ms] {:<8} {}", kind, text.as_ref())
        };
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    /// A plain line without a timestamp (table rows, headers); in JSON mode nothing.
    pub fn plain(&self, text: impl AsRef<str>) {
        if self.json {
            return;
        }
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", text.as_ref());
            let _ = out.flush();
        }
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(text.as_ref().to_owned());
        }
    }

    /// Every line written so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
