//! Model bundles: a directory holding the model file, rules, jieba user dictionary,
//! thresholds, a model card and a manifest with the sha256 of every file.
//!
//! Owns the bundle layout, the manifest and verification. Loading checks the manifest's
//! format version, the label sets and every file's hash before anything is parsed, so a
//! corrupt, truncated or incompatible bundle is refused with the reason.

use crate::error::{Error, Result};
use crate::labels::Axis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Version of the bundle layout and manifest written by this build.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The model file's name.
pub const MODEL_FILE: &str = "model.bin";
/// The rules file's name.
pub const RULES_FILE: &str = "rules.toml";
/// The jieba user dictionary's name.
pub const USER_DICT_FILE: &str = "userdict.txt";
/// The thresholds file's name.
pub const THRESHOLDS_FILE: &str = "thresholds.toml";
/// The model card's name.
pub const MODEL_CARD_FILE: &str = "MODEL_CARD.md";
/// Files every bundle must list in its manifest.
pub const REQUIRED_FILES: [&str; 4] = [MODEL_FILE, RULES_FILE, USER_DICT_FILE, THRESHOLDS_FILE];

/// One corpus file a model was trained on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CorpusFile {
    /// The path as given to `train`.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Statements read from it.
    pub rows: usize,
}

/// The manifest of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version.
    pub format_version: u32,
    /// Version string of the model, reported with every result.
    pub model_version: String,
    /// When `train` wrote the bundle (RFC 3339, UTC).
    pub created_at: String,
    /// sha256 over the training files' hashes, in order.
    pub corpus_hash: String,
    /// The training files.
    pub corpus_files: Vec<CorpusFile>,
    /// Label values per axis, in canonical order.
    pub labels: BTreeMap<String, Vec<String>>,
    /// sha256 of every file of the bundle but the manifest.
    pub files: BTreeMap<String, String>,
    /// Training settings (algorithm, regularisation, vocabulary size...).
    pub training: BTreeMap<String, serde_json::Value>,
    /// Evaluation summaries by data set name (`dev`, `challenge`): metric name to value.
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

/// sha256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Combines file hashes into one corpus hash.
pub fn corpus_hash(files: &[CorpusFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.sha256.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The label sets of this build, as written into manifests.
pub fn label_sets() -> BTreeMap<String, Vec<String>> {
    Axis::ALL
        .iter()
        .map(|a| {
            (
                a.name().to_string(),
                a.values().iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

/// The raw, verified files of a bundle.
#[derive(Debug)]
pub struct BundleFiles {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// File name to contents, for every file the manifest lists.
    pub contents: BTreeMap<String, Vec<u8>>,
}

impl BundleFiles {
    /// The contents of `name` as UTF-8.
    pub fn text(&self, name: &str) -> Result<&str> {
        let b = self
            .contents
            .get(name)
            .ok_or_else(|| Error::bundle(&self.dir, format!("{name} is missing")))?;
        std::str::from_utf8(b).map_err(|_| Error::bundle(self.dir.join(name), "not UTF-8"))
    }
}

/// Reads a bundle directory and verifies its manifest and file hashes.
pub fn read_verified(dir: &Path) -> Result<BundleFiles> {
    let mpath = dir.join(MANIFEST);
    let raw = std::fs::read(&mpath).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::bundle(dir, "no manifest.json: not a model bundle"),
        _ => Error::io(&mpath, e),
    })?;
    let manifest: Manifest = serde_json::from_slice(&raw)
        .map_err(|e| Error::bundle(&mpath, format!("manifest is not valid: {e}")))?;
    if manifest.format_version != BUNDLE_FORMAT_VERSION {
        return Err(Error::bundle(
            dir,
            format!(
                "bundle format version {} is not supported (this build reads {BUNDLE_FORMAT_VERSION})",
                manifest.format_version
            ),
        ));
    }
    if manifest.labels != label_sets() {
        return Err(Error::bundle(
            dir,
            "label sets in the manifest differ from this build's",
        ));
    }
    for required in REQUIRED_FILES {
        if !manifest.files.contains_key(required) {
            return Err(Error::bundle(
                dir,
                format!("manifest does not list {required}"),
            ));
        }
    }
    let mut contents = BTreeMap::new();
    for (name, want) in &manifest.files {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(Error::bundle(
                dir,
                format!("manifest lists an unsafe file name {name:?}"),
            ));
        }
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::bundle(dir, format!("{name} is missing")),
            _ => Error::io(&p, e),
        })?;
        let got = sha256_hex(&bytes);
        if &got != want {
            return Err(Error::bundle(
                dir,
                format!("{name} is corrupt or was changed: sha256 {got}, manifest says {want}"),
            ));
        }
        contents.insert(name.clone(), bytes);
    }
    Ok(BundleFiles {
        dir: dir.to_path_buf(),
        manifest,
        contents,
    })
}

/// Writes a bundle: every file, then the manifest with their hashes (written last, through a
/// temporary file and a rename, so a reader never sees a manifest for files not yet there).
pub fn write_bundle(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    mut manifest: Manifest,
) -> Result<Manifest> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    manifest.files.clear();
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        manifest.files.insert(name.clone(), sha256_hex(bytes));
    }
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::bundle(dir, e.to_string()))?;
    let tmp = dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, &json).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| Error::io(dir.join(MANIFEST), e))?;
    Ok(manifest)
}
