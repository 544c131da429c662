//! The register tile both tiled matmuls share (`matmul_tiled`, `qmatmul_tiled`; appended to
//! their sources): a workgroup of TS x TS threads computes a BM x BN output tile, 4 x 4 per
//! thread (rows lid.y + i TS, columns lid.x + j TS), from BK staged columns of x and w in
//! `xs` [BK][BM] and `ws` [BK][BN]. The including shader sets BK, stages the tiles and
//! defines `store(r, c, acc)` and `p.m`, `p.nc`.

const BM: u32 = 4u * TS;
const BN: u32 = 4u * TS;

var<workgroup> xs: array<f32, BK * BM>;
var<workgroup> ws: array<f32, BK * BN>;

/// acc += the staged x tile times the staged w tile.
fn tile_accumulate(lid: vec3<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
        var a: array<f32, 4>;
        var b: array<f32, 4>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            a[i] = xs[kk * BM + lid.y + i * TS];
            b[i] = ws[kk * BN + lid.x + i * TS];
        }
        for (var i = 0u; i < 4u; i = i + 1u) {
            for (var j = 0u; j < 4u; j = j + 1u) {
                (*acc)[i * 4u + j] = (*acc)[i * 4u + j] + a[i] * b[j];
            }
        }
    }
}

/// Stores this thread's 4 x 4 block of the tile at (row0, col0), inside the output.
fn tile_store(row0: u32, col0: u32, lid: vec3<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            let r = row0 + lid.y + i * TS;
            let c = col0 + lid.x + j * TS;
            if (r < p.m && c < p.nc) {
                store(r, c, (*acc)[i * 4u + j]);
            }
        }
    }
}
