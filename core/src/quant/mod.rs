//! GGUF (ggml) block formats: layouts, dequantization to f32, and (in the CPU backend)
//! quantized dot products. `DType::{block_len, block_bytes}` give each format's geometry.

mod dequant;
// Quantized dot products (CPU backend): activation quantization, row dots, the x8 layout.
pub mod dot;
mod dot_scalar;
mod dot_x86;
pub mod isa;
pub mod q8;
pub mod repack;
mod repack_x86;

pub use dequant::{dequantize, try_dequantize, DequantError};
