//! tessera-core: everything that is not a device or an IO edge (see DESIGN.md).
//!
//! Builds for `wasm32-unknown-unknown`: files arrive as bytes or through traits, no threads
//! are required, and nothing here touches the network.

pub mod backend;
pub mod config;
pub mod engine;
pub mod error;
pub mod kv;
pub mod layers;
pub mod models;
pub mod quant;
pub mod sample;
pub mod sched;
pub mod tensor;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
