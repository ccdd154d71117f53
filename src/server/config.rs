//! The server's configuration, layered: command-line flags over `NEEDSCOPE_*` environment
//! variables over an optional TOML file over built-in defaults. Validated once, at start-up,
//! into a [`ServerConfig`] the rest of the server trusts.
//!
//! Owns the settings and their checks; the flags themselves are declared in
//! [`super::cli::ServeArgs`].

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Default bundle directory.
pub const DEFAULT_BUNDLE: &str = "models/default";
/// Default maximum statement length in bytes (16 KiB).
pub const DEFAULT_MAX_TEXT_BYTES: usize = 16 * 1024;
/// Default maximum number of statements in one `ClassifyBatch`.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 256;
/// Default server-wide limit on RPCs in flight.
pub const DEFAULT_MAX_CONCURRENCY: usize = 512;
/// Default request timeout of unary RPCs.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time between health turning NOT_SERVING and the listener closing at shutdown.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(1);
/// Default limit on waiting for in-flight requests at shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted request id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Upper bound of `max_text_bytes`.
pub const MAX_TEXT_BYTES_LIMIT: usize = 1024 * 1024;
/// Upper bound of `max_batch_size`.
pub const MAX_BATCH_SIZE_LIMIT: usize = 10_000;
/// Upper bound of the largest request message the limits allow.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 256 * 1024 * 1024;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Certificate and key files for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Validated server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Bundle loaded at start, on SIGHUP and by a ReloadModel without a path.
    pub bundle: PathBuf,
    /// Directory under which ReloadModel may load other bundles (none: only `bundle`).
    pub bundle_root: Option<PathBuf>,
    /// Longest statement, in UTF-8 bytes.
    pub max_text_bytes: usize,
    /// Most statements in one ClassifyBatch.
    pub max_batch_size: usize,
    /// RPCs in flight across the server; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrency: usize,
    /// Time limit of unary RPCs (a shorter client deadline wins).
    pub request_timeout: Duration,
    /// Overrides the bundle's uncertainty `min_probability` on every axis.
    pub min_probability: Option<f64>,
    /// Overrides the bundle's uncertainty `min_margin` on every axis.
    pub min_margin: Option<f64>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber `EnvFilter` syntax).
    pub log_level: String,
    /// Whether statement text may appear in logs (it is personal data: off by default).
    pub log_statements: bool,
    /// Prometheus metrics address (none: no metrics endpoint).
    pub metrics_listen: Option<SocketAddr>,
    /// TLS files (none: plaintext).
    pub tls: Option<TlsFiles>,
    /// Whether the ModelAdmin service is served.
    pub admin_enabled: bool,
    /// Bearer token ModelAdmin requires (none: no token needed).
    pub admin_token: Option<String>,
    /// Time between health turning NOT_SERVING and the listener closing at shutdown.
    pub drain_delay: Duration,
    /// Limit on waiting for in-flight requests at shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: parse_addr(DEFAULT_LISTEN),
            bundle: PathBuf::from(DEFAULT_BUNDLE),
            bundle_root: None,
            max_text_bytes: DEFAULT_MAX_TEXT_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            min_probability: None,
            min_margin: None,
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            log_statements: false,
            metrics_listen: Some(parse_addr(DEFAULT_METRICS_LISTEN)),
            tls: None,
            admin_enabled: true,
            admin_token: None,
            drain_delay: DEFAULT_DRAIN_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

fn parse_addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A configuration problem, reported before the server starts.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Settings as they may appear in the TOML config file or on the command line; every field
/// optional. Layers are merged with [`Settings::overlay`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// See [`ServerConfig::listen`].
    pub listen: Option<String>,
    /// See [`ServerConfig::bundle`].
    pub bundle: Option<PathBuf>,
    /// See [`ServerConfig::bundle_root`].
    pub bundle_root: Option<PathBuf>,
    /// See [`ServerConfig::max_text_bytes`].
    pub max_text_bytes: Option<usize>,
    /// See [`ServerConfig::max_batch_size`].
    pub max_batch_size: Option<usize>,
    /// See [`ServerConfig::max_concurrency`].
    pub max_concurrency: Option<usize>,
    /// See [`ServerConfig::request_timeout`] (`30s`, `500ms`, `2m`).
    pub request_timeout: Option<String>,
    /// See [`ServerConfig::min_probability`].
    pub min_probability: Option<f64>,
    /// See [`ServerConfig::min_margin`].
    pub min_margin: Option<f64>,
    /// See [`ServerConfig::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`ServerConfig::log_level`].
    pub log_level: Option<String>,
    /// See [`ServerConfig::log_statements`].
    pub log_statements: Option<bool>,
    /// See [`ServerConfig::metrics_listen`]; `off` disables the endpoint.
    pub metrics_listen: Option<String>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// See [`ServerConfig::admin_enabled`] (key `admin`, like the flag).
    pub admin: Option<bool>,
    /// See [`ServerConfig::admin_token`].
    pub admin_token: Option<String>,
    /// See [`ServerConfig::drain_delay`].
    pub drain_delay: Option<String>,
    /// See [`ServerConfig::drain_timeout`].
    pub drain_timeout: Option<String>,
}

macro_rules! overlay_fields {
    ($self:ident, $top:ident, $($f:ident),* $(,)?) => {
        Settings { $($f: $top.$f.or($self.$f),)* }
    };
}

impl Settings {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message().trim())))
    }

    /// `top`'s values where set, this one's elsewhere.
    pub fn overlay(self, top: Settings) -> Settings {
        overlay_fields!(
            self,
            top,
            listen,
            bundle,
            bundle_root,
            max_text_bytes,
            max_batch_size,
            max_concurrency,
            request_timeout,
            min_probability,
            min_margin,
            log_format,
            log_level,
            log_statements,
            metrics_listen,
            tls_cert,
            tls_key,
            admin,
            admin_token,
            drain_delay,
            drain_timeout,
        )
    }

    /// Applies the settings over the defaults and validates the result.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let d = ServerConfig::default();
        let addr = |name: &str, v: &str| {
            v.parse::<SocketAddr>().map_err(|_| {
                ConfigError(format!(
                    "{name} {v:?} is not an address like 127.0.0.1:50051"
                ))
            })
        };
        let listen = match &self.listen {
            Some(v) => addr("listen", v)?,
            None => d.listen,
        };
        let metrics_listen = match self.metrics_listen.as_deref() {
            Some("off" | "none" | "") => None,
            Some(v) => Some(addr("metrics_listen", v)?),
            None => d.metrics_listen,
        };
        let duration = |name: &str, v: &Option<String>, default: Duration| match v {
            Some(s) => parse_duration(s).map_err(|e| ConfigError(format!("{name}: {e}"))),
            None => Ok(default),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "tls_cert and tls_key must be given together".into(),
                ))
            }
        };
        let c = ServerConfig {
            listen,
            bundle: self.bundle.unwrap_or(d.bundle),
            bundle_root: self.bundle_root,
            max_text_bytes: self.max_text_bytes.unwrap_or(d.max_text_bytes),
            max_batch_size: self.max_batch_size.unwrap_or(d.max_batch_size),
            max_concurrency: self.max_concurrency.unwrap_or(d.max_concurrency),
            request_timeout: duration("request_timeout", &self.request_timeout, d.request_timeout)?,
            min_probability: self.min_probability,
            min_margin: self.min_margin,
            log_format: self.log_format.unwrap_or(d.log_format),
            log_level: self.log_level.unwrap_or(d.log_level),
            log_statements: self.log_statements.unwrap_or(d.log_statements),
            metrics_listen,
            tls,
            admin_enabled: self.admin.unwrap_or(d.admin_enabled),
            admin_token: self.admin_token.filter(|t| !t.is_empty()),
            drain_delay: duration("drain_delay", &self.drain_delay, d.drain_delay)?,
            drain_timeout: duration("drain_timeout", &self.drain_timeout, d.drain_timeout)?,
        };
        c.validate()?;
        Ok(c)
    }
}

impl ServerConfig {
    /// Checks every limit; called by [`Settings::resolve`] and by the server before it starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if !(1..=MAX_TEXT_BYTES_LIMIT).contains(&self.max_text_bytes) {
            return bad(format!(
                "max_text_bytes must be within 1..={MAX_TEXT_BYTES_LIMIT}, got {}",
                self.max_text_bytes
            ));
        }
        if !(1..=MAX_BATCH_SIZE_LIMIT).contains(&self.max_batch_size) {
            return bad(format!(
                "max_batch_size must be within 1..={MAX_BATCH_SIZE_LIMIT}, got {}",
                self.max_batch_size
            ));
        }
        if self.max_request_message_bytes() > MAX_MESSAGE_BYTES_LIMIT {
            return bad(format!(
                "max_batch_size x max_text_bytes allows requests of {} bytes, over the {MAX_MESSAGE_BYTES_LIMIT} byte limit",
                self.max_request_message_bytes()
            ));
        }
        if self.max_concurrency == 0 {
            return bad("max_concurrency must be at least 1".into());
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be positive".into());
        }
        for (name, v) in [
            ("min_probability", self.min_probability),
            ("min_margin", self.min_margin),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return bad(format!("{name} must be within 0..=1, got {v}"));
                }
            }
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.chars().any(|c| !c.is_ascii_graphic()))
        {
            return bad("admin_token must be printable ASCII without spaces".into());
        }
        if let Some(m) = self.metrics_listen {
            if m == self.listen && m.port() != 0 {
                return bad("metrics_listen must differ from listen".into());
            }
        }
        Ok(())
    }

    /// The largest request message the limits allow: a full batch of maximal statements plus
    /// room for ids and framing. Used as the decoding limit.
    pub fn max_request_message_bytes(&self) -> usize {
        self.max_batch_size
            .saturating_mul(self.max_text_bytes + MAX_ID_BYTES + 16)
            .saturating_add(64 * 1024)
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 30s or 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?} is not a duration like 500ms, 30s or 2m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn layers_override_in_order() {
        let file = Settings {
            max_batch_size: Some(100),
            max_text_bytes: Some(1000),
            ..Settings::default()
        };
        let flags = Settings {
            max_batch_size: Some(50),
            ..Settings::default()
        };
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(c.max_batch_size, 50);
        assert_eq!(c.max_text_bytes, 1000);
        assert_eq!(c.max_concurrency, DEFAULT_MAX_CONCURRENCY);
    }

    #[test]
    fn defaults_fit_a_full_batch() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert!(c.max_request_message_bytes() > 256 * 16 * 1024);
    }

    #[test]
    fn bad_settings_are_refused() {
        let refuse = |s: Settings| s.resolve().unwrap_err().to_string();
        assert!(refuse(Settings {
            max_batch_size: Some(0),
            ..Default::default()
        })
        .contains("max_batch_size"));
        assert!(refuse(Settings {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        })
        .contains("together"));
        assert!(refuse(Settings {
            min_margin: Some(1.5),
            ..Default::default()
        })
        .contains("min_margin"));
        assert!(refuse(Settings {
            listen: Some("localhost".into()),
            ..Default::default()
        })
        .contains("listen"));
        let off = Settings {
            metrics_listen: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(off.resolve().unwrap().metrics_listen, None);
    }

    #[test]
    fn config_file_rejects_unknown_keys() {
        assert!(toml::from_str::<Settings>("listen = \"127.0.0.1:1\"\nbogus = 1\n").is_err());
        let s: Settings =
            toml::from_str("log_format = \"json\"\nrequest_timeout = \"5s\"\n").unwrap();
        assert_eq!(s.log_format, Some(LogFormat::Json));
        let s: Settings = toml::from_str("admin = false\nadmin_token = \"t\"\n").unwrap();
        assert!(!s.resolve().unwrap().admin_enabled);
    }
}
