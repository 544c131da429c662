//! tessera-web: wasm-bindgen bindings over tessera-core.
