//! Gated activations: `act_mul` = act(gate) * up with act = silu (0), gelu tanh (1) or
//! exact gelu (2), in torch's formulas (`act_f32`, common.wgsl;
//! `gated_matmul` applies the same one in its epilogue). Aliases: G (gate), U (up), O (output).

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

@compute @workgroup_size(WG)
fn act_mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i < p.n) {
        out[i] = O(act_f32(f32(gate[i]), p.act) * f32(up[i]));
    }
}
