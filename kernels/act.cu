//! Gated activations: `out = act(gate) * up`, elementwise, f32 math (torch's formulas).
//!
//! ```text
//! act 0 silu:       g / (1 + exp(-g))
//! act 1 gelu_tanh:  0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g³))), as g / (1 + exp(-2 ·))
//! act 2 gelu (erf): g 0.5 (1 + erf(g / sqrt(2)))
//! ```
//! Grid-stride over the flat tensors; 16-byte accesses when the length allows. `activate` lives
//! in common.cuh (the gated GEMV of gemv.cu applies it in its epilogue too).

template <typename T>
__device__ __forceinline__ void act_mul_impl(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                                             u64 n, u32 act, u32 vec_ok) {
    constexpr int N = Vec16<T>::N;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    if (vec_ok) {
        for (u64 v = (u64)blockIdx.x * blockDim.x + threadIdx.x; v * N < n; v += stride) {
            float g[N], u[N];
            load_vec(gate + v * N, g);
            load_vec(up + v * N, u);
#pragma unroll
            for (int k = 0; k < N; ++k) g[k] = activate(g[k], act) * u[k];
            store_vec(out + v * N, g);
        }
    } else {
        for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            out[i] = from_f32<T>(activate(to_f32(gate[i]), act) * to_f32(up[i]));
    }
}

#define ACT_MUL(S, T)                                                                                \
    extern "C" __global__ void act_mul_##S(const T* gate, const T* up, T* out, u64 n, u32 act,       \
                                           u32 vec_ok) {                                             \
        act_mul_impl<T>(gate, up, out, n, act, vec_ok);                                              \
    }
FOR_EACH_FLOAT(ACT_MUL)
