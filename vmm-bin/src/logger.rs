//! The process's logger. By default env_logger's filter and format (`-v`,
//! `RUST_LOG`) on stderr; Firecracker's `PUT /logger` (or a config file's
//! `logger` section) switches it to Firecracker's line format,
//! `<time> [<id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>`, at the
//! level asked (default Info), optionally only for one module, written to
//! `log_path` (created if missing, appended to; a named pipe works) or to
//! stderr without one.
//!
//! Records are written from whatever thread logs them, vCPU threads
//! included: one `write(2)` per line, which every seccomp list allows.

use std::io::Write;
use std::sync::{Mutex, OnceLock, RwLock};

use log::{LevelFilter, Log, Metadata, Record};

use crate::api::model::{LogLevel, Logger as LoggerConfig};
use crate::api::prepare::open_append;

/// Firecracker's format and destination, once configured.
struct Custom {
    level: LevelFilter,
    show_level: bool,
    show_origin: bool,
    module: Option<String>,
    id: String,
    out: Mutex<Box<dyn Write + Send + Sync>>,
}

struct VmmLogger {
    inner: env_logger::Logger,
    custom: RwLock<Option<Custom>>,
}

static LOGGER: OnceLock<VmmLogger> = OnceLock::new();

impl VmmLogger {
    fn custom(&self) -> std::sync::RwLockReadGuard<'_, Option<Custom>> {
        self.custom.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Custom {
    fn wants(&self, m: &Metadata) -> bool {
        m.level() <= self.level
            && self
                .module
                .as_deref()
                .is_none_or(|prefix| m.target().starts_with(prefix))
    }
}

impl Log for VmmLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        match &*self.custom() {
            Some(c) => c.wants(m),
            None => self.inner.enabled(m),
        }
    }

    fn log(&self, r: &Record) {
        let custom = self.custom();
        let Some(c) = &*custom else {
            self.inner.log(r);
            return;
        };
        if !c.wants(r.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let mut tag = format!("{}:{}", c.id, thread.name().unwrap_or("-"));
        if c.show_level {
            tag.push(':');
            tag.push_str(r.level().as_str());
        }
        if c.show_origin {
            tag.push_str(&format!(
                ":{}:{}",
                r.file().unwrap_or("unknown"),
                r.line().unwrap_or(0)
            ));
        }
        let line = format!("{} [{tag}] {}\n", utc_now(), r.args());
        let mut out = c.out.lock().unwrap_or_else(|e| e.into_inner());
        // A full pipe or disk loses the line, never the VM.
        let _ = out.write_all(line.as_bytes());
    }

    fn flush(&self) {
        if let Some(c) = &*self.custom() {
            let _ = c.out.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }
}

/// Installs the logger: `verbose` picks env_logger's default level
/// (`RUST_LOG` overrides it).
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
            .format_target(false)
            .build();
    let max = inner.filter();
    let logger = LOGGER.get_or_init(|| VmmLogger {
        inner,
        custom: RwLock::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

/// Applies a `PUT /logger` configuration for instance `id`.
pub fn configure(config: &LoggerConfig, id: &str) -> Result<(), String> {
    let Some(logger) = LOGGER.get() else {
        return Err("the logger is not installed".into());
    };
    let out: Box<dyn Write + Send + Sync> = match &config.log_path {
        Some(path) => {
            Box::new(open_append(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?)
        }
        None => Box::new(std::io::stderr()),
    };
    let level = config.level.unwrap_or(LogLevel::Info).filter();
    let custom = Custom {
        level,
        show_level: config.show_level.unwrap_or(false),
        show_origin: config.show_log_origin.unwrap_or(false),
        module: config.module.clone(),
        id: id.to_string(),
        out: Mutex::new(out),
    };
    *logger.custom.write().unwrap_or_else(|e| e.into_inner()) = Some(custom);
    log::set_max_level(level);
    Ok(())
}

/// Now, UTC, as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn` (Firecracker prints local
/// time in this shape; UTC needs no time zone database).
fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(now.as_secs(), now.subsec_nanos())
}

fn format_utc(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_utc_format() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000000");
        // 2024-02-29T12:34:56 UTC.
        assert_eq!(
            format_utc(1_709_210_096, 7),
            "2024-02-29T12:34:56.000000007"
        );
    }
}
