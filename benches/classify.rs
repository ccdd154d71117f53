//! Classifier core benchmarks: one statement, throughput over dev, and bundle loading.
//! Data is prepared outside the timed parts; statements rotate so no two consecutive calls
//! see the same text, and there is no result cache.
//!
//! cargo bench --bench classify

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use needscope::classifier::{Classifier, ClassifyOptions};
use needscope::corpus::read_labelled;
use needscope::labels::Lang;
use std::hint::black_box;
use std::path::Path;

/// The same allocator as the `needscope` binary, so the figures match the server's core.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bundle_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default"))
}

fn dev_texts() -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/corpus/dev.jsonl");
    read_labelled(&p)
        .expect("dev split")
        .into_iter()
        .map(|e| e.record.text)
        .collect()
}

fn benches(c: &mut Criterion) {
    let cl = Classifier::load(bundle_dir()).expect("default bundle");
    let opts = ClassifyOptions::default();
    let dev = dev_texts();

    // one 30-40 character Chinese statement at a time, all four axes and rules
    let zh: Vec<&String> = dev
        .iter()
        .filter(|t| {
            let n = t.chars().count();
            (30..=40).contains(&n)
                && matches!(
                    needscope::text::detect_language(t),
                    Lang::ZhHans | Lang::ZhHant
                )
        })
        .collect();
    assert!(
        zh.len() > 20,
        "too few 30-40 character Chinese dev statements"
    );
    let mut i = 0usize;
    c.bench_function(
        &format!("classify/one_zh_30_40_chars/rotating_{}", zh.len()),
        |b| {
            b.iter(|| {
                i = (i + 1) % zh.len();
                black_box(cl.classify(black_box(zh[i]), &opts).ok())
            })
        },
    );

    // throughput over dev statements of up to 60 characters
    let short: Vec<&String> = dev.iter().filter(|t| t.chars().count() <= 60).collect();
    let mut g = c.benchmark_group("classify_throughput");
    g.throughput(Throughput::Elements(short.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("dev_up_to_60_chars", short.len()),
        &short,
        |b, s| {
            b.iter(|| {
                for t in s.iter() {
                    black_box(cl.classify(t, &opts).ok());
                }
            })
        },
    );
    // characters per second over the whole dev split (throughput counted in characters)
    let chars: u64 = dev.iter().map(|t| t.chars().count() as u64).sum();
    g.throughput(Throughput::Elements(chars));
    g.bench_with_input(BenchmarkId::new("dev_all_chars", chars), &dev, |b, s| {
        b.iter(|| {
            for t in s.iter() {
                black_box(cl.classify(t, &opts).ok());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("bundle");
    g.sample_size(10);
    g.bench_function("load_default_bundle", |b| {
        b.iter(|| black_box(Classifier::load(bundle_dir()).is_ok()))
    });
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
