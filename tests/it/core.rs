//! Classifier core against the shipped bundle and small training runs.
