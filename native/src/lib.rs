//! tessera (native): the CLI, model discovery on disk and on the hub, model loading; later
//! the HTTP server and the CUDA backend.

pub mod cli;
pub mod hub;
pub mod load;
