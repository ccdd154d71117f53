//! State shared by the services: the model being served (swapped atomically on reload), the
//! validated configuration and the health reporter.

use super::config::ServerConfig;
use super::metrics;
use super::pb;
use super::status::ApiError;
use super::validate::Limits;
use crate::classifier::{AxisThresholds, Classifier, ClassifyOptions, Thresholds};
use crate::error::Result as CoreResult;
use arc_swap::ArcSwapOption;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Loads a bundle directory into a classifier (normally [`Classifier::load`]).
pub type BundleLoader = Arc<dyn Fn(&Path) -> CoreResult<Classifier> + Send + Sync>;

/// The default loader.
pub fn default_loader() -> BundleLoader {
    Arc::new(|p: &Path| Classifier::load(p))
}

/// A model ready to serve with the thresholds the server applies to it.
#[derive(Debug)]
pub struct Served {
    /// The classifier.
    pub classifier: Classifier,
    /// Thresholds overriding the bundle's (from the server configuration), if any.
    pub thresholds: Option<Thresholds>,
}

impl Served {
    /// Options for one statement.
    pub fn options(
        &self,
        language_hint: Option<crate::labels::Lang>,
        explain: bool,
    ) -> ClassifyOptions {
        ClassifyOptions {
            explain,
            thresholds: self.thresholds,
            language_hint,
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// Version serving before (empty if none was).
    pub previous_version: String,
    /// Version serving now.
    pub version: String,
    /// The bundle loaded.
    pub bundle_path: PathBuf,
    /// Time spent loading and verifying.
    pub load_time: Duration,
}

/// The classifier service's full name (also its health service name).
pub const CLASSIFIER_SERVICE: &str = "needscope.v1.NeedsClassifier";
/// The admin service's full name.
pub const ADMIN_SERVICE: &str = "needscope.v1.ModelAdmin";

/// The shared state.
pub struct ServerState {
    model: ArcSwapOption<Served>,
    /// Validated configuration.
    pub config: ServerConfig,
    /// Request limits.
    pub limits: Limits,
    health: HealthReporter,
    loader: BundleLoader,
    reload_lock: tokio::sync::Mutex<()>,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("config", &self.config)
            .field("loaded", &self.model.load().is_some())
            .finish()
    }
}

impl ServerState {
    /// State with no model loaded yet.
    pub fn new(config: ServerConfig, health: HealthReporter, loader: BundleLoader) -> ServerState {
        let limits = Limits {
            max_text_bytes: config.max_text_bytes,
            max_batch_size: config.max_batch_size,
        };
        ServerState {
            model: ArcSwapOption::empty(),
            config,
            limits,
            health,
            loader,
            reload_lock: tokio::sync::Mutex::new(()),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The model serving now; requests keep the `Arc` they got, so a reload never pulls a
    /// model from under them.
    pub fn model(&self) -> Result<Arc<Served>, ApiError> {
        self.model.load_full().ok_or(ApiError::NotLoaded)
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks the server as draining: health NOT_SERVING for every service.
    pub async fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.set_health(ServingStatus::NotServing).await;
    }

    async fn set_health(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        self.health
            .set_service_status(CLASSIFIER_SERVICE, status)
            .await;
    }

    /// Resolves the bundle a reload asks for: empty means the configured bundle; any other
    /// path (relative ones are taken relative to the bundle root) must lie under the bundle
    /// root once symbolic links are resolved.
    pub fn resolve_bundle_path(&self, requested: &str) -> Result<PathBuf, ApiError> {
        if requested.is_empty() {
            return Ok(self.config.bundle.clone());
        }
        let requested = Path::new(requested);
        let Some(root) = &self.config.bundle_root else {
            let same = match (requested.canonicalize(), self.config.bundle.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            return if same {
                Ok(self.config.bundle.clone())
            } else {
                Err(ApiError::PathNotAllowed(
                    "no bundle root is configured, so only the configured bundle can be loaded (leave bundle_path empty)".into(),
                ))
            };
        };
        let root = root
            .canonicalize()
            .map_err(|e| ApiError::BundleRefused(format!("bundle root {}: {e}", root.display())))?;
        let joined = if requested.is_absolute() {
            requested.to_path_buf()
        } else {
            root.join(requested)
        };
        let resolved = joined
            .canonicalize()
            .map_err(|e| ApiError::BundleRefused(format!("{}: {e}", joined.display())))?;
        if resolved.starts_with(&root) && resolved != root {
            Ok(resolved)
        } else {
            Err(ApiError::PathNotAllowed(format!(
                "{} is not under the bundle root {}",
                requested.display(),
                root.display()
            )))
        }
    }

    fn thresholds_for(&self, c: &Classifier) -> Option<Thresholds> {
        let (p, m) = (self.config.min_probability, self.config.min_margin);
        if p.is_none() && m.is_none() {
            return None;
        }
        let base = c.thresholds();
        Some(Thresholds(base.0.map(|t| AxisThresholds {
            min_probability: p.unwrap_or(t.min_probability),
            min_margin: m.unwrap_or(t.min_margin),
        })))
    }

    /// Loads `path` on a blocking thread, verifies it and swaps it in. One reload at a time;
    /// a failed load leaves the serving model untouched.
    pub async fn reload(&self, path: PathBuf) -> Result<ReloadOutcome, ApiError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let started = Instant::now();
        let loader = self.loader.clone();
        let load_path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || loader(&load_path))
            .await
            .map_err(|e| ApiError::Internal(format!("bundle loader failed: {e}")))?;
        let classifier = match loaded {
            Ok(c) => c,
            Err(e) => {
                metrics::record_reload(false);
                let err = ApiError::from(e);
                tracing::warn!(bundle = %path.display(), error = %err.message(), "model reload refused");
                return Err(err);
            }
        };
        let load_time = started.elapsed();
        let thresholds = self.thresholds_for(&classifier);
        let version = classifier.version().to_string();
        let previous = self.model.swap(Some(Arc::new(Served {
            classifier,
            thresholds,
        })));
        let previous_version = previous
            .as_ref()
            .map(|p| p.classifier.version().to_string())
            .unwrap_or_default();
        // the old model is freed when its last in-flight request finishes
        drop(previous);
        metrics::record_reload(true);
        metrics::set_model(
            &version,
            Some(previous_version.as_str()).filter(|v| !v.is_empty()),
        );
        if !self.is_shutting_down() {
            self.set_health(ServingStatus::Serving).await;
        }
        tracing::info!(
            bundle = %path.display(),
            model_version = %version,
            previous_version = %previous_version,
            load_ms = load_time.as_millis() as u64,
            "model loaded"
        );
        Ok(ReloadOutcome {
            previous_version,
            version,
            bundle_path: path,
            load_time,
        })
    }

    /// GetModelInfo's answer.
    pub fn model_info(&self) -> Result<pb::GetModelInfoResponse, ApiError> {
        Ok(super::convert::model_info(self.model()?.classifier.info()))
    }
}
