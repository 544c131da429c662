//! Dense GEMMs through cuBLAS: `out[M, N] = x[M, K] · w[N, K]ᵀ`, bf16/f16/f32 operands with
//! f32 accumulation (`CUBLAS_COMPUTE_32F`, no TF32), on the backend's stream.
//!
//! ```text
//! row-major out[M,N] is column-major outᵀ[N,M] = w · xᵀ:
//! cublasGemmEx(op_T, op_N, m = N, n = M, k = K, A = w (ld K), B = x (ld K), C = out (ld N))
//! ```
//! Two products of one x with equal-shape weights (gate/up, k/v) may go as one strided batch of 2
//! (`gemm_xwt_pair`), the A and C strides being the distances between the two weights and
//! between the two outputs.
//! The handle gets its own workspace (cublasSetWorkspace), so GEMMs recorded into a CUDA
//! graph never allocate.

use std::sync::Mutex;

use cudarc::cublas::sys as bsys;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use tessera_core::backend::{Op, Result};
use tessera_core::tensor::DType;

use super::device::{dev_err, setup_err};

/// A cuBLAS handle bound to the backend's stream; calls are serialised by the mutex.
pub(crate) struct Blas {
    handle: Mutex<HandlePtr>,
    /// The handle's workspace; freed after the handle (Drop below, then the fields).
    _workspace: CudaSlice<u8>,
}

/// cuBLAS workspace bytes (NVIDIA's recommendation for Hopper).
const WORKSPACE: usize = 32 << 20;

struct HandlePtr(bsys::cublasHandle_t);

// SAFETY: the handle is only used under the mutex, from one thread at a time.
unsafe impl Send for HandlePtr {}

impl Blas {
    pub fn new(stream: &Arc<CudaStream>) -> Result<Blas> {
        let handle = cudarc::cublas::result::create_handle().map_err(|e| setup_err(format!("cuBLAS: creating a handle: {e}")))?;
        // SAFETY: a fresh handle and the backend's live stream.
        unsafe { cudarc::cublas::result::set_stream(handle, stream.cu_stream() as _) }
            .map_err(|e| setup_err(format!("cuBLAS: binding the stream: {e}")))?;
        let workspace = stream.alloc_zeros::<u8>(WORKSPACE).map_err(|e| setup_err(format!("cuBLAS: allocating the workspace: {e}")))?;
        let ptr = workspace.device_ptr(stream).0;
        // SAFETY: a live device buffer of WORKSPACE bytes, kept as long as the handle.
        let status = unsafe { bsys::cublasSetWorkspace_v2(handle, ptr as *mut _, WORKSPACE) };
        if status != bsys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(setup_err(format!("cuBLAS: setting the workspace: {status:?}")));
        }
        Ok(Blas { handle: Mutex::new(HandlePtr(handle)), _workspace: workspace })
    }

    /// `out = x · wᵀ` for row-major x [m, k], w [n, k], out [m, n] of `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_xwt(&self, dtype: DType, m: usize, n: usize, k: usize, x: u64, w: u64, out: u64) -> Result<()> {
        self.gemm(dtype, m, n, k, x, (w, 0), (out, 0), 1)
    }

    /// Two products of one x in ONE cuBLAS call: `out_j = x · w_jᵀ` for row-major x [m, k],
    /// w_0, w_1 [n, k] anywhere in memory (w_0 below w_1, a 16-byte multiple apart), outputs
    /// `out + j·out_stride` (elements, disjoint). A strided batch of 2 whose A and C strides
    /// are the distances between the weights and between the outputs, B stride 0 (x shared):
    /// gate/up or k/v as one launch with twice the blocks.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_xwt_pair(&self, dtype: DType, m: usize, n: usize, k: usize, x: u64, w: (u64, u64), out: (u64, usize)) -> Result<()> {
        let es = dtype.size() as u64;
        if w.1 <= w.0 || !(w.1 - w.0).is_multiple_of(16) || !(w.1 - w.0).is_multiple_of(es) {
            return Err(dev_err(Op::Matmul, format!("paired GEMM weights at {:#x} and {:#x}: need w0 < w1, 16-byte apart", w.0, w.1)));
        }
        let stride = i64::try_from((w.1 - w.0) / es).map_err(|_| dev_err(Op::Matmul, "weight distance exceeds 64 bits"))?;
        if out.1 < m * n {
            return Err(dev_err(Op::Matmul, format!("paired GEMM outputs {} elements apart overlap (M*N = {})", out.1, m * n)));
        }
        let out_stride = i64::try_from(out.1).map_err(|_| dev_err(Op::Matmul, "output stride exceeds 64 bits"))?;
        self.gemm(dtype, m, n, k, x, (w.0, stride), (out.0, out_stride), 2)
    }

    /// `batch` products `out + i·out_stride = x · (w + i·w_stride)ᵀ` (elements).
    #[allow(clippy::too_many_arguments)]
    fn gemm(&self, dtype: DType, m: usize, n: usize, k: usize, x: u64, w: (u64, i64), out: (u64, i64), batch: i32) -> Result<()> {
        let op = Op::Matmul;
        let ty = match dtype {
            DType::F32 => bsys::cudaDataType::CUDA_R_32F,
            DType::F16 => bsys::cudaDataType::CUDA_R_16F,
            DType::BF16 => bsys::cudaDataType::CUDA_R_16BF,
            other => {
                return Err(tessera_core::backend::BackendError::Unsupported { op, dtype: other, backend: super::NAME })
            }
        };
        let dim = |v: usize, what: &str| i32::try_from(v).map_err(|_| dev_err(op, format!("{what} = {v} exceeds cuBLAS's 32-bit sizes")));
        let (mi, ni, ki) = (dim(m, "M")?, dim(n, "N")?, dim(k, "K")?);
        let (alpha, beta) = (1.0f32, 0.0f32);
        let h = self.handle.lock().map_err(|_| dev_err(op, "cuBLAS handle poisoned"))?;
        let (t, nn) = (bsys::cublasOperation_t::CUBLAS_OP_T, bsys::cublasOperation_t::CUBLAS_OP_N);
        let (compute, algo) = (bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F, bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT);
        let (a, b) = (&alpha as *const f32 as *const _, &beta as *const f32 as *const _);
        // SAFETY: x, w (+ i·w stride), out (+ i·out stride) are live device buffers of m*k,
        // n*k, m*n elements of `dtype` (checked by the callers); alpha/beta are host f32
        // (pointer mode host, compute 32F).
        let status = unsafe {
            if batch == 1 {
                bsys::cublasGemmEx(h.0, t, nn, ni, mi, ki, a, w.0 as *const _, ty, ki, x as *const _, ty, ki, b, out.0 as *mut _, ty, ni, compute, algo)
            } else {
                bsys::cublasGemmStridedBatchedEx(
                    h.0, t, nn, ni, mi, ki, a, w.0 as *const _, ty, ki, w.1, x as *const _, ty, ki, 0, b, out.0 as *mut _, ty, ni,
                    out.1, batch, compute, algo,
                )
            }
        };
        if status != bsys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(dev_err(op, format!("cuBLAS GEMM ({dtype}, M={m} N={n} K={k}, batch {batch}) failed: {status:?}")));
        }
        Ok(())
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        if let Ok(h) = self.handle.lock() {
            // SAFETY: the handle was created in `new` and is destroyed once.
            let _ = unsafe { cudarc::cublas::result::destroy_handle(h.0) };
        }
    }
}
