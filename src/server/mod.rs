//! The gRPC front door: serves the classifier core over tonic.
//!
//! An adapter only: handlers validate a request, convert it, call
//! [`crate::classifier::Classifier`], and convert the result back. Nothing about models or rules
//! lives here. This module owns the wire contract (`proto/needscope/v1/needscope.proto`), the
//! mapping of errors to `tonic::Status` ([`status`]), the server's configuration, health,
//! reflection, metrics, load shedding, deadlines and shutdown, and the `bench` load generator.

/// Code generated from `proto/needscope/v1/needscope.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("needscope.v1");

    /// Encoded file descriptor set of the API and its imports, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("needscope_descriptor");
}

pub mod admin;
pub mod bench;
pub mod cli;
pub mod config;
pub mod convert;
pub mod layers;
pub mod metrics;
pub mod run;
pub mod service;
pub mod state;
pub mod status;
pub mod validate;

pub use config::{ServerConfig, Settings};
pub use run::{start, start_with_loader, ServeError, ServerControl, ServerHandle};
pub use state::{BundleLoader, ReloadOutcome};
