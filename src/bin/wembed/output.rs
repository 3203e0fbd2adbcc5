//! Terminal and file output of the CLI: a progress bar, .npy and JSON writers.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A one-line progress bar on stderr, drawn only when stderr is a terminal (logs stay clean).
pub struct Progress {
    label: String,
    start: Instant,
    last_draw: Option<Instant>,
    enabled: bool,
}

impl Progress {
    pub fn new(label: &str) -> Self {
        Progress {
            label: label.to_string(),
            start: Instant::now(),
            last_draw: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let finished = done >= total;
        if !finished && self.last_draw.is_some_and(|t| now.duration_since(t).as_millis() < 100) {
            return;
        }
        self.last_draw = Some(now);
        let width = 30;
        let filled = if total == 0 { width } else { width * done / total };
        let secs = self.start.elapsed().as_secs_f64();
        let rate = done as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 { (total - done) as f64 / rate } else { 0.0 };
        eprint!(
            "\r{} [{}{}] {done}/{total} {rate:.0}/s eta {eta:.0}s   ",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        if finished {
            eprintln!();
        }
    }
}

/// NumPy .npy (format 1.0) of a `[rows, cols]` little-endian f32 matrix.
pub fn npy_bytes(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline, as numpy writes it.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `bytes` to `path`, or to stdout for `-`.
pub fn write_out(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    if path == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()
    } else {
        std::fs::write(path, bytes)
    }
}
