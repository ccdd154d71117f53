//! The tower layer every RPC passes through, one place for the cross-cutting rules:
//!
//! - a tracing span per RPC with request id, method, final code and latency;
//! - metrics by method and code;
//! - load shedding: past the server-wide concurrency limit the classifier RPCs are refused
//!   at once with RESOURCE_EXHAUSTED (no queue); health, reflection and admin are never shed;
//! - deadlines: unary RPCs end with DEADLINE_EXCEEDED at the client's `grpc-timeout` or the
//!   server's request timeout, whichever is sooner (tonic would answer CANCELLED);
//! - panic isolation: a panicking handler answers INTERNAL and the server goes on.
//!
//! The permit and the record of an RPC live until its response body has ended, so a stream
//! counts as in flight for as long as it runs and is logged with its final status.

use super::metrics;
use super::status::{normalize_transport_status, ApiError};
use futures::future::BoxFuture;
use futures::FutureExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the layer treats a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// Full method name for logs and metrics (`needscope.v1.NeedsClassifier/Classify`).
    pub name: &'static str,
    /// Counts against the concurrency limit.
    pub shed: bool,
    /// A unary RPC (the request timeout applies).
    pub unary: bool,
}

/// Looks a request path up.
pub fn method_info(path: &str) -> MethodInfo {
    let m = |name, shed, unary| MethodInfo { name, shed, unary };
    match path {
        "/needscope.v1.NeedsClassifier/Classify" => {
            m("needscope.v1.NeedsClassifier/Classify", true, true)
        }
        "/needscope.v1.NeedsClassifier/ClassifyBatch" => {
            m("needscope.v1.NeedsClassifier/ClassifyBatch", true, true)
        }
        "/needscope.v1.NeedsClassifier/ClassifyStream" => {
            m("needscope.v1.NeedsClassifier/ClassifyStream", true, false)
        }
        "/needscope.v1.NeedsClassifier/GetModelInfo" => {
            m("needscope.v1.NeedsClassifier/GetModelInfo", false, true)
        }
        "/needscope.v1.ModelAdmin/ReloadModel" => {
            m("needscope.v1.ModelAdmin/ReloadModel", false, true)
        }
        "/grpc.health.v1.Health/Check" => m("grpc.health.v1.Health/Check", false, true),
        "/grpc.health.v1.Health/Watch" => m("grpc.health.v1.Health/Watch", false, false),
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo" => m(
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            false,
            false,
        ),
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo" => m(
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            false,
            false,
        ),
        _ => m("unknown", false, false),
    }
}

#[derive(Debug)]
struct Shared {
    permits: Arc<Semaphore>,
    limit: usize,
    request_timeout: Duration,
    next_id: AtomicU64,
}

/// The layer.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    shared: Arc<Shared>,
}

impl RpcLayer {
    /// A layer admitting `max_concurrency` shed-able RPCs at a time and ending unary RPCs
    /// after `request_timeout`.
    pub fn new(max_concurrency: usize, request_timeout: Duration) -> RpcLayer {
        RpcLayer {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(max_concurrency)),
                limit: max_concurrency,
                request_timeout,
                next_id: AtomicU64::new(1),
            }),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service the layer wraps around the router.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Everything recorded about one RPC; recorded when dropped, i.e. when the response body
/// ends (or the client goes away).
struct RpcRecord {
    method: &'static str,
    start: Instant,
    span: tracing::Span,
    code: Option<Code>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl RpcRecord {
    fn new(
        method: &'static str,
        span: tracing::Span,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        metrics::in_flight(1.0);
        RpcRecord {
            method,
            start: Instant::now(),
            span,
            code: None,
            _permit: permit,
        }
    }
}

impl RpcRecord {
    fn set_code(&mut self, code: Code) {
        self.code = Some(code);
    }
}

impl Drop for RpcRecord {
    fn drop(&mut self) {
        // a body dropped before its status means the client went away
        let code = self.code.unwrap_or(Code::Cancelled);
        let elapsed = self.start.elapsed();
        metrics::in_flight(-1.0);
        metrics::record_rpc(self.method, code, elapsed);
        let latency_us = elapsed.as_micros() as u64;
        let code_name = metrics::code_name(code);
        self.span.record("code", code_name);
        self.span.record("latency_us", latency_us);
        let _enter = self.span.enter();
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss => {
                tracing::error!(code = code_name, latency_us, "rpc failed")
            }
            _ => tracing::debug!(code = code_name, latency_us, "rpc finished"),
        }
    }
}

fn grpc_status_of(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((Code::from_i32(code), message))
}

fn status_response(e: ApiError) -> http::Response<Body> {
    tonic::Status::from(e).into_http()
}

fn request_id(headers: &http::HeaderMap, shared: &Shared) -> String {
    match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.to_string(),
        _ => format!("{:016x}", shared.next_id.fetch_add(1, Ordering::Relaxed)),
    }
}

impl<S> Service<http::Request<Body>> for RpcService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let info = method_info(req.uri().path());
        let rid = request_id(req.headers(), &self.shared);
        let span = tracing::info_span!(
            "rpc",
            request_id = %rid.as_str(),
            method = info.name,
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let permit = if info.shed {
            match self.shared.permits.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics::record_shed();
                    let mut record = RpcRecord::new(info.name, span, None);
                    record.set_code(Code::ResourceExhausted);
                    let limit = self.shared.limit;
                    return Box::pin(async move {
                        drop(record);
                        Ok(status_response(ApiError::Overloaded { limit }))
                    });
                }
            }
        } else {
            None
        };
        // The deadline is fixed here, before tonic's own `grpc-timeout` timer starts (it is
        // created after this call returns), so ours fires first and answers DEADLINE_EXCEEDED.
        let deadline = info.unary.then(|| {
            let client = req
                .headers()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(super::service::parse_grpc_timeout);
            let limit = client.map_or(self.shared.request_timeout, |c| {
                c.min(self.shared.request_timeout)
            });
            tokio::time::Instant::now() + limit
        });
        let mut record = RpcRecord::new(info.name, span.clone(), permit);
        // the usual tower dance: call the clone that was driven to readiness
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let fut = AssertUnwindSafe(inner.call(req)).catch_unwind();
        Box::pin(
            async move {
                let outcome = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, fut).await {
                        Ok(r) => r,
                        Err(_) => {
                            record.set_code(Code::DeadlineExceeded);
                            return Ok(status_response(ApiError::DeadlineExceeded));
                        }
                    },
                    None => fut.await,
                };
                match outcome {
                    Ok(Ok(mut response)) => {
                        if let Some((code, message)) = grpc_status_of(response.headers()) {
                            record.code = Some(normalize_transport_status(code, &message));
                        }
                        if let Ok(v) = http::HeaderValue::from_str(&rid) {
                            response.headers_mut().insert("x-request-id", v);
                        }
                        Ok(response.map(|b| {
                            Body::new(ObservedBody {
                                inner: b,
                                record: Some(record),
                            })
                        }))
                    }
                    Ok(Err(e)) => {
                        let status = tonic::Status::from_error(e.into());
                        record.set_code(status.code());
                        Ok(status.into_http())
                    }
                    Err(_panic) => {
                        record.set_code(Code::Internal);
                        Ok(status_response(ApiError::Internal(
                            "the request handler panicked".into(),
                        )))
                    }
                }
            }
            .instrument(span),
        )
    }
}

pin_project_lite::pin_project! {
    /// A response body that notes the final `grpc-status` from the trailers and records the
    /// RPC when it ends or is dropped.
    struct ObservedBody {
        #[pin]
        inner: Body,
        record: Option<RpcRecord>,
    }
}

impl HttpBody for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let (Some(record), Some((code, message))) =
                        (this.record.as_mut(), grpc_status_of(trailers))
                    {
                        record.code = Some(normalize_transport_status(code, &message));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut record) = this.record.take() {
                    record.code.get_or_insert(Code::Ok);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(record) = this.record.as_mut() {
                    record.code = Some(status.code());
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn request(path: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .body(Body::default())
            .unwrap()
    }

    fn code_of(r: &http::Response<Body>) -> Option<Code> {
        grpc_status_of(r.headers()).map(|(c, _)| c)
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal() {
        let svc = tower::service_fn(|_req: http::Request<Body>| async move {
            if true {
                panic!("boom");
            }
            Ok::<_, Infallible>(http::Response::new(Body::default()))
        });
        let mut svc = RpcLayer::new(4, Duration::from_secs(5)).layer(svc);
        let r = svc
            .call(request("/needscope.v1.NeedsClassifier/Classify"))
            .await
            .unwrap();
        assert_eq!(code_of(&r), Some(Code::Internal));
        // and the service keeps working
        let r = svc
            .call(request("/needscope.v1.NeedsClassifier/Classify"))
            .await
            .unwrap();
        assert_eq!(code_of(&r), Some(Code::Internal));
    }

    #[tokio::test]
    async fn sheds_past_the_limit_and_times_out() {
        let svc = tower::service_fn(|_req: http::Request<Body>| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, Infallible>(http::Response::new(Body::default()))
        });
        let layer = RpcLayer::new(1, Duration::from_millis(100));
        let mut a = layer.layer(svc);
        let mut b = a.clone();
        let first = a.call(request("/needscope.v1.NeedsClassifier/ClassifyBatch"));
        let second = b
            .call(request("/needscope.v1.NeedsClassifier/ClassifyBatch"))
            .await
            .unwrap();
        assert_eq!(code_of(&second), Some(Code::ResourceExhausted));
        let first = first.await.unwrap();
        assert_eq!(code_of(&first), Some(Code::DeadlineExceeded));
        // health is never shed
        let _held = a.call(request("/needscope.v1.NeedsClassifier/ClassifyStream"));
        let h = b
            .call(request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert_eq!(code_of(&h), Some(Code::DeadlineExceeded));
    }
}
