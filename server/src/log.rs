//! Log lines on stderr: seconds since start, then the message. No levels,
//! no logging framework: the server logs rarely (connections opening and
//! closing, a refusal summary at most once a second), and everything it
//! counts is in `/metrics`.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

/// The instant log times count from: the first call (the command line makes
/// it at start-up).
pub fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Writes one line to stderr.
pub fn line(args: core::fmt::Arguments<'_>) {
    let t = start().elapsed().as_secs_f64();
    // A failed write to stderr has nowhere better to go.
    let _ = writeln!(std::io::stderr().lock(), "[{t:>9.3}s] jt809: {args}");
}

/// `log!("...", args)`: one line to stderr via [`line`].
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
