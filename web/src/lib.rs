//! tessera-web: wasm-bindgen bindings over tessera-core, the engine of the `tessera-web` npm
//! package (`web/js/` wraps it in an OpenAI-shaped API).
//!
//! ```text
//! ModelFiles (bytes fetched by JS) ──WebEngine::load──▶ WebEngine (LLM on WebGPU or CPU)
//!   addChat / addCompletion / abort / step() -> JSON RequestOutput deltas / stats / unload
//! ```
//! `generateGreedy` is the smallest end-to-end path (config.json + safetensors, token ids).

mod engine;
mod error;
mod files;
mod greedy;

pub use engine::{LoadOptions, WebEngine};
pub use error::WebError;
pub use files::ModelFiles;
pub use greedy::generate_greedy;

use wasm_bindgen::prelude::*;

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

/// Sends Rust panics to the browser console (installed once, when the module starts).
#[wasm_bindgen(start)]
pub fn start() {
    #[cfg(target_arch = "wasm32")]
    std::panic::set_hook(Box::new(|info| console_error(&format!("tessera-web panicked: {info}"))));
}
