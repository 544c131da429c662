//! Dequantization of every ggml block type equals the `gguf` package's reference, bit for bit,
//! on the random blocks in tests/fixtures/gguf/dequant (made by make_gguf_fixtures.py dequant).

use std::path::PathBuf;

use tessera_core::quant::{dequantize, try_dequantize, DequantError};
use tessera_core::tensor::{DType, HostTensor};

const TYPES: [DType; 10] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf/dequant").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run tests/fixtures/make_gguf_fixtures.py dequant)", p.display()))
}

#[test]
fn every_type_matches_gguf_reference_bit_exactly() {
    for dtype in TYPES {
        let blocks = fixture(&format!("{dtype}.blocks"));
        let expected: Vec<f32> = fixture(&format!("{dtype}.f32"))
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(blocks.len() / dtype.block_bytes() * dtype.block_len(), expected.len(), "{dtype}");
        let mut out = vec![0.0f32; expected.len()];
        try_dequantize(dtype, &blocks, &mut out).unwrap();
        let mismatches: Vec<_> = out
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (a, b))| a.to_bits() != b.to_bits())
            .take(5)
            .collect();
        assert!(mismatches.is_empty(), "{dtype}: first mismatches (index, (ours, reference)): {mismatches:?}");
        // The HostTensor path gives the same values (2 rows of whole blocks).
        let n = expected.len();
        let t = HostTensor { dtype, shape: vec![2, n / 2], data: blocks.clone().into() };
        assert_eq!(t.to_f32().iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        // A row of a 2-row tensor dequantizes to the matching half.
        let row = t.narrow_rows(1, 1).to_f32();
        assert_eq!(row, expected[n / 2..].to_vec(), "{dtype} narrow_rows");
    }
}

#[test]
fn length_mismatches_are_errors_not_panics() {
    let mut out = vec![0.0f32; 32];
    assert_eq!(
        try_dequantize(DType::Q4_0, &[0u8; 17], &mut out),
        Err(DequantError::Length { dtype: DType::Q4_0, elements: 32, expected: 18, actual: 17 })
    );
    let mut odd = vec![0.0f32; 33];
    assert!(matches!(try_dequantize(DType::Q8_0, &[0u8; 34], &mut odd), Err(DequantError::PartialBlock { .. })));
    assert!(matches!(try_dequantize(DType::F32, &[0u8; 4], &mut out[..1]), Err(DequantError::NotQuantized { .. })));
    // Zero blocks are fine.
    try_dequantize(DType::Q6_K, &[], &mut []).unwrap();
}

#[test]
fn known_values() {
    // Q8_0 with d = 0.5: x = q * 0.5.
    let mut b = vec![0u8; 34];
    b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
    for i in 0..32 {
        b[2 + i] = (i as i8 - 16) as u8;
    }
    let mut out = vec![0.0; 32];
    dequantize(DType::Q8_0, &b, &mut out);
    assert_eq!(out, (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect::<Vec<_>>());
    // Q4_1 with d = 1, m = -2: low nibbles then high nibbles.
    let mut b = vec![0u8; 20];
    b[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
    b[2..4].copy_from_slice(&half::f16::from_f32(-2.0).to_le_bytes());
    for j in 0..16 {
        b[4 + j] = (j as u8) | ((15 - j as u8) << 4);
    }
    dequantize(DType::Q4_1, &b, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], j as f32 - 2.0);
        assert_eq!(out[j + 16], (15 - j) as f32 - 2.0);
    }
}
