//! tessera (native): the CLI, model discovery on disk and on the hub, model loading; later
//! the HTTP server and the CUDA backend.

pub mod cli;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod default_model;
pub mod hub;
pub mod load;
pub mod server;
