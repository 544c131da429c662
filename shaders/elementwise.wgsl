//! Elementwise ops: `add` (a + b), `softcap` (tanh(a / cap) * cap), and `fill` (writes a
//! 32-bit pattern over a whole buffer: the NaN poisoning of outputs in tests).
//! Aliases: A, B (inputs), O (output).

struct Params {
    n: u32,
    cap: f32,
    word: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<A>;
@group(0) @binding(2) var<storage, read> b: array<B>;
@group(0) @binding(3) var<storage, read_write> out: array<O>;
@group(0) @binding(4) var<storage, read_write> words: array<u32>;

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i < p.n) {
        out[i] = O(f32(a[i]) + f32(b[i]));
    }
}

@compute @workgroup_size(WG)
fn softcap(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i < p.n) {
        out[i] = O(tanh_f32(f32(a[i]) / p.cap) * p.cap);
    }
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i < p.n) {
        words[i] = p.word;
    }
}
