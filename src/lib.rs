#![doc = include_str!("../README.md")]

pub mod bundle;
pub mod classifier;
pub mod corpus;
pub mod error;
pub mod eval;
pub mod labels;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod rules;
pub mod server;
pub mod text;
pub mod train;
