//! Logging through `tracing`: human-readable lines by default, JSON when
//! `log.format = "json"`. `RUST_LOG` overrides the configured level. Lines carry ANSI
//! colours only when standard output is a terminal (never in a file, a pipe or a
//! container's log).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::configuration::{LogFormat, LogSettings};

/// Installs the global subscriber; a second call (tests) does nothing.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = if settings.format == LogFormat::Json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}
