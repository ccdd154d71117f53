//! The learned part of a bundle: a vocabulary of feature tokens with their inverse document
//! frequencies, and one linear (multinomial logistic) layer per axis, evaluated directly on
//! sparse features.
//!
//! Owns feature weighting (sub-linear tf times idf, L2-normalised), scoring and the model
//! file format. Training lives in [`crate::train`]; rules in [`crate::rules`].

use crate::error::{Error, Result};
use crate::labels::{Axis, TOTAL_VALUES};
use crate::text::{parse_token_name, Token};
use rustc_hash::FxHashMap;
use std::path::Path;

const MAGIC: &[u8; 8] = b"NSMODEL\0";
/// Version of the binary model format written by this build.
pub const MODEL_FORMAT_VERSION: u32 = 1;
const END_MARK: &[u8; 4] = b"END\0";

/// Settings of the feature extractor, stored in the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Whether jieba words are features.
    pub jieba: bool,
}

/// Vocabulary: feature names (sorted), their idf and a hash index for serving.
#[derive(Debug, Clone)]
pub struct FeatureSpace {
    names: Vec<String>,
    idf: Vec<f64>,
    index: FxHashMap<u64, u32>,
    /// Feature settings.
    pub config: FeatureConfig,
}

/// A sparse feature vector: (feature index, value) sorted by index, L2-normalised.
pub type SparseVec = Vec<(u32, f64)>;

impl FeatureSpace {
    /// Builds a feature space from names (any order; they are sorted) and idf values.
    pub fn new(mut entries: Vec<(String, f64)>, config: FeatureConfig) -> Result<FeatureSpace> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut index = FxHashMap::default();
        index.reserve(entries.len());
        for (i, (name, _)) in entries.iter().enumerate() {
            let (_, h) = parse_token_name(name)
                .ok_or_else(|| Error::Training(format!("bad feature name {name:?}")))?;
            if index.insert(h, i as u32).is_some() {
                return Err(Error::Training(format!(
                    "duplicate or colliding feature {name:?}"
                )));
            }
        }
        let (names, idf) = entries.into_iter().unzip();
        Ok(FeatureSpace {
            names,
            idf,
            index,
            config,
        })
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Name of feature `i`.
    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    /// Index of the feature with this token hash.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        self.index.get(&hash).copied()
    }

    /// Turns tokens into a sparse vector (into `out`, reusing it). Unknown tokens are ignored.
    pub fn vectorize_into(&self, tokens: &[Token], out: &mut SparseVec) {
        out.clear();
        for t in tokens {
            if let Some(i) = self.lookup(t.hash) {
                out.push((i, 1.0));
            }
        }
        out.sort_unstable_by_key(|x| x.0);
        // merge counts
        let mut w = 0usize;
        for r in 0..out.len() {
            if w > 0 && out[w - 1].0 == out[r].0 {
                out[w - 1].1 += 1.0;
            } else {
                out[w] = out[r];
                w += 1;
            }
        }
        out.truncate(w);
        let mut norm = 0.0;
        for (i, v) in out.iter_mut() {
            let tf = if *v > 1.0 { 1.0 + v.ln() } else { 1.0 };
            *v = tf * self.idf[*i as usize];
            norm += *v * *v;
        }
        if norm > 0.0 {
            let inv = 1.0 / norm.sqrt();
            for (_, v) in out.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// One linear layer per axis over a shared feature space.
#[derive(Debug, Clone)]
pub struct LinearModel {
    /// The vocabulary.
    pub features: FeatureSpace,
    /// Row-major `len() x TOTAL_VALUES` weights: row `f` holds every axis's class weights.
    weights: Vec<f64>,
    /// The same weights in f32, one 64-byte row per feature: the serving path reads one cache
    /// line per feature of a statement.
    rows: Vec<WeightRow>,
    /// Intercepts of every value of every axis.
    bias: [f64; TOTAL_VALUES],
}

const _: () = assert!(TOTAL_VALUES <= 16, "a weight row holds at most 16 values");

/// One feature's weights for every value of every axis, padded to a cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct WeightRow([f32; 16]);

/// Scores of every value of every axis, flat in [`Axis::offset`] order.
pub type Scores = [f64; TOTAL_VALUES];

impl LinearModel {
    /// Assembles a model; `weights` is `features.len() x TOTAL_VALUES` row-major.
    pub fn new(features: FeatureSpace, weights: Vec<f64>, bias: Scores) -> Result<LinearModel> {
        if weights.len() != features.len() * TOTAL_VALUES {
            return Err(Error::Training(
                "weight matrix does not match the vocabulary".into(),
            ));
        }
        if weights.iter().chain(bias.iter()).any(|w| !w.is_finite()) {
            return Err(Error::Training("non-finite weight".into()));
        }
        let rows = weights
            .chunks_exact(TOTAL_VALUES)
            .map(|w| {
                let mut row = [0.0f32; 16];
                for (r, &x) in row.iter_mut().zip(w) {
                    *r = x as f32;
                }
                WeightRow(row)
            })
            .collect();
        Ok(LinearModel {
            features,
            weights,
            rows,
            bias,
        })
    }

    /// The weight of feature `f` for flat value index `v`.
    #[inline]
    pub fn weight(&self, f: u32, v: usize) -> f64 {
        self.weights[f as usize * TOTAL_VALUES + v]
    }

    /// The intercepts.
    pub fn bias(&self) -> &Scores {
        &self.bias
    }

    /// Linear scores (logits) for a sparse vector: f32 weights, accumulated in f64.
    #[inline]
    pub fn logits(&self, x: &[(u32, f64)]) -> Scores {
        let mut s = self.bias;
        for &(f, v) in x {
            if let Some(row) = self.rows.get(f as usize) {
                for (acc, &w) in s.iter_mut().zip(&row.0) {
                    *acc += v * f64::from(w);
                }
            }
        }
        s
    }

    /// Writes the model file. The output depends only on the model: names are sorted and
    /// numbers written as little-endian IEEE 754.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.features.len() * (24 + TOTAL_VALUES * 8));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&MODEL_FORMAT_VERSION.to_le_bytes());
        b.push(u8::from(self.features.config.jieba));
        b.extend_from_slice(&(Axis::ALL.len() as u32).to_le_bytes());
        for a in Axis::ALL {
            put_str(&mut b, a.name());
            b.extend_from_slice(&(a.len() as u32).to_le_bytes());
            for v in a.values() {
                put_str(&mut b, v);
            }
        }
        for x in self.bias {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&(self.features.len() as u32).to_le_bytes());
        for (i, name) in self.features.names.iter().enumerate() {
            put_str(&mut b, name);
            b.extend_from_slice(&self.features.idf[i].to_le_bytes());
            for w in &self.weights[i * TOTAL_VALUES..(i + 1) * TOTAL_VALUES] {
                b.extend_from_slice(&w.to_le_bytes());
            }
        }
        b.extend_from_slice(END_MARK);
        b
    }

    /// Reads a model file written by [`LinearModel::to_bytes`], refusing anything truncated,
    /// of another format version or with other label sets.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<LinearModel> {
        let bad = |r: &str| Error::bundle(path, format!("model file: {r}"));
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(8).ok_or_else(|| bad("too short"))? != MAGIC {
            return Err(bad("not a needscope model file"));
        }
        let version = r.u32().ok_or_else(|| bad("truncated header"))?;
        if version != MODEL_FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {version}, this build reads {MODEL_FORMAT_VERSION}"
            )));
        }
        let jieba = r.take(1).ok_or_else(|| bad("truncated header"))?[0] != 0;
        let n_axes = r.u32().ok_or_else(|| bad("truncated header"))?;
        if n_axes as usize != Axis::ALL.len() {
            return Err(bad("label sets differ from this build's"));
        }
        for a in Axis::ALL {
            let name = r.str().ok_or_else(|| bad("truncated label sets"))?;
            let n = r.u32().ok_or_else(|| bad("truncated label sets"))? as usize;
            if name != a.name() || n != a.len() {
                return Err(bad("label sets differ from this build's"));
            }
            for v in a.values() {
                if r.str().ok_or_else(|| bad("truncated label sets"))? != *v {
                    return Err(bad("label sets differ from this build's"));
                }
            }
        }
        let mut bias = [0.0; TOTAL_VALUES];
        for x in bias.iter_mut() {
            *x = r.f64().ok_or_else(|| bad("truncated intercepts"))?;
        }
        let n = r.u32().ok_or_else(|| bad("truncated vocabulary"))? as usize;
        // each feature needs at least 2 + 1 + 8 * 14 bytes: refuse absurd counts before allocating
        if n > bytes.len() / (3 + 8 * (TOTAL_VALUES + 1)) {
            return Err(bad("feature count exceeds file size"));
        }
        let mut entries = Vec::with_capacity(n);
        let mut weights = Vec::with_capacity(n * TOTAL_VALUES);
        let mut prev: Option<&str> = None;
        for _ in 0..n {
            let name = r.str().ok_or_else(|| bad("truncated vocabulary"))?;
            if prev.is_some_and(|p| p >= name) {
                return Err(bad("vocabulary is not sorted"));
            }
            prev = Some(name);
            let idf = r.f64().ok_or_else(|| bad("truncated vocabulary"))?;
            entries.push((name.to_string(), idf));
            for _ in 0..TOTAL_VALUES {
                weights.push(r.f64().ok_or_else(|| bad("truncated weights"))?);
            }
        }
        if r.take(4)
            .ok_or_else(|| bad("truncated: end marker missing"))?
            != END_MARK
            || r.at != bytes.len()
        {
            return Err(bad("trailing data after end marker"));
        }
        if entries.iter().any(|e| !e.1.is_finite()) {
            return Err(bad("non-finite idf"));
        }
        let features =
            FeatureSpace::new(entries, FeatureConfig { jieba }).map_err(|e| bad(&e.to_string()))?;
        LinearModel::new(features, weights, bias).map_err(|e| bad(&e.to_string()))
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&s.as_bytes()[..len as usize]);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Softmax over one axis's slice of scores, in place, shifted by the maximum.
pub fn softmax_in_place(s: &mut [f64]) {
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in s.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    for x in s.iter_mut() {
        *x /= sum;
    }
}

/// Per-axis softmax of flat scores.
pub fn probabilities(mut s: Scores) -> Scores {
    for a in Axis::ALL {
        softmax_in_place(&mut s[a.offset()..a.offset() + a.len()]);
    }
    s
}

/// Reads a model file from disk.
pub fn read_model(path: &Path) -> Result<LinearModel> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    LinearModel::from_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LinearModel {
        let fs = FeatureSpace::new(
            vec![("c:好".into(), 1.5), ("w:late".into(), 2.0)],
            FeatureConfig { jieba: false },
        )
        .unwrap();
        let weights = (0..2 * TOTAL_VALUES).map(|i| i as f64 * 0.1).collect();
        LinearModel::new(fs, weights, [0.5; TOTAL_VALUES]).unwrap()
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let m = tiny();
        let b = m.to_bytes();
        let back = LinearModel::from_bytes(&b, Path::new("m")).unwrap();
        assert_eq!(back.to_bytes(), b);
        for cut in [0, 7, 20, b.len() / 2, b.len() - 1] {
            assert!(
                LinearModel::from_bytes(&b[..cut], Path::new("m")).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = b.clone();
        extra.push(0);
        assert!(LinearModel::from_bytes(&extra, Path::new("m")).is_err());
    }

    #[test]
    fn softmax_is_stable() {
        let mut s = [1000.0, 1001.0, -1000.0];
        softmax_in_place(&mut s);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(s.iter().all(|x| x.is_finite()));
    }
}
