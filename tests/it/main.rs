//! needscope's integration tests: one test binary, one module per area.

mod common;
mod core;
mod corpus;
mod grpc;
mod props;

/// The shipped default bundle, loaded once for every module.
pub fn core_shipped() -> &'static needscope::classifier::Classifier {
    use std::sync::OnceLock;
    static C: OnceLock<needscope::classifier::Classifier> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
        needscope::classifier::Classifier::load(&dir).expect("shipped bundle loads")
    })
}
