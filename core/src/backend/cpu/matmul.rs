//! `matmul`: `out[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N])`, HF `nn.Linear` semantics.
//!
//! f32 weights: the product runs through the `gemm` crate (f32 accumulation, rayon threads on
//! native). Quantized GGUF weights: `qmatmul` (integer dots on the blocks). The bias is added
//! afterwards as torch's `addmm` does.

use super::{dims1, dims2, f32_of, f32_tensor, shape_err, CpuBackend, CpuStorage, CpuTensor, NAME};
use crate::backend::{BackendError, Op, Result, Tensor};

pub(crate) fn matmul(
    be: &CpuBackend,
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
) -> Result<CpuTensor> {
    let op = Op::Matmul;
    let xv = f32_of(op, x)?;
    let (m, k) = dims2(op, "x", x)?;
    let unsupported = || BackendError::Unsupported {
        op,
        dtype: w.dtype(),
        backend: NAME,
    };
    if matches!(w.storage, CpuStorage::U32(_)) {
        return Err(unsupported());
    }
    let (n, wk) = dims2(op, "w", w)?;
    if wk != k {
        return Err(shape_err(
            op,
            format!(
                "x {:?} · w {:?}ᵀ: inner dims {k} and {wk} differ",
                x.shape, w.shape
            ),
        ));
    }
    let bias_values = match bias {
        Some(b) => {
            let values = f32_of(op, b)?;
            if dims1(op, "bias", b)? != n {
                return Err(shape_err(
                    op,
                    format!("bias {:?} does not match w {:?}", b.shape, w.shape),
                ));
            }
            Some(values)
        }
        None => None,
    };

    let numel = m
        .checked_mul(n)
        .ok_or_else(|| shape_err(op, format!("output [{m}, {n}] overflows")))?;
    let mut out = vec![0.0f32; numel];
    match &w.storage {
        CpuStorage::F32(wv) => x_wt(be, m, n, k, xv, wv, &mut out),
        CpuStorage::Quant(q) => super::qmatmul::matmul(be, xv, m, k, q, n, &mut out)?,
        CpuStorage::U32(_) => return Err(unsupported()),
    }
    if let Some(b) = bias_values {
        for row in out.chunks_exact_mut(n) {
            for (o, &bj) in row.iter_mut().zip(b) {
                *o += bj;
            }
        }
    }
    Ok(f32_tensor(out, vec![m, n]))
}

/// `out[m, n] = Σ_k x[m, k] · w[n, k]` with gemm. Lengths are checked by the caller.
fn x_wt(be: &CpuBackend, m: usize, n: usize, k: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    debug_assert!(x.len() == m * k && w.len() == n * k && out.len() == m * n);
    if m == 0 || n == 0 || k == 0 {
        out.fill(0.0);
        return;
    }
    let parallelism = be.gemm_parallelism();
    be.install(|| {
        // SAFETY: dst is m×n row-major (column stride 1, row stride n) inside `out`;
        // lhs is x, m×k row-major (column stride 1, row stride k) inside `x`;
        // rhs is wᵀ, k×n: element (kk, nn) = w[nn * k + kk], so column stride k and row
        // stride 1, inside `w`. All slices have the lengths asserted above and dst does not
        // alias the inputs. With read_dst = false, dst = 1.0 · lhs · rhs.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            )
        }
    });
}
