//! HF tensor names <-> GGUF tensor names, and the per-tensor fix-ups llama.cpp's converter
//! applied that must be undone to get HF's weights back.
//!
//! ```text
//! model.embed_tokens.weight                      token_embd.weight
//! model.norm.weight / lm_head.weight             output_norm.weight / output.weight
//! model.layers.N.input_layernorm.weight          blk.N.attn_norm.weight
//! model.layers.N.self_attn.{q,k,v,o}_proj.*      blk.N.attn_{q,k,v,output}.*
//! model.layers.N.self_attn.{q,k}_norm.weight     blk.N.attn_{q,k}_norm.weight
//! model.layers.N.self_attn.qkv_proj.weight       blk.N.attn_qkv.weight          (phi3)
//! model.layers.N.post_attention_layernorm.weight blk.N.ffn_norm.weight          (gemma3: post_attention_norm)
//! model.layers.N.pre_feedforward_layernorm       blk.N.ffn_norm.weight          (gemma3)
//! model.layers.N.post_feedforward_layernorm      blk.N.post_ffw_norm.weight     (gemma3)
//! model.layers.N.mlp.{gate,up,down}_proj.weight  blk.N.ffn_{gate,up,down}.weight
//! model.layers.N.mlp.gate_up_proj.weight         blk.N.ffn_up.weight            (phi3: gate rows first)
//! ```
//!
//! Fix-ups: llama.cpp permutes the rows of Q and K of `llama`-architecture files (it rotates
//! interleaved pairs where HF rotates halves):
//!
//! ```text
//! per head of d rows:  HF row  j*(d/2) + i   (j in 0..2, i in 0..d/2)
//!                      GGUF row      2*i + j
//! ```
//!
//! Rows are whole quantization blocks, so the un-permutation moves bytes and works on quantized
//! data as is. Gemma's converter stores RMSNorm weights as `1 + w`; we subtract the 1.

/// What must be done to a GGUF tensor to get the HF one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fixup {
    None,
    /// Un-permute rows in groups of `heads` (Q: attention heads, K: KV heads).
    UnpermuteQ,
    UnpermuteK,
    /// Subtract 1 (Gemma norms).
    MinusOne,
}

/// The GGUF name of an HF tensor for `arch` (`general.architecture`), and its fix-up.
pub fn hf_to_gguf_name(arch: &str, hf: &str) -> Option<(String, Fixup)> {
    let gemma = arch == "gemma3";
    let norm_fix = if gemma { Fixup::MinusOne } else { Fixup::None };
    match hf {
        "model.embed_tokens.weight" => return Some(("token_embd.weight".into(), Fixup::None)),
        "model.norm.weight" => return Some(("output_norm.weight".into(), norm_fix)),
        "lm_head.weight" => return Some(("output.weight".into(), Fixup::None)),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = match rest.rsplit_once('.') {
        Some((m, s @ ("weight" | "bias"))) => (m, s),
        _ => return None,
    };
    let permute = matches!(arch, "llama" | "mistral");
    let (g, fix) = match (module, gemma) {
        ("input_layernorm", _) => ("attn_norm", norm_fix),
        ("post_attention_layernorm", false) => ("ffn_norm", Fixup::None),
        ("post_attention_layernorm", true) => ("post_attention_norm", Fixup::MinusOne),
        ("pre_feedforward_layernorm", true) => ("ffn_norm", Fixup::MinusOne),
        ("post_feedforward_layernorm", true) => ("post_ffw_norm", Fixup::MinusOne),
        ("self_attn.q_proj", _) => ("attn_q", if permute { Fixup::UnpermuteQ } else { Fixup::None }),
        ("self_attn.k_proj", _) => ("attn_k", if permute { Fixup::UnpermuteK } else { Fixup::None }),
        ("self_attn.v_proj", _) => ("attn_v", Fixup::None),
        ("self_attn.o_proj", _) => ("attn_output", Fixup::None),
        ("self_attn.qkv_proj", _) => ("attn_qkv", Fixup::None),
        ("self_attn.q_norm", _) => ("attn_q_norm", norm_fix),
        ("self_attn.k_norm", _) => ("attn_k_norm", norm_fix),
        ("mlp.gate_proj", _) => ("ffn_gate", Fixup::None),
        ("mlp.up_proj", _) => ("ffn_up", Fixup::None),
        ("mlp.down_proj", _) => ("ffn_down", Fixup::None),
        ("mlp.gate_up_proj", _) => ("ffn_up", Fixup::None),
        _ => return None,
    };
    Some((format!("blk.{layer}.{g}.{suffix}"), fix))
}

/// The HF name of a GGUF tensor for `arch` (the inverse of [`hf_to_gguf_name`]), for listing.
pub fn gguf_to_hf_name(arch: &str, gguf: &str) -> Option<String> {
    let gemma = arch == "gemma3";
    let phi3 = arch == "phi3";
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let hf = match (module, gemma) {
        ("attn_norm", _) => "input_layernorm",
        ("ffn_norm", false) => "post_attention_layernorm",
        ("ffn_norm", true) => "pre_feedforward_layernorm",
        ("post_attention_norm", true) => "post_attention_layernorm",
        ("post_ffw_norm", true) => "post_feedforward_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_qkv", _) => "self_attn.qkv_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) if phi3 => "mlp.gate_up_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Undo llama.cpp's Q/K row permutation: `data` holds `rows` rows of `row_bytes` bytes each,
/// in `heads` groups. Returns `None` if the rows do not split into heads of an even size.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; MSRV is 1.85
pub fn unpermute_rows(data: &[u8], rows: usize, row_bytes: usize, heads: usize) -> Option<Vec<u8>> {
    if heads == 0 || rows % heads != 0 || (rows / heads) % 2 != 0 || data.len() != rows.checked_mul(row_bytes)? {
        return None;
    }
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let hf_row = h * d + j * half + i;
                let gguf_row = h * d + 2 * i + j;
                out[hf_row * row_bytes..(hf_row + 1) * row_bytes]
                    .copy_from_slice(&data[gguf_row * row_bytes..(gguf_row + 1) * row_bytes]);
            }
        }
    }
    Some(out)
}
