//! Gated activations: `act_mul` = act(gate) * up with act = silu (0), gelu tanh (1) or
//! exact gelu (2), in torch's formulas. Aliases: G (gate), U (up), O (output).

struct Params {
    n: u32,
    act: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<G>;
@group(0) @binding(2) var<storage, read> up: array<U>;
@group(0) @binding(3) var<storage, read_write> out: array<O>;

fn act(g: f32) -> f32 {
    if (p.act == 0u) {
        return g / (1.0 + exp(-g));
    }
    if (p.act == 1u) {
        // torch: kBeta = sqrt(2) * (2 / sqrt(pi)) * 0.5, kKappa = 0.044715.
        let inner = 0.7978845608028654 * (g + 0.044715 * (g * g * g));
        return 0.5 * g * (1.0 + tanh_f32(inner));
    }
    return g * 0.5 * (1.0 + erf_f32(g * 0.7071067811865476));
}

@compute @workgroup_size(WG)
fn act_mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i < p.n) {
        out[i] = O(act(f32(gate[i])) * f32(up[i]));
    }
}
