//! The `NeedsClassifier` service: validate, convert, call the core, convert back.
//!
//! CPU work stays off the async runtime except for single short statements (a few
//! microseconds): batches, stream chunks, long texts and explanations run on the rayon pool,
//! one job per request at a time, so the work queued there is bounded by the server's
//! concurrency limit.

use super::convert;
use super::metrics;
use super::pb::{self, needs_classifier_server::NeedsClassifier};
use super::state::{Served, ServerState};
use super::status::ApiError;
use super::validate::{self, Limits};
use crate::classifier::Classification;
use crate::error::Error;
use futures::{FutureExt, StreamExt};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Statements up to this many bytes, without `explain`, are classified on the async worker
/// (a few microseconds); anything bigger goes to the CPU pool.
const INLINE_MAX_BYTES: usize = 1024;
/// Most statements read from a stream before they are classified together.
const STREAM_CHUNK: usize = 64;
/// Responses a stream may have queued for a slow reader before the server stops reading
/// its requests.
const STREAM_WINDOW: usize = 128;

/// One statement of any request kind.
#[derive(Debug)]
struct Item {
    id: String,
    text: String,
    language: i32,
    explain: bool,
}

impl From<pb::ClassifyRequest> for Item {
    fn from(r: pb::ClassifyRequest) -> Item {
        Item {
            id: r.id,
            text: r.text,
            language: r.language,
            explain: r.explain,
        }
    }
}

impl From<pb::ClassifyStreamRequest> for Item {
    fn from(r: pb::ClassifyStreamRequest) -> Item {
        Item {
            id: r.id,
            text: r.text,
            language: r.language,
            explain: r.explain,
        }
    }
}

impl Item {
    fn is_cheap(&self) -> bool {
        self.text.len() <= INLINE_MAX_BYTES && !self.explain
    }
}

/// Sets a flag when dropped: the handler's future is dropped when the client goes away or the
/// deadline passes, and pool work checks the flag between statements.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` on the CPU pool; a panic becomes INTERNAL.
async fn on_cpu_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ApiError::Internal("the classifier panicked".into())),
        Err(_) => Err(ApiError::Internal(
            "a classification worker was lost".into(),
        )),
    }
}

/// Where a statement sits in its request, for the field paths of its errors.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// The request's own `text` (Classify, stream items).
    Top,
    /// `items[i]` of a batch.
    BatchItem(usize),
}

impl Position {
    fn field(self, name: &str) -> String {
        match self {
            Position::Top => name.to_string(),
            Position::BatchItem(i) => format!("items[{i}].{name}"),
        }
    }
}

/// Validates and classifies one statement.
fn classify_item(
    served: &Served,
    limits: &Limits,
    log_statements: bool,
    position: Position,
    item: &Item,
) -> Result<Classification, ApiError> {
    let valid = validate::item(limits, &item.id, &item.text, item.language, item.explain).map_err(
        |violations| {
            // field paths are built only for failures
            ApiError::BadRequest(
                violations
                    .into_iter()
                    .map(|mut v| {
                        v.field = position.field(&v.field);
                        v
                    })
                    .collect(),
            )
        },
    )?;
    if log_statements {
        tracing::debug!(id = %item.id, text = %item.text, "statement");
    }
    let opts = served.options(valid.language_hint, valid.explain);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        served.classifier.classify(&item.text, &opts)
    }))
    .map_err(|_| ApiError::Internal("the classifier panicked on this statement".into()))?;
    match result {
        Ok(c) => {
            metrics::record_statement(&c);
            Ok(c)
        }
        Err(Error::InvalidInput(why)) => Err(ApiError::field(position.field("text"), why)),
        Err(e) => Err(e.into()),
    }
}

/// Classifies many statements, in order. On the CPU pool (`parallel`) they are spread over
/// its threads; elsewhere they run one after another on the calling thread (a parallel
/// iterator called from outside the pool would block the caller while the pool works).
fn classify_many(
    served: &Served,
    limits: &Limits,
    log_statements: bool,
    items: &[Item],
    position: impl Fn(usize) -> Position + Sync,
    cancelled: &AtomicBool,
    parallel: bool,
) -> Vec<Result<pb::Classification, ApiError>> {
    use rayon::prelude::*;
    let one = |(i, item): (usize, &Item)| {
        if cancelled.load(Ordering::Relaxed) {
            return Err(ApiError::DeadlineExceeded);
        }
        classify_item(served, limits, log_statements, position(i), item)
            .map(|c| convert::classification(&c))
    };
    if parallel {
        items
            .par_iter()
            .enumerate()
            .with_min_len(4)
            .map(one)
            .collect()
    } else {
        items.iter().enumerate().map(one).collect()
    }
}

/// Whether a few statements are cheap enough to classify on the async worker.
fn cheap_enough(items: &[Item]) -> bool {
    items.len() <= 2 && items.iter().all(Item::is_cheap)
}

/// The service.
#[derive(Debug, Clone)]
pub struct ClassifierService {
    state: Arc<ServerState>,
}

impl ClassifierService {
    /// A service over shared state.
    pub fn new(state: Arc<ServerState>) -> ClassifierService {
        ClassifierService { state }
    }

    async fn classify_unary(&self, item: Item) -> Result<pb::ClassifyResponse, ApiError> {
        let served = self.state.model()?;
        let limits = self.state.limits;
        let log = self.state.config.log_statements;
        let c = if item.is_cheap() {
            classify_item(&served, &limits, log, Position::Top, &item)?
        } else {
            let cancelled = Arc::new(AtomicBool::new(false));
            let _guard = CancelOnDrop(cancelled.clone());
            on_cpu_pool(move || classify_item(&served, &limits, log, Position::Top, &item))
                .await??
        };
        Ok(pb::ClassifyResponse {
            id: String::new(),
            classification: Some(convert::classification(&c)),
        })
    }

    async fn classify_batch_inner(
        &self,
        req: pb::ClassifyBatchRequest,
    ) -> Result<pb::ClassifyBatchResponse, ApiError> {
        let limits = self.state.limits;
        validate::batch_len(&limits, req.items.len()).map_err(|v| ApiError::BadRequest(vec![v]))?;
        let served = self.state.model()?;
        let log = self.state.config.log_statements;
        let items: Vec<Item> = req.items.into_iter().map(Item::from).collect();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let (items, outcomes) = if cheap_enough(&items) {
            let outcomes = classify_many(
                &served,
                &limits,
                log,
                &items,
                batch_position,
                &cancelled,
                false,
            );
            (items, outcomes)
        } else {
            on_cpu_pool(move || {
                let outcomes = classify_many(
                    &served,
                    &limits,
                    log,
                    &items,
                    batch_position,
                    &cancelled,
                    true,
                );
                (items, outcomes)
            })
            .await?
        };
        let mut errors = 0;
        let results = items
            .into_iter()
            .zip(outcomes)
            .map(|(item, outcome)| pb::ClassifyBatchResult {
                id: item.id,
                outcome: Some(match outcome {
                    Ok(c) => pb::classify_batch_result::Outcome::Classification(c),
                    Err(e) => {
                        errors += 1;
                        pb::classify_batch_result::Outcome::Error(e.to_rpc_status())
                    }
                }),
            })
            .collect();
        metrics::record_statement_errors(errors);
        Ok(pb::ClassifyBatchResponse { results })
    }
}

fn batch_position(i: usize) -> Position {
    Position::BatchItem(i)
}

type StreamItem = Result<pb::ClassifyStreamResponse, Status>;

/// Reads a stream in chunks of what has arrived, classifies each chunk, and sends the
/// responses in order. Returns when the client half-closes, the client goes away, or the
/// request stream fails (that error is sent as the final status).
async fn run_stream(
    state: Arc<ServerState>,
    inbound: Streaming<pb::ClassifyStreamRequest>,
    tx: mpsc::Sender<StreamItem>,
) {
    let mut chunks = inbound.ready_chunks(STREAM_CHUNK);
    let mut sequence: u64 = 0;
    let limits = state.limits;
    let log = state.config.log_statements;
    while let Some(chunk) = chunks.next().await {
        let mut items = Vec::with_capacity(chunk.len());
        let mut failure = None;
        for r in chunk {
            match r {
                Ok(r) => items.push(Item::from(r)),
                Err(status) => {
                    failure = Some(status);
                    break;
                }
            }
        }
        let served = match state.model() {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let first = sequence;
        let outcomes = if cheap_enough(&items) {
            let never = AtomicBool::new(false);
            Ok((
                classify_many(
                    &served,
                    &limits,
                    log,
                    &items,
                    |_| Position::Top,
                    &never,
                    false,
                ),
                items,
            ))
        } else {
            let cancelled = Arc::new(AtomicBool::new(false));
            let guard = CancelOnDrop(cancelled.clone());
            let r = on_cpu_pool(move || {
                (
                    classify_many(
                        &served,
                        &limits,
                        log,
                        &items,
                        |_| Position::Top,
                        &cancelled,
                        true,
                    ),
                    items,
                )
            })
            .await;
            drop(guard);
            r
        };
        let (outcomes, items) = match outcomes {
            Ok(v) => v,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let mut errors = 0;
        for (i, (item, outcome)) in items.into_iter().zip(outcomes).enumerate() {
            let outcome = match outcome {
                Ok(c) => pb::classify_stream_response::Outcome::Classification(c),
                Err(e) => {
                    errors += 1;
                    pb::classify_stream_response::Outcome::Error(e.to_rpc_status())
                }
            };
            let response = pb::ClassifyStreamResponse {
                id: item.id,
                sequence: first + i as u64,
                outcome: Some(outcome),
            };
            sequence += 1;
            if tx.send(Ok(response)).await.is_err() {
                // the client went away
                return;
            }
        }
        metrics::record_statement_errors(errors);
        if let Some(status) = failure {
            let _ = tx.send(Err(status)).await;
            return;
        }
    }
}

/// The client's deadline from the `grpc-timeout` header, if any.
pub fn client_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// Parses a `grpc-timeout` header value (`250m`, `3S`, ...).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl NeedsClassifier for ClassifierService {
    async fn classify(
        &self,
        request: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let item = Item::from(request.into_inner());
        let id = item.id.clone();
        let mut response = self.classify_unary(item).await?;
        response.id = id;
        Ok(Response::new(response))
    }

    async fn classify_batch(
        &self,
        request: Request<pb::ClassifyBatchRequest>,
    ) -> Result<Response<pb::ClassifyBatchResponse>, Status> {
        Ok(Response::new(
            self.classify_batch_inner(request.into_inner()).await?,
        ))
    }

    type ClassifyStreamStream = ReceiverStream<StreamItem>;

    async fn classify_stream(
        &self,
        request: Request<Streaming<pb::ClassifyStreamRequest>>,
    ) -> Result<Response<Self::ClassifyStreamStream>, Status> {
        self.state.model()?;
        let deadline = client_deadline(request.metadata());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_WINDOW);
        let state = self.state.clone();
        let span = tracing::Span::current();
        let task = async move {
            let work = AssertUnwindSafe(run_stream(state, inbound, tx.clone())).catch_unwind();
            let outcome = match deadline {
                Some(d) => tokio::time::timeout(d, work).await.ok(),
                None => Some(work.await),
            };
            match outcome {
                Some(Ok(())) => {}
                Some(Err(_panic)) => {
                    tracing::error!("stream worker panicked");
                    let _ = tx
                        .send(Err(
                            ApiError::Internal("the stream worker panicked".into()).into()
                        ))
                        .await;
                }
                None => {
                    let _ = tx.send(Err(ApiError::DeadlineExceeded.into())).await;
                }
            }
        };
        // the stream's logs belong to its RPC's span
        tokio::spawn(tracing::Instrument::instrument(task, span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_model_info(
        &self,
        _request: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        Ok(Response::new(self.state.model_info()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_parses() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(client_deadline(&m), None);
        m.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(client_deadline(&m), Some(Duration::from_millis(250)));
        m.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(client_deadline(&m), Some(Duration::from_secs(3)));
        m.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(client_deadline(&m), None);
    }
}
