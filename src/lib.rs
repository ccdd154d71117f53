#![doc = include_str!("../README.md")]

pub mod bundle;
pub mod classifier;
pub mod error;
pub mod labels;
pub mod model;
pub mod rules;
pub mod text;
