//! Prometheus metrics: recorded through the `metrics` facade, rendered by
//! `metrics-exporter-prometheus` and served on their own HTTP port (`/metrics`), apart from
//! the gRPC port.
//!
//! Metric names:
//! - `needscope_rpc_requests_total{method,code}`: finished RPCs by gRPC code
//! - `needscope_rpc_errors_total{method,code}`: the non-OK ones
//! - `needscope_rpc_duration_seconds{method}`: latency histogram (headers to final status)
//! - `needscope_rpc_in_flight`: RPCs in flight
//! - `needscope_load_shed_total`: RPCs refused at the concurrency limit
//! - `needscope_statements_classified_total{axis,label,language}`: results by label
//! - `needscope_statement_errors_total`: statements of batches and streams that failed
//! - `needscope_model_info{model_version}`: 1 for the version serving, 0 for earlier ones
//! - `needscope_model_reloads_total{result}`: reloads, `ok` or `refused`

use crate::classifier::Classification;
use crate::labels::{Axis, Lang};
use metrics::{counter, gauge, histogram, Counter};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static STATEMENT_COUNTERS: OnceLock<StatementCounters> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide recorder once. Returns its handle, or `None` if another recorder
/// was installed first (metrics then go there).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("needscope_rpc_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // histogram samples are buffered until drained: drain them even if nobody scrapes,
            // so memory stays flat
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "needscope_rpc_requests_total",
        "finished RPCs by method and gRPC code"
    );
    metrics::describe_counter!(
        "needscope_rpc_errors_total",
        "RPCs that ended with a non-OK code"
    );
    metrics::describe_histogram!(
        "needscope_rpc_duration_seconds",
        metrics::Unit::Seconds,
        "RPC latency, from request headers to the final status"
    );
    metrics::describe_gauge!("needscope_rpc_in_flight", "RPCs in flight");
    metrics::describe_counter!(
        "needscope_load_shed_total",
        "RPCs refused at the concurrency limit"
    );
    metrics::describe_counter!(
        "needscope_statements_classified_total",
        "statements classified, by axis, final label and language"
    );
    metrics::describe_counter!(
        "needscope_statement_errors_total",
        "statements of batches and streams answered with an error"
    );
    metrics::describe_gauge!("needscope_model_info", "1 for the model version serving");
    metrics::describe_counter!("needscope_model_reloads_total", "model reloads by result");
}

/// Counters per (axis, value, language), resolved once so a result costs a few atomic adds.
struct StatementCounters {
    by_axis: Vec<Vec<[Counter; 4]>>,
}

fn lang_index(l: Lang) -> usize {
    Lang::ALL.iter().position(|x| *x == l).unwrap_or(0)
}

fn statement_counters() -> &'static StatementCounters {
    STATEMENT_COUNTERS.get_or_init(|| StatementCounters {
        by_axis: Axis::ALL
            .iter()
            .map(|a| {
                a.values()
                    .iter()
                    .map(|v| {
                        Lang::ALL.map(|l| {
                            counter!(
                                "needscope_statements_classified_total",
                                "axis" => a.name(),
                                "label" => *v,
                                "language" => l.as_str()
                            )
                        })
                    })
                    .collect()
            })
            .collect(),
    })
}

/// Counts one classified statement.
pub fn record_statement(c: &Classification) {
    let counters = statement_counters();
    let l = lang_index(c.lang);
    for a in Axis::ALL {
        if let Some(per_value) = counters.by_axis[a.index()].get(c.axes[a.index()].label) {
            per_value[l].increment(1);
        }
    }
}

/// Counts statements of batches and streams answered with an error.
pub fn record_statement_errors(n: u64) {
    if n > 0 {
        counter!("needscope_statement_errors_total").increment(n);
    }
}

/// Records a finished RPC.
pub fn record_rpc(method: &'static str, code: tonic::Code, elapsed: Duration) {
    let code_name = code_name(code);
    counter!("needscope_rpc_requests_total", "method" => method, "code" => code_name).increment(1);
    if code != tonic::Code::Ok {
        counter!("needscope_rpc_errors_total", "method" => method, "code" => code_name)
            .increment(1);
    }
    histogram!("needscope_rpc_duration_seconds", "method" => method).record(elapsed.as_secs_f64());
}

/// Adjusts the in-flight gauge.
pub fn in_flight(delta: f64) {
    gauge!("needscope_rpc_in_flight").increment(delta);
}

/// Counts an RPC refused at the concurrency limit.
pub fn record_shed() {
    counter!("needscope_load_shed_total").increment(1);
}

/// Marks `version` as serving (and `previous` as not).
pub fn set_model(version: &str, previous: Option<&str>) {
    if let Some(p) = previous.filter(|p| *p != version) {
        gauge!("needscope_model_info", "model_version" => p.to_string()).set(0.0);
    }
    gauge!("needscope_model_info", "model_version" => version.to_string()).set(1.0);
}

/// Counts a reload.
pub fn record_reload(ok: bool) {
    counter!("needscope_model_reloads_total", "result" => if ok { "ok" } else { "refused" })
        .increment(1);
}

/// The gRPC code's canonical name (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
