//! `qembedding`: `out[t] = dequant(table[ids[t]]) * scale` for a table in a GGUF block format
//! (`gguf_blocks.wgsl`, format `QT`; ggml's get_rows). Alias O (output storage).
//!
//! One thread per (token, quarter of a 32-element unit): 8 values. A table larger than one
//! storage binding is bound in row chunks `row0 .. row0 + rows` (row r at byte r * row_bytes);
//! each dispatch writes the tokens whose id falls in its chunk, and the `last` chunk also
//! zero-fills ids past the table (never reached when ids were validated on the host).

struct Params {
    tokens: u32,
    hidden: u32,
    row0: u32,
    rows: u32,
    scale: f32,
    last: u32,
    row_bytes: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<O>;

/// Word i of the table's blocks (what `gguf_blocks.wgsl` reads).
fn wl(i: u32) -> u32 {
    return wq[i];
}

@compute @workgroup_size(WG)
fn qembedding(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let quarters = p.hidden / 8u;
    let i = linear_wg(wg, nwg) * WG + li;
    if (i >= p.tokens * quarters) {
        return;
    }
    let t = i / quarters;
    let g = i - t * quarters;
    let u = g / 4u;
    let q = g % 4u;
    let id = ids[t];
    let base = t * p.hidden + u * 32u;
    let pos = pos8(q);
    if (id >= p.row0 && id - p.row0 < p.rows) {
        let d = deq8((id - p.row0) * p.row_bytes, u, q);
        for (var j = 0u; j < 4u; j = j + 1u) {
            out[base + pos.x + j] = O(d.a[j] * p.scale);
            out[base + pos.y + j] = O(d.b[j] * p.scale);
        }
    } else if (p.last != 0u && id >= p.row0 + p.rows) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            out[base + pos.x + j] = O(0.0);
            out[base + pos.y + j] = O(0.0);
        }
    }
}
