//! Helpers for the gRPC integration tests: model bundles in temporary directories, a real
//! server on 127.0.0.1:0, generated clients, and the external tools (grpcurl, Python).

#![allow(dead_code)]

use needscope::bundle::{self, Manifest};
use needscope::model::{FeatureConfig, FeatureSpace, LinearModel};
use needscope::server::pb::model_admin_client::ModelAdminClient;
use needscope::server::pb::needs_classifier_client::NeedsClassifierClient;
use needscope::server::{self, BundleLoader, ServerConfig, ServerHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundle the tests copy: `$NEEDSCOPE_TEST_BUNDLE`, else the shipped default bundle if it
/// has been trained.
pub fn default_bundle() -> Option<PathBuf> {
    let p = std::env::var_os("NEEDSCOPE_TEST_BUNDLE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/default"));
    p.join(bundle::MANIFEST).is_file().then_some(p)
}

const TINY_RULES: &str = r#"format_version = 1

[[rule]]
id = "need.refund-is-service"
description = "asking for a refund is about service"
axis = "need"
value = "SERVICE"
keywords = ["退款", "refund"]
effect = "boost"
weight = 2.0

[[rule]]
id = "gap.broken-is-below"
description = "something broken is below expectation"
axis = "gap"
value = "BELOW"
keywords = ["坏了", "broken"]
effect = "override"
priority = 10
"#;

const TINY_THRESHOLDS: &str = r#"[uncertainty]
min_probability = 0.30
min_margin = 0.01

[content_free]
phrases = ["在吗", "好的", "谢谢", "ok", "thanks"]
"#;

/// Writes a tiny, valid bundle (character and word features, two rules) with `version`.
pub fn write_tiny_bundle(dir: &Path, version: &str) {
    use needscope::labels::TOTAL_VALUES;
    let names = [
        ("c:价", 1.2),
        ("c:格", 1.2),
        ("c:贵", 1.5),
        ("c:服", 1.1),
        ("c:务", 1.1),
        ("c:快", 1.3),
        ("c:递", 1.3),
        ("c:坏", 1.6),
        ("c:信", 1.4),
        ("c:任", 1.4),
        ("w:refund", 2.0),
        ("w:price", 1.8),
        ("w:late", 1.7),
        ("w:trust", 1.9),
        ("w:goals", 2.1),
    ];
    let features = FeatureSpace::new(
        names.iter().map(|(n, i)| (n.to_string(), *i)).collect(),
        FeatureConfig { jieba: false },
    )
    .expect("feature space");
    // deterministic, feature-dependent weights
    let mut weights = vec![0.0; features.len() * TOTAL_VALUES];
    for f in 0..features.len() {
        for v in 0..TOTAL_VALUES {
            weights[f * TOTAL_VALUES + v] = (((f * 7 + v * 3) % 11) as f64 - 5.0) * 0.4;
        }
    }
    let model = LinearModel::new(features, weights, [0.0; TOTAL_VALUES]).expect("model");
    let mut files = BTreeMap::new();
    files.insert(bundle::MODEL_FILE.to_string(), model.to_bytes());
    files.insert(
        bundle::RULES_FILE.to_string(),
        TINY_RULES.as_bytes().to_vec(),
    );
    files.insert(
        bundle::THRESHOLDS_FILE.to_string(),
        TINY_THRESHOLDS.as_bytes().to_vec(),
    );
    files.insert(bundle::USER_DICT_FILE.to_string(), Vec::new());
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "dev".to_string(),
        BTreeMap::from([("need_macro_f1".to_string(), 0.5)]),
    );
    metrics.insert(
        "challenge".to_string(),
        BTreeMap::from([("need_macro_f1".to_string(), 0.4)]),
    );
    let manifest = Manifest {
        format_version: bundle::BUNDLE_FORMAT_VERSION,
        model_version: version.to_string(),
        created_at: "2026-01-01T00:00:00Z".to_string(),
        corpus_hash: "0".repeat(64),
        corpus_files: Vec::new(),
        labels: bundle::label_sets(),
        files: BTreeMap::new(),
        training: BTreeMap::new(),
        metrics,
    };
    bundle::write_bundle(dir, &files, manifest).expect("write bundle");
}

/// A bundle for tests in `dir` with `version`: a copy of the shipped default bundle with its
/// version changed when it exists, the tiny bundle otherwise.
pub fn write_test_bundle(dir: &Path, version: &str) {
    let Some(src) = default_bundle() else {
        write_tiny_bundle(dir, version);
        return;
    };
    std::fs::create_dir_all(dir).expect("bundle dir");
    for entry in std::fs::read_dir(&src).expect("read default bundle") {
        let entry = entry.expect("entry");
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy bundle file");
        }
    }
    let mpath = dir.join(bundle::MANIFEST);
    let mut manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&mpath).expect("manifest")).expect("manifest json");
    manifest.model_version = version.to_string();
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest).expect("json")).expect("write");
}

/// Corrupts a bundle's model file (its hash no longer matches the manifest).
pub fn corrupt_bundle(dir: &Path) {
    let p = dir.join(bundle::MODEL_FILE);
    let mut bytes = std::fs::read(&p).expect("model file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&p, bytes).expect("write model file");
}

/// A configuration for tests: port 0, no metrics, quick shutdown, `bundle` as the bundle.
pub fn test_config(bundle: &Path) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        bundle: bundle.to_path_buf(),
        metrics_listen: None,
        drain_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    }
}

/// A running test server with its temporary directory.
pub struct TestServer {
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on a fresh bundle (version `v1`) and waits until it serves. `adjust`
    /// edits the configuration first.
    pub async fn start(adjust: impl FnOnce(&mut ServerConfig, &Path)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("bundles/v1");
        write_test_bundle(&bundle, "v1");
        let mut config = test_config(&bundle);
        adjust(&mut config, dir.path());
        let handle = server::start(config).await.expect("server starts");
        handle.wait_ready().await.expect("model loads");
        TestServer { handle, dir }
    }

    /// Starts a server whose first load waits for `gate` (the server is NOT_SERVING until
    /// then); later loads go straight through.
    pub async fn start_gated(gate: tokio::sync::oneshot::Receiver<()>) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("bundles/v1");
        write_test_bundle(&bundle, "v1");
        let gate = std::sync::Mutex::new(Some(gate));
        let loader: BundleLoader = std::sync::Arc::new(move |p: &Path| {
            let first = gate.lock().ok().and_then(|mut g| g.take());
            if let Some(rx) = first {
                let _ = rx.blocking_recv();
            }
            needscope::classifier::Classifier::load(p)
        });
        let handle = server::start_with_loader(test_config(&bundle), loader)
            .await
            .expect("server starts");
        TestServer { handle, dir }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle.local_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn classifier(&self) -> NeedsClassifierClient<Channel> {
        NeedsClassifierClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    pub async fn admin(&self) -> ModelAdminClient<Channel> {
        ModelAdminClient::new(self.channel().await)
    }

    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    /// Shuts down and checks the server stopped cleanly.
    pub async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.handle.wait())
            .await
            .expect("server stops in time")
            .expect("server stops cleanly");
    }
}

/// Health status of `service` (`""` for the server).
pub async fn health_status(client: &mut HealthClient<Channel>, service: &str) -> i32 {
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// Whether tests must find external tools (CI) rather than skip without them.
pub fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The grpcurl binary: `$NEEDSCOPE_GRPCURL`, else `.venv/bin/grpcurl` (installed by
/// scripts/test-tools.sh).
pub fn grpcurl() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NEEDSCOPE_GRPCURL") {
        return Some(PathBuf::from(p));
    }
    let p = repo_root().join(".venv/bin/grpcurl");
    p.is_file().then_some(p)
}

/// The Python of the tools venv (with grpcio and grpcio-tools).
pub fn venv_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NEEDSCOPE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = repo_root().join(".venv/bin/python");
    p.is_file().then_some(p)
}

/// Returns the tool, or `None` after saying the test is skipped; panics under CI.
pub fn require_tool(name: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    match found {
        Some(p) => Some(p),
        None if tools_required() => {
            panic!("{name} is missing: run scripts/test-tools.sh (CI=true makes this a failure)")
        }
        None => {
            eprintln!("skipping: {name} not found (run scripts/test-tools.sh)");
            None
        }
    }
}

/// Runs a command with a time limit; returns (success, stdout, stderr).
pub async fn run_command(
    cmd: &mut tokio::process::Command,
    limit: Duration,
) -> (bool, String, String) {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .expect("command finishes in time")
        .expect("command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Log lines captured from every test of this binary.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buf) = self.0.lock() {
            buf.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global subscriber capturing `needscope` logs at TRACE level. Global, not
/// thread-local, so events from every runtime thread are captured.
pub fn capture_logs() -> LogCapture {
    static CAPTURE: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = LogCapture::default();
            let writer = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("needscope=trace"))
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
            capture
        })
        .clone()
}
