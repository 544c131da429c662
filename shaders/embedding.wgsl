//! Row gathers: `embedding` (out[t] = table[ids[t]] * scale), also used for `gather_rows`
//! (scale 1, exact), and `scatter_ids` (TAB = O = u32). Aliases: TAB (table storage), O
//! (output storage).
//!
//! A table larger than one storage binding is bound in row chunks `row0 .. row0 + rows`;
//! each dispatch writes the tokens whose id falls in its chunk, and the `last` chunk also
//! zero-fills ids past the table (never reached when ids were validated on the host).

struct Params {
    tokens: u32,
    hidden: u32,
    row0: u32,
    rows: u32,
    scale: f32,
    last: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<TAB>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<O>;

@compute @workgroup_size(WG)
fn embedding(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i >= p.tokens * p.hidden) {
        return;
    }
    let t = i / p.hidden;
    let c = i - t * p.hidden;
    let id = ids[t];
    if (id >= p.row0 && id - p.row0 < p.rows) {
        out[i] = O(f32(table[(id - p.row0) * p.hidden + c]) * p.scale);
    } else if (p.last != 0u && id >= p.row0 + p.rows) {
        out[i] = O(0.0);
    }
}

/// `out[ids[2i]] = table[ids[2i + 1]]` for i < tokens, TAB = O = u32: async scheduling feeds
/// the ids the previous step sampled into this step's input ids. `hidden` is out's length,
/// `rows` table's; out-of-range pairs are skipped.
@compute @workgroup_size(WG)
fn scatter_ids(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let i = linear_wg(wg, nwg) * WG + li;
    if (i >= p.tokens) {
        return;
    }
    let d = ids[2u * i];
    let s = ids[2u * i + 1u];
    if (d < p.hidden && s < p.rows) {
        out[d] = table[s];
    }
}
