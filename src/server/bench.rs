//! `needscope bench`: a load generator for the gRPC server, as ghz is for Go.
//!
//! Closed loop (a fixed number of requests in flight) or open loop (a fixed request rate,
//! latency measured from each request's scheduled start, so a stalled server cannot hide its
//! queueing). Unary `Classify`, `ClassifyBatch`, `ClassifyStream` or `grpc.health.v1.Health/Check`,
//! several of them one after another in one run, so their throughput can be compared under the
//! same settings. Statements are rotated from a file so no two consecutive requests are alike;
//! every `grpc-status`, and every item status of batches and streams, is checked.

use super::pb;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// What to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchRpc {
    /// `NeedsClassifier/Classify`, one statement per request.
    Classify,
    /// `NeedsClassifier/ClassifyBatch`, `--batch-size` statements per request.
    Batch,
    /// `NeedsClassifier/ClassifyStream`, one stream per worker with `--stream-window` statements
    /// in flight on each.
    Stream,
    /// `grpc.health.v1.Health/Check`: the stack's no-work ceiling.
    Health,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOutput {
    /// A table for people.
    Text,
    /// One JSON document.
    Json,
}

/// Arguments of `needscope bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Server address (host:port)
    #[arg(
        long,
        env = "NEEDSCOPE_BENCH_TARGET",
        default_value = "127.0.0.1:50051"
    )]
    pub target: String,
    /// RPCs to drive, one after another (comma-separated), e.g. classify,health
    #[arg(
        long = "rpc",
        env = "NEEDSCOPE_BENCH_RPC",
        value_enum,
        value_delimiter = ',',
        default_value = "classify"
    )]
    pub rpcs: Vec<BenchRpc>,
    /// Closed loop: requests in flight (streams: number of streams)
    #[arg(
        long,
        short = 'c',
        env = "NEEDSCOPE_BENCH_CONCURRENCY",
        default_value_t = 32
    )]
    pub concurrency: usize,
    /// Open loop: requests per second (closed loop when absent)
    #[arg(long, env = "NEEDSCOPE_BENCH_RATE")]
    pub rate: Option<f64>,
    /// Measured duration of each RPC's run, e.g. 10s
    #[arg(long, env = "NEEDSCOPE_BENCH_DURATION", default_value = "10s")]
    pub duration: String,
    /// Stop each run after this many requests instead (closed loop)
    #[arg(long, env = "NEEDSCOPE_BENCH_REQUESTS")]
    pub requests: Option<u64>,
    /// Unmeasured warm-up before each run
    #[arg(long, env = "NEEDSCOPE_BENCH_WARMUP", default_value = "1s")]
    pub warmup: String,
    /// HTTP/2 connections to spread the load over
    #[arg(long, env = "NEEDSCOPE_BENCH_CONNECTIONS", default_value_t = 2)]
    pub connections: usize,
    /// Statements per ClassifyBatch request
    #[arg(long, env = "NEEDSCOPE_BENCH_BATCH_SIZE", default_value_t = 256)]
    pub batch_size: usize,
    /// Statements in flight per ClassifyStream stream
    #[arg(long, env = "NEEDSCOPE_BENCH_STREAM_WINDOW", default_value_t = 64)]
    pub stream_window: usize,
    /// Statements to rotate through: JSONL with a "text" field, or plain text one per line
    /// [default: a built-in mixed Chinese/English set]
    #[arg(long, env = "NEEDSCOPE_BENCH_STATEMENTS", value_name = "FILE")]
    pub statements: Option<PathBuf>,
    /// Ask for explanations (token contributions)
    #[arg(long)]
    pub explain: bool,
    /// Per-request deadline sent to the server, e.g. 2s
    #[arg(long, env = "NEEDSCOPE_BENCH_TIMEOUT")]
    pub timeout: Option<String>,
    /// Open loop: most requests outstanding before new ones are counted as not sent
    #[arg(long, default_value_t = 10_000)]
    pub max_outstanding: usize,
    /// PEM CA certificate: connect with TLS, trusting this CA
    #[arg(long, env = "NEEDSCOPE_BENCH_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// TLS server name to verify [default: the target's host]
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Report format
    #[arg(long, value_enum, default_value = "text")]
    pub output: BenchOutput,
    /// Exit successfully even if some requests failed
    #[arg(long)]
    pub allow_errors: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        BenchArgs {
            target: "127.0.0.1:50051".into(),
            rpcs: vec![BenchRpc::Classify],
            concurrency: 32,
            rate: None,
            duration: "10s".into(),
            requests: None,
            warmup: "1s".into(),
            connections: 2,
            batch_size: 256,
            stream_window: 64,
            statements: None,
            explain: false,
            timeout: None,
            max_outstanding: 10_000,
            tls_ca: None,
            tls_domain: None,
            output: BenchOutput::Text,
            allow_errors: false,
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// The RPC.
    pub rpc: BenchRpc,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Closed-loop concurrency.
    pub concurrency: usize,
    /// Open-loop target rate.
    pub rate: Option<f64>,
    /// Measured seconds.
    pub seconds: f64,
    /// Requests that completed with OK (and every item OK).
    pub ok: u64,
    /// Requests (or stream items) that failed, by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: requests not sent because `max_outstanding` were outstanding.
    pub not_sent: u64,
    /// Successful requests per second.
    pub requests_per_second: f64,
    /// Statements classified per second (health: checks per second).
    pub statements_per_second: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, p99.9, max.
    pub latency_ms: BTreeMap<String, f64>,
}

impl BenchReport {
    /// All failures.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

const BUILTIN_STATEMENTS: &[&str] = &[
    "快递三天了还没到，客服也不回消息",
    "这款耳机音质不错，就是续航太短了",
    "The login page keeps timing out whenever I try to reset my password.",
    "我们是老客户了，为什么新用户的优惠比我们还多？",
    "希望你们的系统能帮我们把库存周转率提高一些",
    "店里环境很舒服，服务员也很热情，下次还来",
    "Could you send the invoice for last month's order again?",
    "产品说明书写得太简单了，安装的时候根本看不懂",
    "售后換貨流程太複雜了，跑了三趟還沒辦好",
    "Your account manager remembered our anniversary, that meant a lot to us.",
    "App 经常闪退，数据也同步不了",
    "价格还可以，但是包装破了好几个",
    "We need the new module live before the quarter ends or our launch slips.",
    "客户表示上次维修之后机器运转正常，比预期还要安静",
    "沒想到師傅提前一天就來裝好了，超出預期",
    "Delivery was on time and the setup went exactly as described.",
];

/// Reads statements from a file (JSONL with "text", or plain lines), or the built-in set.
pub fn load_statements(path: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    let Some(path) = path else {
        return Ok(BUILTIN_STATEMENTS.iter().map(|s| s.to_string()).collect());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read statements from {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: a line is not valid JSON", path.display()))?;
            if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
                if !t.trim().is_empty() {
                    out.push(t.to_string());
                }
            }
        } else {
            out.push(line.to_string());
        }
    }
    if out.len() < 2 {
        anyhow::bail!(
            "{}: need at least 2 statements to rotate through, found {}",
            path.display(),
            out.len()
        );
    }
    Ok(out)
}

/// Statements handed out in rotation, shared by all workers.
struct Rotation {
    statements: Vec<String>,
    next: AtomicUsize,
}

impl Rotation {
    fn next(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.statements[i % self.statements.len()]
    }
}

/// Per-worker tallies, merged at the end.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, code: tonic::Code) {
        *self
            .errors
            .entry(super::metrics::code_name(code).to_string())
            .or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }

    fn latency(&mut self, d: Duration) {
        self.latencies_us
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }
}

#[derive(Clone)]
struct Ctx {
    channels: Arc<Vec<Channel>>,
    rotation: Arc<Rotation>,
    batch_size: usize,
    stream_window: usize,
    explain: bool,
    timeout: Option<Duration>,
}

impl Ctx {
    fn channel(&self, worker: usize) -> Channel {
        self.channels[worker % self.channels.len()].clone()
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = self.timeout {
            r.set_timeout(t);
        }
        r
    }

    fn classify_request(&self) -> pb::ClassifyRequest {
        pb::ClassifyRequest {
            id: String::new(),
            text: self.rotation.next().to_string(),
            language: 0,
            explain: self.explain,
        }
    }

    /// One unary call; `Ok(())` only if the status and every item are OK.
    async fn call_once(&self, rpc: BenchRpc, worker: usize, tally: &mut Tally) -> bool {
        let channel = self.channel(worker);
        let result: Result<(), tonic::Code> = match rpc {
            BenchRpc::Classify => {
                let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(channel);
                match client.classify(self.request(self.classify_request())).await {
                    Ok(r) if r.get_ref().classification.is_some() => Ok(()),
                    Ok(_) => Err(tonic::Code::Unknown),
                    Err(s) => Err(s.code()),
                }
            }
            BenchRpc::Batch => {
                let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(channel)
                    .max_decoding_message_size(usize::MAX);
                let items = (0..self.batch_size)
                    .map(|i| pb::ClassifyRequest {
                        id: i.to_string(),
                        ..self.classify_request()
                    })
                    .collect();
                match client
                    .classify_batch(self.request(pb::ClassifyBatchRequest { items }))
                    .await
                {
                    Ok(r) => {
                        let results = &r.get_ref().results;
                        let bad = results.iter().find_map(|x| match &x.outcome {
                            Some(pb::classify_batch_result::Outcome::Classification(_)) => None,
                            Some(pb::classify_batch_result::Outcome::Error(s)) => {
                                Some(tonic::Code::from_i32(s.code))
                            }
                            None => Some(tonic::Code::Unknown),
                        });
                        match bad {
                            Some(code) => Err(code),
                            None if results.len() != self.batch_size => Err(tonic::Code::DataLoss),
                            None => Ok(()),
                        }
                    }
                    Err(s) => Err(s.code()),
                }
            }
            BenchRpc::Health => {
                let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
                match client
                    .check(self.request(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    }))
                    .await
                {
                    Ok(r)
                        if r.get_ref().status
                            == tonic_health::pb::health_check_response::ServingStatus::Serving
                                as i32 =>
                    {
                        Ok(())
                    }
                    Ok(_) => Err(tonic::Code::Unavailable),
                    Err(s) => Err(s.code()),
                }
            }
            BenchRpc::Stream => Err(tonic::Code::Unimplemented),
        };
        match result {
            Ok(()) => {
                tally.ok += 1;
                true
            }
            Err(code) => {
                tally.error(code);
                false
            }
        }
    }
}

/// Closed loop over unary calls until `stop` or the request budget runs out.
async fn closed_unary_worker(
    ctx: Ctx,
    rpc: BenchRpc,
    worker: usize,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        if budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_err()
        {
            break;
        }
        let started = Instant::now();
        if ctx.call_once(rpc, worker, &mut tally).await {
            tally.latency(started.elapsed());
        }
    }
    tally
}

/// One stream with up to `stream_window` statements in flight, until `stop`.
async fn stream_worker(
    ctx: Ctx,
    worker: usize,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::default();
    let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(ctx.channel(worker))
        .max_decoding_message_size(usize::MAX);
    let window = Arc::new(tokio::sync::Semaphore::new(ctx.stream_window.max(1)));
    let sent_at: Arc<std::sync::Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::channel(ctx.stream_window.max(1));
    let sender = {
        let (ctx, window, sent_at, stop) =
            (ctx.clone(), window.clone(), sent_at.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(permit) = window.clone().acquire_owned().await else {
                    break;
                };
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                permit.forget();
                let r = ctx.classify_request();
                if let Ok(mut q) = sent_at.lock() {
                    q.push_back(Instant::now());
                }
                let msg = pb::ClassifyStreamRequest {
                    id: r.id,
                    text: r.text,
                    language: r.language,
                    explain: r.explain,
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        })
    };
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    match client.classify_stream(ctx.request(outbound)).await {
        Ok(response) => {
            let mut inbound = response.into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => {
                        let started = sent_at.lock().ok().and_then(|mut q| q.pop_front());
                        window.add_permits(1);
                        match m.outcome {
                            Some(pb::classify_stream_response::Outcome::Classification(_)) => {
                                tally.ok += 1;
                                if let Some(s) = started {
                                    tally.latency(s.elapsed());
                                }
                            }
                            Some(pb::classify_stream_response::Outcome::Error(s)) => {
                                tally.error(tonic::Code::from_i32(s.code))
                            }
                            None => tally.error(tonic::Code::Unknown),
                        }
                    }
                    Ok(None) => break,
                    Err(s) => {
                        tally.error(s.code());
                        break;
                    }
                }
            }
        }
        Err(s) => tally.error(s.code()),
    }
    window.close();
    sender.abort();
    tally
}

/// Open loop: requests started on a fixed schedule, each in its own task. A dedicated
/// pacing thread (OS sleeps are precise to tens of microseconds; the async timer only to a
/// millisecond) starts them, and latency is measured from each request's scheduled start.
async fn open_loop(
    ctx: Ctx,
    rpc: BenchRpc,
    rate: f64,
    duration: Duration,
    max_outstanding: usize,
) -> anyhow::Result<(Tally, u64)> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(max_outstanding.max(1)));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Tally>();
    let collector = tokio::spawn(async move {
        let mut total = Tally::default();
        while let Some(t) = done_rx.recv().await {
            total.merge(t);
        }
        total
    });
    let runtime = tokio::runtime::Handle::current();
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let start = Instant::now();
            let mut not_sent = 0u64;
            let mut k: u64 = 0;
            loop {
                let scheduled = start + interval.mul_f64(k as f64);
                if scheduled.duration_since(start) >= duration {
                    break;
                }
                let now = Instant::now();
                if scheduled > now + Duration::from_micros(50) {
                    std::thread::sleep(scheduled - now);
                }
                k += 1;
                let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                    not_sent += 1;
                    continue;
                };
                let (ctx, done_tx) = (ctx.clone(), done_tx.clone());
                let worker = k as usize;
                runtime.spawn(async move {
                    let mut t = Tally::default();
                    if ctx.call_once(rpc, worker, &mut t).await {
                        // from the scheduled start: a late send counts against the server
                        t.latency(scheduled.elapsed());
                    }
                    drop(permit);
                    let _ = done_tx.send(t);
                });
            }
            not_sent
        })
        .context("cannot start the pacing thread")?;
    let not_sent = tokio::task::spawn_blocking(move || pacer.join())
        .await
        .context("pacing thread lost")?
        .map_err(|_| anyhow::anyhow!("pacing thread panicked"))?;
    let tally = collector.await.unwrap_or_default();
    Ok((tally, not_sent))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // nearest rank; the epsilon keeps 99.9% of 1000 at rank 999 despite rounding
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn connect(args: &BenchArgs) -> anyhow::Result<Vec<Channel>> {
    let scheme = if args.tls_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", args.target))
        .context("bad --target")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &args.tls_ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem));
        if let Some(d) = &args.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        endpoint = endpoint.tls_config(tls).context("tls")?;
    }
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("cannot connect to {}", args.target))?,
        );
    }
    Ok(channels)
}

async fn run_one(
    ctx: &Ctx,
    args: &BenchArgs,
    rpc: BenchRpc,
    duration: Duration,
) -> anyhow::Result<(Tally, u64, Duration)> {
    let started = Instant::now();
    if let Some(rate) = args.rate {
        if rpc == BenchRpc::Stream {
            anyhow::bail!("open loop (--rate) drives classify, batch and health, not stream");
        }
        let (t, not_sent) =
            open_loop(ctx.clone(), rpc, rate, duration, args.max_outstanding).await?;
        return Ok((t, not_sent, started.elapsed()));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(u64::MAX)));
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let (ctx, stop, budget) = (ctx.clone(), stop.clone(), budget.clone());
        workers.push(tokio::spawn(async move {
            match rpc {
                BenchRpc::Stream => stream_worker(ctx, w, stop, budget).await,
                _ => closed_unary_worker(ctx, rpc, w, stop, budget).await,
            }
        }));
    }
    if args.requests.is_none() {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        });
    }
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await.context("a bench worker failed")?);
    }
    Ok((total, 0, started.elapsed()))
}

/// Runs the benchmark and returns one report per RPC.
pub async fn bench(args: &BenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    }
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    let duration = super::config::parse_duration(&args.duration).map_err(anyhow::Error::msg)?;
    let warmup = super::config::parse_duration(&args.warmup).map_err(anyhow::Error::msg)?;
    let timeout = args
        .timeout
        .as_deref()
        .map(super::config::parse_duration)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let statements = load_statements(args.statements.as_deref())?;
    let channels = connect(args).await?;
    let ctx = Ctx {
        channels: Arc::new(channels),
        rotation: Arc::new(Rotation {
            statements,
            next: AtomicUsize::new(0),
        }),
        batch_size: args.batch_size,
        stream_window: args.stream_window,
        explain: args.explain,
        timeout,
    };
    let mut reports = Vec::new();
    for &rpc in &args.rpcs {
        if !warmup.is_zero() {
            let warm = BenchArgs {
                requests: None,
                ..args.clone()
            };
            run_one(&ctx, &warm, rpc, warmup).await?;
        }
        let (mut tally, not_sent, elapsed) = run_one(&ctx, args, rpc, duration).await?;
        tally.latencies_us.sort_unstable();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_request = match rpc {
            BenchRpc::Batch => args.batch_size as f64,
            _ => 1.0,
        };
        let l = &tally.latencies_us;
        let latency_ms = [
            ("p50", percentile(l, 50.0)),
            ("p90", percentile(l, 90.0)),
            ("p99", percentile(l, 99.0)),
            ("p99.9", percentile(l, 99.9)),
            ("max", l.last().map_or(0.0, |m| *m as f64 / 1000.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        reports.push(BenchReport {
            rpc,
            mode: if args.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            concurrency: args.concurrency,
            rate: args.rate,
            seconds: secs,
            ok: tally.ok,
            errors: tally.errors,
            not_sent,
            requests_per_second: tally.ok as f64 / secs,
            statements_per_second: tally.ok as f64 * per_request / secs,
            latency_ms,
        });
    }
    Ok(reports)
}

fn print_text(args: &BenchArgs, reports: &[BenchReport]) {
    for r in reports {
        let load = match r.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => format!("closed loop, {} in flight", r.concurrency),
        };
        println!(
            "{:?} against {} ({load}, {} connections, {:.1}s)",
            r.rpc, args.target, args.connections, r.seconds
        );
        println!(
            "  requests     {} ok, {} failed{}",
            r.ok,
            r.error_count(),
            if r.not_sent > 0 {
                format!(", {} not sent (client at --max-outstanding)", r.not_sent)
            } else {
                String::new()
            }
        );
        println!("  throughput   {:.0} req/s", r.requests_per_second);
        if r.rpc == BenchRpc::Batch {
            println!("               {:.0} statements/s", r.statements_per_second);
        }
        let l = &r.latency_ms;
        let g = |k: &str| l.get(k).copied().unwrap_or_default();
        println!(
            "  latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            g("p50"),
            g("p90"),
            g("p99"),
            g("p99.9"),
            g("max")
        );
        for (code, n) in &r.errors {
            println!("  error        {code}: {n}");
        }
    }
    if let (Some(c), Some(h)) = (
        reports.iter().find(|r| r.rpc == BenchRpc::Classify),
        reports.iter().find(|r| r.rpc == BenchRpc::Health),
    ) {
        if h.requests_per_second > 0.0 {
            println!(
                "Classify / Health.Check throughput: {:.2}",
                c.requests_per_second / h.requests_per_second
            );
        }
    }
}

/// `needscope bench`: runs the load and prints the report; fails if any request failed
/// (unless `--allow-errors`).
pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("needscope-bench")
        .build()
        .context("cannot start the async runtime")?;
    let reports = runtime.block_on(bench(&args))?;
    match args.output {
        BenchOutput::Text => print_text(&args, &reports),
        BenchOutput::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
    }
    let failed: u64 = reports.iter().map(BenchReport::error_count).sum();
    if failed > 0 && !args.allow_errors {
        anyhow::bail!("{failed} requests failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<u32> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 50.0), 500.0);
        assert_eq!(percentile(&v, 99.9), 999.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn rotation_never_repeats_back_to_back() {
        let r = Rotation {
            statements: load_statements(None).unwrap(),
            next: AtomicUsize::new(0),
        };
        let mut prev = r.next().to_string();
        for _ in 0..100 {
            let s = r.next().to_string();
            assert_ne!(s, prev);
            prev = s;
        }
    }
}
