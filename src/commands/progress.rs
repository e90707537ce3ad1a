//! Progress of long commands: one line on stderr, redrawn a few times a second, only when
//! stderr is a terminal; nothing at all otherwise (scripts and logs stay quiet).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the line is redrawn at most.
const REDRAW: Duration = Duration::from_millis(150);

/// A progress line on stderr.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    /// When the line was last drawn; `None` before the first time.
    drawn: Mutex<Option<Instant>>,
}

impl Progress {
    /// A progress line, shown only if stderr is a terminal.
    pub fn new() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            drawn: Mutex::new(None),
        }
    }

    /// Whether anything is shown.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Redraws the line with `text()` unless it was drawn very recently.
    pub fn show(&self, text: impl FnOnce() -> String) {
        self.draw(false, text);
    }

    /// Redraws the line now (a step that must be seen).
    pub fn show_now(&self, text: impl FnOnce() -> String) {
        self.draw(true, text);
    }

    fn draw(&self, force: bool, text: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if !force && drawn.is_some_and(|at| now.duration_since(at) < REDRAW) {
            return;
        }
        *drawn = Some(now);
        let mut err = std::io::stderr().lock();
        // Carriage return, clear the line, draw.
        let _ = write!(err, "\r\x1b[2K{}", text());
        let _ = err.flush();
    }

    /// Ends the line, if one was drawn; the next `show` starts a new one.
    pub fn finish(&self) {
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if self.enabled && drawn.take().is_some() {
            eprintln!();
        }
    }
}

/// Bytes for people: `812 B`, `3.4 KiB`, `12.0 MiB`, `1.25 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // a display, not arithmetic
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 { 2 } else { 1 };
    format!("{value:.digits$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
    }
}
