//! Fuzz target: arbitrary bytes through the GGUF reader, the HF-name weight source (every
//! tensor loaded and dequantized), the config mapping and the GGUF tokenizer. Any panic,
//! out-of-bounds read or runaway allocation is a bug; errors are the expected outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::tokenizer::Tokenizer;
use tessera_core::weights::gguf::GgufFile;
use tessera_core::weights::{FileBytes, GgufWeights};

fuzz_target!(|data: &[u8]| {
    let _ = GgufFile::parse("fuzz.gguf", data);
    if let Ok(w) = GgufWeights::from_bytes("fuzz.gguf", FileBytes::Owned(data.to_vec())) {
        for name in w.hf_names() {
            if let Ok(t) = w.get_any(&name) {
                let _ = t.to_f32();
            }
        }
        let _ = w.hf_config();
        let _ = Tokenizer::from_gguf(w.gguf());
    }
});
