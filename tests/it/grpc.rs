//! The gRPC service end to end: a real server on 127.0.0.1:0, the generated tonic clients,
//! grpcurl through reflection, and the Python example client.

use super::common::*;
use needscope::server::pb;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::{RpcStatusExt, StatusExt};

fn req(id: &str, text: &str) -> pb::ClassifyRequest {
    pb::ClassifyRequest {
        id: id.to_string(),
        text: text.to_string(),
        language: 0,
        explain: false,
    }
}

fn stream_req(id: &str, text: &str) -> pb::ClassifyStreamRequest {
    pb::ClassifyStreamRequest {
        id: id.to_string(),
        text: text.to_string(),
        language: 0,
        explain: false,
    }
}

const STATEMENTS: &[&str] = &[
    "价格太贵了，快递也慢",
    "I want a refund, the blender arrived broken",
    "服务态度很好，下次还来",
    "We trust your team with our growth goals this year",
    "東西壞了，客服也不回",
    "App 老是闪退，price 也涨了",
];

/// Checks one axis: a probability per value summing to 1, and the label is the most probable
/// value unless a rule decided it.
fn assert_axis(d: &pb::AxisDetail, n: usize, label: i32) {
    assert_eq!(d.model_probabilities.len(), n, "{:?}", d.axis);
    assert_eq!(d.final_probabilities.len(), n, "{:?}", d.axis);
    for p in [&d.model_probabilities, &d.final_probabilities] {
        // single precision on the wire: each value rounded to about 6e-8
        let sum: f64 = p.iter().map(|&x| f64::from(x)).sum();
        assert!((sum - 1.0).abs() < 1e-6, "probabilities sum to {sum}");
    }
    if d.decided_by_rule.is_empty() {
        let best = d
            .final_probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as i32 + 1);
        assert_eq!(best, Some(label), "{:?}", d.axis);
    }
}

#[tokio::test]
async fn classify_returns_labels_probabilities_rules_and_explanation() {
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    let text = "I want a refund, the blender arrived broken";
    let mut request = tonic::Request::new(pb::ClassifyRequest {
        explain: true,
        ..req("crm-42", text)
    });
    request
        .metadata_mut()
        .insert("x-request-id", "trace-7".parse().unwrap());
    let response = client.classify(request).await.expect("classify");
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "trace-7",
        "the request id is echoed"
    );
    let r = response.into_inner();
    assert_eq!(r.id, "crm-42");
    let c = r.classification.expect("classification");
    assert_eq!(c.model_version, "v1");
    assert_eq!(c.language, pb::Language::En as i32);
    assert!(pb::NeedLevel::try_from(c.need_level).is_ok_and(|n| n != pb::NeedLevel::Unspecified));
    assert!(c.explicitness > 0 && c.tier > 0 && c.gap > 0);
    assert_axis(c.need_level_detail.as_ref().unwrap(), 5, c.need_level);
    assert_axis(c.explicitness_detail.as_ref().unwrap(), 2, c.explicitness);
    assert_axis(c.tier_detail.as_ref().unwrap(), 2, c.tier);
    assert_axis(c.gap_detail.as_ref().unwrap(), 4, c.gap);
    assert!(!c.contributions.is_empty(), "explain gives contributions");
    // every span is within the text, in code points
    let len = text.chars().count() as u32;
    for s in c
        .rule_hits
        .iter()
        .flat_map(|h| &h.spans)
        .chain(c.contributions.iter().flat_map(|t| &t.spans))
    {
        assert!(s.start < s.end && s.end <= len, "{s:?}");
    }
    if default_bundle().is_none() {
        // the tiny bundle's override rule decides the gap from "broken"
        assert_eq!(c.gap, pb::ExpectationGap::Below as i32);
        assert_eq!(c.gap_detail.unwrap().decided_by_rule, "gap.broken-is-below");
        let hit = c
            .rule_hits
            .iter()
            .find(|h| h.rule_id == "gap.broken-is-below")
            .expect("rule hit");
        let s = &hit.spans[0];
        let matched: String = text
            .chars()
            .skip(s.start as usize)
            .take((s.end - s.start) as usize)
            .collect();
        assert_eq!(matched, "broken");
    }
    // a language hint is reported back
    let hinted = client
        .classify(pb::ClassifyRequest {
            language: pb::Language::ZhHant as i32,
            ..req("h", "價格太貴")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hinted.classification.unwrap().language,
        pb::Language::ZhHant as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_input_is_invalid_argument_with_field_violations() {
    let server = TestServer::start(|c, _| c.max_text_bytes = 64).await;
    let mut client = server.classifier().await;
    let cases = [
        (req("a", ""), "text", "empty"),
        (req("b", " \t\n "), "text", "empty"),
        (req("c", &"好".repeat(30)), "text", "limit is 64 bytes"),
        (
            pb::ClassifyRequest {
                language: 42,
                ..req("d", "ok then")
            },
            "language",
            "not a Language",
        ),
        (req(&"x".repeat(300), "价格"), "id", "limit is 256 bytes"),
    ];
    for (request, field, says) in cases {
        let s = client.classify(request).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(field), "{}", s.message());
        assert!(s.message().contains(says), "{}", s.message());
        let br = s.get_details_bad_request().expect("BadRequest details");
        assert_eq!(br.field_violations[0].field, field);
        assert!(br.field_violations[0].description.contains(says));
    }
    server.stop().await;
}

#[tokio::test]
async fn batch_keeps_order_and_isolates_bad_items() {
    let server = TestServer::start(|c, _| c.max_batch_size = 8).await;
    let mut client = server.classifier().await;
    let items = vec![
        req("0", STATEMENTS[0]),
        req("1", "   "),
        req("2", STATEMENTS[1]),
        req("3", STATEMENTS[2]),
    ];
    let r = client
        .classify_batch(pb::ClassifyBatchRequest { items })
        .await
        .expect("batch")
        .into_inner();
    let ids: Vec<&str> = r.results.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["0", "1", "2", "3"]);
    for (i, result) in r.results.iter().enumerate() {
        match (i, result.outcome.as_ref().expect("outcome")) {
            (1, pb::classify_batch_result::Outcome::Error(s)) => {
                assert_eq!(s.code, Code::InvalidArgument as i32);
                let br = s.get_details_bad_request().expect("details");
                assert_eq!(br.field_violations[0].field, "items[1].text");
            }
            (1, other) => panic!("item 1 should fail: {other:?}"),
            (_, pb::classify_batch_result::Outcome::Classification(c)) => {
                assert_eq!(c.model_version, "v1")
            }
            (_, other) => panic!("item {i} failed: {other:?}"),
        }
    }
    // each result equals the unary result for the same statement
    let unary = client
        .classify(req("x", STATEMENTS[1]))
        .await
        .unwrap()
        .into_inner()
        .classification;
    match &r.results[2].outcome {
        Some(pb::classify_batch_result::Outcome::Classification(c)) => {
            assert_eq!(Some(c), unary.as_ref())
        }
        other => panic!("{other:?}"),
    }
    // too many items fail the call
    let too_many = (0..9).map(|i| req(&i.to_string(), "价格")).collect();
    let s = client
        .classify_batch(pb::ClassifyBatchRequest { items: too_many })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("items") && s.message().contains("limit is 8"));
    let br = s.get_details_bad_request().unwrap();
    assert_eq!(br.field_violations[0].field, "items");
    server.stop().await;
}

#[tokio::test]
async fn a_full_batch_of_maximal_statements_fits_the_message_limits() {
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    // 256 x 16 KiB is over tonic's 4 MiB default
    let long: String = STATEMENTS.concat().repeat(200);
    let long = truncate(&long, 16 * 1024);
    assert!(long.len() > 16 * 1024 - 4);
    let items: Vec<_> = (0..256).map(|i| req(&i.to_string(), long)).collect();
    let started = Instant::now();
    let r = client
        .classify_batch(pb::ClassifyBatchRequest { items })
        .await
        .expect("a 4 MiB batch is accepted")
        .into_inner();
    assert_eq!(r.results.len(), 256);
    assert!(r.results.iter().all(|x| matches!(
        x.outcome,
        Some(pb::classify_batch_result::Outcome::Classification(_))
    )));
    eprintln!("256 x 16 KiB batch took {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn stream_answers_in_order_and_survives_bad_items() {
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    let n = 500usize;
    let requests: Vec<_> = (0..n)
        .map(|i| {
            if i % 97 == 13 {
                stream_req(&format!("s{i}"), "")
            } else {
                stream_req(&format!("s{i}"), STATEMENTS[i % STATEMENTS.len()])
            }
        })
        .collect();
    let response = client
        .classify_stream(tokio_stream::iter(requests))
        .await
        .expect("stream opens");
    let mut inbound = response.into_inner();
    let mut seen = 0usize;
    while let Some(m) = inbound.message().await.expect("stream goes on") {
        assert_eq!(m.id, format!("s{seen}"));
        assert_eq!(m.sequence, seen as u64);
        match m.outcome.expect("outcome") {
            pb::classify_stream_response::Outcome::Error(s) => {
                assert_eq!(seen % 97, 13, "only the empty items fail");
                assert_eq!(s.code, Code::InvalidArgument as i32);
                assert_eq!(
                    s.get_details_bad_request().unwrap().field_violations[0].field,
                    "text"
                );
            }
            pb::classify_stream_response::Outcome::Classification(c) => {
                assert_ne!(seen % 97, 13);
                assert_eq!(c.model_version, "v1");
            }
        }
        seen += 1;
    }
    assert_eq!(seen, n);
    server.stop().await;
}

#[tokio::test]
async fn stream_applies_backpressure_to_a_client_that_does_not_read() {
    let server = TestServer::start(|_, _| {}).await;
    // small HTTP/2 windows on the client, so unread responses fill them quickly
    let channel = tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(64 * 1024)
        .connect()
        .await
        .unwrap();
    let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(channel);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let text = "x".repeat(8 * 1024) + STATEMENTS[0];
    let outbound = async_stream(move |i| {
        counter.fetch_add(1, Ordering::Relaxed);
        stream_req(&i.to_string(), &text)
    });
    let response = client
        .classify_stream(outbound)
        .await
        .expect("stream opens");
    // do not read: the server must stop pulling requests once its window and the HTTP/2
    // flow-control windows are full, instead of buffering without bound
    let mut last = u64::MAX;
    let mut stable = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            stable = true;
            break;
        }
        last = now;
    }
    assert!(
        stable,
        "client kept sending while not reading: {last} so far"
    );
    // what may be in flight: the client's and server's HTTP/2 windows, the chunk being
    // classified and the server's response window; nothing like an unbounded queue
    assert!(last < 2_000, "{last} requests of 8 KiB buffered");
    eprintln!("client blocked after {last} unread requests");
    drop(response);
    server.stop().await;
}

/// An endless request stream produced by `f`.
fn async_stream<T: Send + 'static>(
    f: impl Fn(u64) -> T + Send + 'static,
) -> impl tokio_stream::Stream<Item = T> {
    futures::stream::iter(0u64..).map(f)
}

use futures::StreamExt as _;

#[tokio::test]
async fn model_info_describes_the_bundle() {
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    let info = client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.model_version, "v1");
    assert!(!info.created_at.is_empty());
    assert!(info.feature_count >= 1);
    assert!(info.bundle_path.ends_with("bundles/v1"));
    assert!(!info.dev_metrics.is_empty());
    let sets: Vec<(String, usize)> = info
        .label_sets
        .iter()
        .map(|s| (s.name.clone(), s.values.len()))
        .collect();
    assert_eq!(
        sets,
        [
            ("need".to_string(), 5),
            ("explicitness".to_string(), 2),
            ("tier".to_string(), 2),
            ("gap".to_string(), 4)
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn health_is_not_serving_until_loaded_and_while_draining() {
    let (release, gate) = tokio::sync::oneshot::channel();
    let server = TestServer::start_gated(gate).await;
    let mut health = server.health().await;
    let mut client = server.classifier().await;
    for service in ["", "needscope.v1.NeedsClassifier"] {
        assert_eq!(health_status(&mut health, service).await, NOT_SERVING);
    }
    let s = client.classify(req("a", "价格")).await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable);
    assert!(s.message().contains("no model"));
    release.send(()).unwrap();
    server.handle.wait_ready().await.unwrap();
    for service in ["", "needscope.v1.NeedsClassifier"] {
        assert_eq!(health_status(&mut health, service).await, SERVING);
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_goes_not_serving_drains_in_flight_streams_and_exits_cleanly() {
    let server = TestServer::start(|c, _| c.drain_delay = Duration::from_millis(800)).await;
    let mut health = server.health().await;
    let mut client = server.classifier().await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let response = client
        .classify_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens");
    let mut inbound = response.into_inner();
    tx.send(stream_req("before", STATEMENTS[0])).await.unwrap();
    assert_eq!(inbound.message().await.unwrap().unwrap().id, "before");

    let addr = server.addr();
    server.handle.shutdown();
    // during the drain delay: NOT_SERVING, still answering
    tokio::time::sleep(Duration::from_millis(200)).await;
    for service in ["", "needscope.v1.NeedsClassifier"] {
        assert_eq!(health_status(&mut health, service).await, NOT_SERVING);
    }
    // after it: no new connections, but the open stream is finished
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed while draining"
    );
    tx.send(stream_req("during", STATEMENTS[1])).await.unwrap();
    assert_eq!(inbound.message().await.unwrap().unwrap().id, "during");
    drop(tx);
    assert!(inbound.message().await.unwrap().is_none(), "stream ends OK");
    tokio::time::timeout(Duration::from_secs(10), server.handle.wait())
        .await
        .expect("server exits after draining")
        .expect("clean exit");
}

#[tokio::test]
async fn overload_is_shed_with_resource_exhausted() {
    let server = TestServer::start(|c, _| c.max_concurrency = 1).await;
    let mut client = server.classifier().await;
    // an open stream holds the only slot
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let response = client
        .classify_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens");
    let s = client.classify(req("a", "价格")).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert!(s.message().contains("limit of 1"), "{}", s.message());
    assert!(s.get_details_retry_info().is_some());
    // health and model info are never shed
    let mut health = server.health().await;
    assert_eq!(health_status(&mut health, "").await, SERVING);
    client
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap();
    drop(tx);
    drop(response);
    // the slot frees once the stream ends
    let mut ok = false;
    for _ in 0..50 {
        if client.classify(req("b", "价格")).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "slot released after the stream ended");
    server.stop().await;
}

/// The longest prefix of `s` of at most `max` bytes.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn slow_batch(n: usize) -> pb::ClassifyBatchRequest {
    let long: String = STATEMENTS.concat().repeat(200);
    pb::ClassifyBatchRequest {
        items: (0..n)
            .map(|i| pb::ClassifyRequest {
                explain: true,
                ..req(&i.to_string(), truncate(&long, 16 * 1024))
            })
            .collect(),
    }
}

#[tokio::test]
async fn deadlines_answer_deadline_exceeded() {
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    // the client's deadline: tonic's own client gives up at the same moment (answering
    // CANCELLED itself), so send the `grpc-timeout` header through a plain HTTP/2 client and
    // look at what the server answers
    let http2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<tonic::body::Body>();
    let mut raw = pb::needs_classifier_client::NeedsClassifierClient::with_origin(
        http2,
        server.url().parse().unwrap(),
    );
    let mut r = tonic::Request::new(slow_batch(256));
    r.set_timeout(Duration::from_millis(20));
    let s = raw.classify_batch(r).await.unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(s.message().contains("deadline"), "{}", s.message());
    // a unary call within its deadline is unaffected
    let mut r = tonic::Request::new(req("ok", STATEMENTS[0]));
    r.set_timeout(Duration::from_secs(5));
    client.classify(r).await.expect("within the deadline");
    server.stop().await;

    // the server's request timeout
    let server = TestServer::start(|c, _| c.request_timeout = Duration::from_millis(2)).await;
    let mut client = server.classifier().await;
    let s = client.classify_batch(slow_batch(256)).await.unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    // a stream past the client's deadline ends with DEADLINE_EXCEEDED
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut r = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    r.set_timeout(Duration::from_millis(300));
    let mut inbound = client.classify_stream(r).await.unwrap().into_inner();
    let s = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(s) => break s,
        }
    };
    assert_eq!(s.code(), Code::DeadlineExceeded);
    drop(tx);
    server.stop().await;
}

#[tokio::test]
async fn reload_under_load_swaps_models_without_failures() {
    let server = TestServer::start(|c, dir| c.bundle_root = Some(dir.join("bundles"))).await;
    let bundles = server.dir.path().join("bundles");
    write_test_bundle(&bundles.join("v2"), "v2");
    write_test_bundle(&bundles.join("broken"), "broken");
    corrupt_bundle(&bundles.join("broken"));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let versions = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut workers = Vec::new();
    for w in 0..8usize {
        let mut client = server.classifier().await;
        let (stop, failures, done, versions) = (
            stop.clone(),
            failures.clone(),
            done.clone(),
            versions.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let text = STATEMENTS[i % STATEMENTS.len()];
                let ok = if i % 5 == 0 {
                    let items = (0..16).map(|k| req(&k.to_string(), text)).collect();
                    match client
                        .classify_batch(pb::ClassifyBatchRequest { items })
                        .await
                    {
                        Ok(r) => r.into_inner().results.iter().all(|x| {
                            matches!(
                                x.outcome,
                                Some(pb::classify_batch_result::Outcome::Classification(_))
                            )
                        }),
                        Err(_) => false,
                    }
                } else {
                    match client.classify(req("w", text)).await {
                        Ok(r) => {
                            let v = r.into_inner().classification.unwrap().model_version;
                            versions.lock().unwrap().insert(v);
                            true
                        }
                        Err(_) => false,
                    }
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = server.admin().await;
    // a good bundle: swapped in
    let r = admin
        .reload_model(pb::ReloadModelRequest {
            bundle_path: "v2".to_string(),
        })
        .await
        .expect("reload v2")
        .into_inner();
    assert_eq!(
        (r.previous_model_version.as_str(), r.model_version.as_str()),
        ("v1", "v2")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // a corrupt bundle: refused, v2 keeps serving
    let s = admin
        .reload_model(pb::ReloadModelRequest {
            bundle_path: bundles.join("broken").display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(s.message().contains("corrupt"), "{}", s.message());
    // outside the bundle root: refused
    let s = admin
        .reload_model(pb::ReloadModelRequest {
            bundle_path: "../..".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    assert!(done.load(Ordering::Relaxed) > 50);
    let seen = versions.lock().unwrap().clone();
    assert!(seen.contains("v1") && seen.contains("v2"), "{seen:?}");
    let mut client = server.classifier().await;
    let v = client
        .classify(req("after", "价格"))
        .await
        .unwrap()
        .into_inner()
        .classification
        .unwrap()
        .model_version;
    assert_eq!(v, "v2", "the corrupt bundle did not replace v2");
    // an empty path reloads the configured bundle
    let r = admin
        .reload_model(pb::ReloadModelRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, "v1");
    server.stop().await;
}

#[tokio::test]
async fn admin_requires_its_token_and_can_be_disabled() {
    let server = TestServer::start(|c, _| c.admin_token = Some("s3cret-token".into())).await;
    let mut admin = server.admin().await;
    let s = admin
        .reload_model(pb::ReloadModelRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(pb::ReloadModelRequest::default());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        admin.reload_model(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut right = tonic::Request::new(pb::ReloadModelRequest::default());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    assert_eq!(
        admin
            .reload_model(right)
            .await
            .unwrap()
            .into_inner()
            .model_version,
        "v1"
    );
    // without a bundle root only the configured bundle may be loaded
    let mut other = tonic::Request::new(pb::ReloadModelRequest {
        bundle_path: "/tmp".into(),
    });
    other
        .metadata_mut()
        .insert("authorization", "Bearer s3cret-token".parse().unwrap());
    assert_eq!(
        admin.reload_model(other).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    server.stop().await;

    let server = TestServer::start(|c, _| c.admin_enabled = false).await;
    let mut admin = server.admin().await;
    let s = admin
        .reload_model(pb::ReloadModelRequest::default())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    server.stop().await;
}

#[tokio::test]
async fn tls_with_rustls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start(|c, _| {
        c.tls = Some(needscope::server::config::TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        })
    })
    .await;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
        .domain_name("localhost");
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.addr()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connection");
    let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(channel);
    let r = client
        .classify(req("t", STATEMENTS[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.id, "t");
    // plaintext clients are refused
    let plain = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let mut c = pb::needs_classifier_client::NeedsClassifierClient::new(ch);
        assert!(c.classify(req("p", "价格")).await.is_err());
    }
    server.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn metrics_are_served_on_their_own_port() {
    let server =
        TestServer::start(|c, _| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_addr = server.handle.metrics_addr().expect("metrics address");
    assert_ne!(metrics_addr.port(), server.addr().port());
    let mut client = server.classifier().await;
    client.classify(req("m", STATEMENTS[0])).await.unwrap();
    let _ = client.classify(req("m", "")).await;
    let body = http_get(metrics_addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for name in [
        "needscope_rpc_requests_total",
        "needscope_rpc_errors_total",
        "needscope_rpc_duration_seconds_bucket",
        "needscope_statements_classified_total",
        "needscope_model_info",
        "needscope_model_reloads_total",
    ] {
        assert!(body.contains(name), "{name} missing from\n{body}");
    }
    assert!(body.contains(r#"code="INVALID_ARGUMENT""#));
    assert!(body.contains(r#"method="needscope.v1.NeedsClassifier/Classify""#));
    server.stop().await;
}

#[tokio::test]
async fn statement_text_stays_out_of_logs() {
    // every needscope log line of this test binary, at TRACE level, goes to the capture
    let logs = capture_logs();
    let secret = "我的手机号是13800138000，请退款 PRIVATE-MARKER-1";
    let server = TestServer::start(|_, _| {}).await;
    let mut client = server.classifier().await;
    client
        .classify(pb::ClassifyRequest {
            id: "no-text-in-logs".into(),
            ..req("", secret)
        })
        .await
        .unwrap();
    client
        .classify_batch(pb::ClassifyBatchRequest {
            items: vec![req("q", secret), req("r", "")],
        })
        .await
        .unwrap();
    server.stop().await;
    let captured = logs.text();
    assert!(
        captured.contains("rpc finished"),
        "the capture works: {captured}"
    );
    assert!(
        !captured.contains("PRIVATE-MARKER-1"),
        "statement text leaked into logs"
    );

    // unless explicitly enabled
    let secret = "请退款 PRIVATE-MARKER-2";
    let server = TestServer::start(|c, _| c.log_statements = true).await;
    let mut client = server.classifier().await;
    client.classify(req("p", secret)).await.unwrap();
    server.stop().await;
    assert!(
        logs.text().contains("PRIVATE-MARKER-2"),
        "log_statements shows the text"
    );
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let Some(grpcurl) = require_tool("grpcurl", grpcurl()) else {
        return;
    };
    let server = TestServer::start(|_, _| {}).await;
    let addr = server.addr().to_string();
    let run = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(&grpcurl);
        cmd.args(args);
        cmd
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let (ok, out, err) = run_command(
        &mut run(s(&["-plaintext", &addr, "list"])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "list failed: {err}");
    for service in [
        "needscope.v1.NeedsClassifier",
        "needscope.v1.ModelAdmin",
        "grpc.health.v1.Health",
    ] {
        assert!(out.contains(service), "{service} not listed:\n{out}");
    }

    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            &addr,
            "describe",
            "needscope.v1.NeedsClassifier",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "describe failed: {err}");
    assert!(
        out.contains("rpc ClassifyStream ( stream .needscope.v1.ClassifyStreamRequest )"),
        "{out}"
    );
    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            &addr,
            "describe",
            "needscope.v1.ClassifyBatchResult",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "describe message failed: {err}");
    assert!(out.contains("google.rpc.Status error"), "{out}");

    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            "-d",
            r#"{"id": "crm-1", "text": "价格太贵了，快递也慢", "explain": true}"#,
            &addr,
            "needscope.v1.NeedsClassifier/Classify",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "Classify failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON answer");
    assert_eq!(v["id"], "crm-1");
    assert!(v["classification"]["needLevel"]
        .as_str()
        .unwrap()
        .starts_with("NEED_LEVEL_"));
    assert_eq!(v["classification"]["modelVersion"], "v1");

    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            "-d",
            r#"{"text": "  "}"#,
            &addr,
            "needscope.v1.NeedsClassifier/Classify",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("text"),
        "{out}{err}"
    );

    // per-item errors carry google.rpc.BadRequest details grpcurl can decode via reflection
    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            "-d",
            r#"{"items": [{"id": "a", "text": "价格太贵了"}, {"id": "b", "text": " "}]}"#,
            &addr,
            "needscope.v1.NeedsClassifier/ClassifyBatch",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "ClassifyBatch failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON answer");
    let detail = &v["results"][1]["error"]["details"][0];
    assert_eq!(
        detail["@type"], "type.googleapis.com/google.rpc.BadRequest",
        "{out}"
    );
    assert_eq!(
        detail["fieldViolations"][0]["field"], "items[1].text",
        "{out}"
    );

    let (ok, out, err) = run_command(
        &mut run(s(&[
            "-plaintext",
            "-d",
            r#"{"service": ""}"#,
            &addr,
            "grpc.health.v1.Health/Check",
        ])),
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "health failed: {err}");
    assert!(out.contains("SERVING"), "{out}");
    server.stop().await;
}

#[tokio::test]
async fn python_client_example_calls_every_classify_rpc() {
    let Some(python) = require_tool("the tools venv's python", venv_python()) else {
        return;
    };
    let server = TestServer::start(|_, _| {}).await;
    let stubs = tempfile::tempdir().unwrap();
    let script = repo_root().join("examples/python/needscope_client.py");
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script)
        .arg("--target")
        .arg(server.addr().to_string())
        .arg("--stubs")
        .arg(stubs.path())
        .arg("--json");
    let (ok, out, err) = run_command(&mut cmd, Duration::from_secs(120)).await;
    assert!(ok, "python client failed:\n{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON summary");
    assert_eq!(v["classify"]["id"], "crm-1001");
    assert!(v["classify"]["need_level"]
        .as_str()
        .unwrap()
        .starts_with("NEED_LEVEL_"));
    assert_eq!(v["batch"].as_array().unwrap().len(), 3);
    assert_eq!(v["batch"][1]["error_code"], "INVALID_ARGUMENT");
    assert_eq!(v["stream"].as_array().unwrap().len(), 4);
    assert_eq!(v["stream"][3]["id"], "s-4");
    server.stop().await;
}

/// The services listed by reflection v1.
async fn reflected_services(server: &TestServer) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut inbound = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = inbound.message().await.unwrap().expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test]
async fn reflection_v1_lists_the_served_services() {
    let server = TestServer::start(|_, _| {}).await;
    let names = reflected_services(&server).await;
    for want in [
        "needscope.v1.NeedsClassifier",
        "needscope.v1.ModelAdmin",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    server.stop().await;
    let server = TestServer::start(|c, _| c.admin_enabled = false).await;
    let names = reflected_services(&server).await;
    assert!(!names.iter().any(|n| n.contains("ModelAdmin")), "{names:?}");
    server.stop().await;
}

/// Runs the real `needscope serve` process: start to SERVING, SIGHUP reload, SIGTERM drain
/// and exit status 0. `NEEDSCOPE_SERVE_BIN` runs another build of the binary (a release one).
#[tokio::test]
async fn serve_process_reloads_on_sighup_and_exits_zero_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let exe = std::env::var("NEEDSCOPE_SERVE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_needscope").to_string());
    let exe = exe.as_str();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    write_test_bundle(&bundle, "proc-v1");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .args(["--log-format", "json", "--drain-delay", "100ms"])
        .arg("--bundle")
        .arg(&bundle)
        .env_remove("NEEDSCOPE_CONFIG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("needscope serve starts");
    let pid = child.id().expect("pid").to_string();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if let Some(a) = v["fields"]["listen"].as_str() {
                return a.to_string();
            }
        }
        panic!("no listen line");
    })
    .await
    .expect("listening in time");
    // keep draining stderr so the child never blocks on a full pipe
    let log = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    loop {
        if health_status(&mut health, "").await == SERVING {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never SERVING");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("process start to SERVING: {:?}", started.elapsed());
    let mut client = pb::needs_classifier_client::NeedsClassifierClient::new(channel);
    let version = |info: pb::GetModelInfoResponse| info.model_version;
    assert_eq!(
        version(
            client
                .get_model_info(pb::GetModelInfoRequest {})
                .await
                .unwrap()
                .into_inner()
        ),
        "proc-v1"
    );
    // a new version in place, then SIGHUP
    let mpath = bundle.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m["model_version"] = "proc-v2".into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut now = String::new();
    for _ in 0..100 {
        now = version(
            client
                .get_model_info(pb::GetModelInfoRequest {})
                .await
                .unwrap()
                .into_inner(),
        );
        if now == "proc-v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(now, "proc-v2", "SIGHUP reloaded the bundle");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    let log = log.await.unwrap();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(log.contains("drained, stopped"), "{log}");
}
