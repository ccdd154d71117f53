#![doc = include_str!("../README.md")]

pub mod labels;
pub mod text;
