//! The `serve` and `bench` subcommands' arguments and entry points. Synchronous: each builds
//! its own tokio runtime. `anyhow` stops here.

use super::config::{LogFormat, ServerConfig, Settings};
use super::run;
use anyhow::Context as _;
use std::path::PathBuf;

/// Arguments of `needscope serve`. Every flag falls back to a `NEEDSCOPE_*` environment
/// variable, then to the config file, then to the default.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML config file with any of the settings below (snake_case keys)
    #[arg(long, env = "NEEDSCOPE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]
    #[arg(long, env = "NEEDSCOPE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Model bundle loaded at start and on reload [default: models/default]
    #[arg(long, env = "NEEDSCOPE_BUNDLE", value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Directory under which ReloadModel may load other bundles [default: none]
    #[arg(long, env = "NEEDSCOPE_BUNDLE_ROOT", value_name = "DIR")]
    pub bundle_root: Option<PathBuf>,
    /// Longest statement in UTF-8 bytes [default: 16384]
    #[arg(long, env = "NEEDSCOPE_MAX_TEXT_BYTES", value_name = "BYTES")]
    pub max_text_bytes: Option<usize>,
    /// Most statements in one ClassifyBatch [default: 256]
    #[arg(long, env = "NEEDSCOPE_MAX_BATCH_SIZE", value_name = "N")]
    pub max_batch_size: Option<usize>,
    /// RPCs in flight across the server before RESOURCE_EXHAUSTED [default: 512]
    #[arg(long, env = "NEEDSCOPE_MAX_CONCURRENCY", value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// Time limit of unary RPCs, e.g. 500ms, 30s [default: 30s]
    #[arg(long, env = "NEEDSCOPE_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Uncertainty: overrides the bundle's minimum top probability on every axis
    #[arg(long, env = "NEEDSCOPE_MIN_PROBABILITY", value_name = "P")]
    pub min_probability: Option<f64>,
    /// Uncertainty: overrides the bundle's minimum top-two margin on every axis
    #[arg(long, env = "NEEDSCOPE_MIN_MARGIN", value_name = "P")]
    pub min_margin: Option<f64>,
    /// Log format [default: text]
    #[arg(long, env = "NEEDSCOPE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info, debug, needscope=debug [default: info]
    #[arg(long, env = "NEEDSCOPE_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Allow statement text in debug logs (personal data) [default: false]
    #[arg(long, env = "NEEDSCOPE_LOG_STATEMENTS", value_name = "BOOL")]
    pub log_statements: Option<bool>,
    /// Prometheus metrics address, or "off" [default: 127.0.0.1:9464]
    #[arg(long, env = "NEEDSCOPE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key enables TLS
    #[arg(long, env = "NEEDSCOPE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, env = "NEEDSCOPE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve the ModelAdmin service [default: true]
    #[arg(long, env = "NEEDSCOPE_ADMIN", value_name = "BOOL")]
    pub admin: Option<bool>,
    /// Bearer token ModelAdmin requires [default: none]
    #[arg(
        long,
        env = "NEEDSCOPE_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// At shutdown, time between health NOT_SERVING and closing the listener [default: 1s]
    #[arg(long, env = "NEEDSCOPE_DRAIN_DELAY", value_name = "DURATION")]
    pub drain_delay: Option<String>,
    /// At shutdown, longest wait for requests in flight [default: 30s]
    #[arg(long, env = "NEEDSCOPE_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,
}

impl ServeArgs {
    /// Flags and environment over the config file over the defaults, validated.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(p) => Settings::from_file(p)?,
            None => Settings::default(),
        };
        let flags = Settings {
            listen: self.listen.clone(),
            bundle: self.bundle.clone(),
            bundle_root: self.bundle_root.clone(),
            max_text_bytes: self.max_text_bytes,
            max_batch_size: self.max_batch_size,
            max_concurrency: self.max_concurrency,
            request_timeout: self.request_timeout.clone(),
            min_probability: self.min_probability,
            min_margin: self.min_margin,
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            log_statements: self.log_statements,
            metrics_listen: self.metrics_listen.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            admin: self.admin,
            admin_token: self.admin_token.clone(),
            drain_delay: self.drain_delay.clone(),
            drain_timeout: self.drain_timeout.clone(),
        };
        Ok(file.overlay(flags).resolve()?)
    }
}

/// Sets up logging to stderr in the configured format. Does nothing if a subscriber is
/// already installed.
pub fn init_logging(config: &ServerConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("log filter {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    Ok(())
}

/// `needscope serve`: runs the server until SIGTERM or Ctrl-C, reloading on SIGHUP. Exits
/// with an error if the configuration is invalid or the model cannot be loaded at start.
pub fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("needscope-rt")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_until_signalled(config))
}

async fn serve_until_signalled(config: ServerConfig) -> anyhow::Result<()> {
    let handle = run::start(config).await?;
    let control = handle.control();
    tokio::spawn(watch_signals(control));
    match handle.wait_ready().await {
        Ok(version) => tracing::info!(model_version = %version, "serving"),
        Err(e) => {
            handle.shutdown();
            let _ = handle.wait().await;
            anyhow::bail!("cannot load the model: {}", e.message());
        }
    }
    handle.wait().await?;
    Ok(())
}

#[cfg(unix)]
async fn watch_signals(control: run::ServerControl) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        _ => {
            tracing::error!("cannot install signal handlers; use Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            control.shutdown();
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); control.shutdown(); return; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted"); control.shutdown(); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the model");
                // reload errors are logged by the reload itself; the old model keeps serving
                let _ = control.reload().await;
            }
        }
    }
}

#[cfg(not(unix))]
async fn watch_signals(control: run::ServerControl) {
    let _ = tokio::signal::ctrl_c().await;
    control.shutdown();
}

pub use super::bench::{run_bench, BenchArgs};

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("needscope.toml");
        std::fs::write(
            &file,
            "max_batch_size = 64\nmax_text_bytes = 4096\nlog_format = \"json\"\nmetrics_listen = \"off\"\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "needscope",
            "--config",
            file.to_str().unwrap(),
            "--max-batch-size",
            "32",
            "--admin",
            "false",
            "--request-timeout",
            "5s",
        ])
        .unwrap();
        let c = cli.serve.resolve().unwrap();
        assert_eq!(c.max_batch_size, 32, "flag over file");
        assert_eq!(c.max_text_bytes, 4096, "file over default");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.metrics_listen, None);
        assert!(!c.admin_enabled);
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(5));
        assert_eq!(
            c.max_concurrency,
            super::super::config::DEFAULT_MAX_CONCURRENCY
        );
    }

    #[test]
    fn a_bad_config_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "max_batch_size = \"many\"\n").unwrap();
        let cli = Cli::try_parse_from(["needscope", "--config", file.to_str().unwrap()]).unwrap();
        let e = cli.serve.resolve().unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
    }
}
