//! Starting and stopping the server.
//!
//! [`start`] binds the listener, registers health (NOT_SERVING), reflection and the services,
//! and loads the model in the background: health turns SERVING once it is loaded. Shutdown
//! ([`ServerHandle::shutdown`], SIGTERM or Ctrl-C in `needscope serve`) turns health
//! NOT_SERVING, keeps accepting for the drain delay so load balancers notice, then stops
//! accepting and waits (at most the drain timeout) for requests in flight to finish.

use super::admin::{AdminService, BearerAuth};
use super::config::{ConfigError, ServerConfig};
use super::layers::RpcLayer;
use super::metrics;
use super::pb::{
    self, model_admin_server::ModelAdminServer, needs_classifier_server::NeedsClassifierServer,
};
use super::service::ClassifierService;
use super::state::{
    default_loader, BundleLoader, ReloadOutcome, ServerState, ADMIN_SERVICE, CLASSIFIER_SERVICE,
};
use super::status::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS files could not be read or used.
    #[error("tls: {0}")]
    Tls(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task was lost.
    #[error("server task: {0}")]
    Task(String),
}

/// Controls a running server from anywhere (signal handlers, tests); cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerControl {
    state: Arc<ServerState>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl ServerControl {
    /// Reloads the configured bundle (what SIGHUP does).
    pub async fn reload(&self) -> Result<ReloadOutcome, ApiError> {
        self.state.reload(self.state.config.bundle.clone()).await
    }

    /// Begins a graceful shutdown; idempotent.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    control: ServerControl,
    ready: watch::Receiver<Option<Result<String, ApiError>>>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl ServerHandle {
    /// The gRPC address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Waits for the initial model load; returns the loaded model version.
    pub async fn wait_ready(&self) -> Result<String, ApiError> {
        let mut rx = self.ready.clone();
        let outcome = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        outcome.unwrap_or(Err(ApiError::ShuttingDown))
    }

    /// A control for signal handlers and other tasks.
    pub fn control(&self) -> ServerControl {
        self.control.clone()
    }

    /// Reloads the configured bundle (what SIGHUP does).
    pub async fn reload(&self) -> Result<ReloadOutcome, ApiError> {
        self.control.reload().await
    }

    /// Begins a graceful shutdown; idempotent. Await [`ServerHandle::wait`] for the end.
    pub fn shutdown(&self) {
        self.control.shutdown();
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::Task(e.to_string()))?
    }
}

/// A reflection builder listing the services this server actually serves.
fn reflection(admin: bool) -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc error details (BadRequest, RetryInfo, ...), so clients can decode them
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(CLASSIFIER_SERVICE)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    if admin {
        b = b.with_service_name(ADMIN_SERVICE);
    }
    b
}

/// Starts a server loading bundles with [`crate::classifier::Classifier::load`].
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServeError> {
    start_with_loader(config, default_loader()).await
}

/// Starts a server with a custom bundle loader (for embedding and tests).
pub async fn start_with_loader(
    config: ServerConfig,
    loader: BundleLoader,
) -> Result<ServerHandle, ServeError> {
    config.validate()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(CLASSIFIER_SERVICE, ServingStatus::NotServing)
        .await;
    let state = Arc::new(ServerState::new(config.clone(), health, loader));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let prometheus = metrics::install();
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_listen {
        let listener = metrics::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        metrics_addr = listener.local_addr().ok();
        match prometheus {
            Some(handle) => {
                let mut stop = shutdown_rx.clone();
                tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    if let Err(e) = metrics::serve(listener, handle, stopped).await {
                        tracing::error!(error = %e, "metrics endpoint failed");
                    }
                });
            }
            None => tracing::warn!("another metrics recorder is installed; /metrics is not served"),
        }
    }

    let reflection_v1 = reflection(config.admin_enabled)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(config.admin_enabled)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let classifier = NeedsClassifierServer::new(ClassifierService::new(state.clone()))
        .max_decoding_message_size(config.max_request_message_bytes())
        .max_encoding_message_size(usize::MAX);
    let admin = config.admin_enabled.then(|| {
        InterceptedService::new(
            ModelAdminServer::new(AdminService::new(state.clone())),
            BearerAuth::new(config.admin_token.as_deref()),
        )
    });

    let mut builder = Server::builder()
        .tcp_nodelay(true)
        // bounded per connection; the concurrency limit bounds the server as a whole
        .max_concurrent_streams(Some(1024))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = &config.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())))
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|e| ServeError::Tls(e.to_string()))?;
    }
    let router = builder
        .layer(RpcLayer::new(
            config.max_concurrency,
            config.request_timeout,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(classifier)
        .add_optional_service(admin);

    // shutdown: health NOT_SERVING, keep accepting for the drain delay, then stop accepting
    let (draining_tx, mut draining_rx) = watch::channel(false);
    let signal = {
        let state = state.clone();
        let mut shutdown_rx = shutdown_rx.clone();
        let delay = config.drain_delay;
        async move {
            let _ = shutdown_rx.wait_for(|s| *s).await;
            tracing::info!("shutting down: health NOT_SERVING, draining");
            state.begin_shutdown().await;
            tokio::time::sleep(delay).await;
            tracing::info!("no longer accepting connections");
            draining_tx.send_replace(true);
        }
    };
    let drain_timeout = config.drain_timeout;
    let task = tokio::spawn(async move {
        let serve = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::pin!(serve);
        let give_up = async move {
            let _ = draining_rx.wait_for(|d| *d).await;
            tokio::time::sleep(drain_timeout).await;
        };
        tokio::select! {
            r = &mut serve => {
                r?;
                tracing::info!("drained, stopped");
                Ok(())
            }
            _ = give_up => {
                tracing::warn!(
                    timeout_s = drain_timeout.as_secs_f64(),
                    "drain timeout: closing with requests still in flight"
                );
                Ok(())
            }
        }
    });

    // initial load in the background: health turns SERVING when it is done
    let (ready_tx, ready_rx) = watch::channel(None);
    {
        let state = state.clone();
        let bundle = config.bundle.clone();
        tokio::spawn(async move {
            let r = state.reload(bundle).await.map(|o| o.version);
            if let Err(e) = &r {
                tracing::error!(error = %e.message(), "initial model load failed");
            }
            ready_tx.send_replace(Some(r));
        });
    }

    tracing::info!(
        listen = %local_addr,
        tls = config.tls.is_some(),
        admin = config.admin_enabled,
        metrics = ?metrics_addr,
        "needscope gRPC server listening"
    );
    Ok(ServerHandle {
        local_addr,
        metrics_addr,
        control: ServerControl {
            state,
            shutdown: Arc::new(shutdown_tx),
        },
        ready: ready_rx,
        task,
    })
}
