//! `sample`: one token per row of logits [M, V] under the row's temperature / top-k / top-p /
//! min-p and its own uniform draw (`crate::sample::sample_row` is the reference). One
//! workgroup per row; no sorting: every cut is a threshold on the order key of the logits,
//! found by bisection over the 32 key bits (one pass over the row per bit). Alias: L.
//!
//! ```text
//! m = max (NaN never wins)                       T < 1e-5: first index of m, done
//! w_i = exp((x_i - m) / T)                       (w = 0 or NaN: not a candidate)
//! order   key desc, then id asc (the reference's sort); every cut keeps a prefix of it:
//!         all keys above K, and the ids <= I of key K   (found by bisection on K, then on I)
//! top-k   K = k-th largest key; I = the id of the (k - #{key > K})-th token of key K
//! top-p   K = smallest key with mass{key > K} < top_p * mass; ceil((limit - above) / w_K)
//!         of its ties stay
//! min-p   keep w >= min_p                        (w_max = 1)
//! draw    goal = u * mass{kept}; K = largest key with mass{kept, key >= K} > goal; the
//!         floor((goal - mass{key > K}) / w_K)-th kept tie of K (the inverse CDF, in order)
//! ```
//! Masses are f32 sums (the reference uses f64): a draw or a top-p limit within ~1e-6 of the
//! mass from a CDF boundary may land on the neighbouring token.

struct Params {
    rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
}

/// Per-row arguments (32 bytes).
struct RowArgs {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    uniform: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<L>;
@group(0) @binding(2) var<storage, read> args: array<RowArgs>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> bc_f: f32;
var<workgroup> bc_u: u32;
var<workgroup> row_args: RowArgs;

/// Below every logit that matters (not -f32::MAX: some WGSL front ends reject its decimal form).
const NEG_INF: f32 = -3.0e38;

/// Order-preserving map of a float to u32 (larger float, larger key).
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn sum_f(li: u32, v: f32) -> f32 {
    red_f[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red_f[li] = red_f[li] + red_f[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        bc_f = red_f[0];
    }
    return workgroupUniformLoad(&bc_f);
}

fn max_f(li: u32, v: f32) -> f32 {
    red_f[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red_f[li] = max(red_f[li], red_f[li + s]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        bc_f = red_f[0];
    }
    return workgroupUniformLoad(&bc_f);
}

fn sum_u(li: u32, v: u32) -> u32 {
    red_u[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red_u[li] = red_u[li] + red_u[li + s];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        bc_u = red_u[0];
    }
    return workgroupUniformLoad(&bc_u);
}

fn min_u(li: u32, v: u32) -> u32 {
    red_u[li] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            red_u[li] = min(red_u[li], red_u[li + s]);
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        bc_u = red_u[0];
    }
    return workgroupUniformLoad(&bc_u);
}

/// A token's weight, 0 for NaN (not a candidate).
fn weight(v: f32, m: f32, t: f32) -> f32 {
    if (is_nan_f32(v)) {
        return 0.0;
    }
    return exp((v - m) / t);
}

/// What the cuts so far keep: a prefix of the order (key desc, id asc) — every key above `k`,
/// and ids <= `i` of key `k` — intersected with w >= min_w, w > 0.
struct Cut {
    k: u32,
    i: u32,
    min_w: f32,
}

fn kept(w: f32, key: u32, id: u32, c: Cut) -> bool {
    return w > 0.0 && w >= c.min_w && (key > c.k || (key == c.k && id <= c.i));
}

/// The float whose order key is `k` (inverse of key_of).
fn value_of(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

/// #{kept, key >= t}.
fn count_ge(li: u32, base: u32, m: f32, temp: f32, c: Cut, t: u32) -> u32 {
    var n = 0u;
    for (var i = li; i < p.vocab; i = i + WG) {
        let v = f32(logits[base + i]);
        let k = key_of(v);
        if (kept(weight(v, m, temp), k, i, c) && k >= t) {
            n = n + 1u;
        }
    }
    return sum_u(li, n);
}

/// #{kept, key == t, id <= last}.
fn count_tied(li: u32, base: u32, m: f32, temp: f32, c: Cut, t: u32, last: u32) -> u32 {
    var n = 0u;
    for (var i = li; i < p.vocab; i = i + WG) {
        let v = f32(logits[base + i]);
        if (key_of(v) == t && i <= last && kept(weight(v, m, temp), t, i, c)) {
            n = n + 1u;
        }
    }
    return sum_u(li, n);
}

/// The id of the `r`-th (1-based) kept token of key `t` in id order.
fn nth_tied(li: u32, base: u32, m: f32, temp: f32, c: Cut, t: u32, r: u32) -> u32 {
    // Largest `last` with fewer than r such tokens at ids <= last; the answer is last + 1.
    var last = 0u;
    let below_all = count_tied(li, base, m, temp, c, t, 0u) >= r;
    let nbits = 32u - countLeadingZeros(p.vocab);
    for (var b = nbits; b > 0u; b = b - 1u) {
        let cand = last | (1u << (b - 1u));
        if (count_tied(li, base, m, temp, c, t, cand) < r) {
            last = cand;
        }
    }
    return select(last + 1u, 0u, below_all);
}

/// mass{kept, key >= t} (`strict`: key > t).
fn mass_ge(li: u32, base: u32, m: f32, temp: f32, c: Cut, t: u32, strict: bool) -> f32 {
    var s = 0.0;
    for (var i = li; i < p.vocab; i = i + WG) {
        let v = f32(logits[base + i]);
        let k = key_of(v);
        let w = weight(v, m, temp);
        if (kept(w, k, i, c) && (k > t || (!strict && k == t))) {
            s = s + w;
        }
    }
    return sum_f(li, s);
}

/// Largest key t with mass{kept, key >= t} (or key > t with `strict`) above `x` (`or_equal`:
/// at least `x`); 0 if none.
fn key_with_mass_above(li: u32, base: u32, m: f32, temp: f32, c: Cut, x: f32, strict: bool, or_equal: bool) -> u32 {
    var t = 0u;
    for (var b = 32u; b > 0u; b = b - 1u) {
        let cand = t | (1u << (b - 1u));
        let s = mass_ge(li, base, m, temp, c, cand, strict);
        if (s > x || (or_equal && s == x)) {
            t = cand;
        }
    }
    return t;
}

/// The earlier (smaller prefix) of two cuts.
fn earlier(a: Cut, b: Cut) -> Cut {
    if (a.k > b.k || (a.k == b.k && a.i < b.i)) {
        return a;
    }
    return b;
}

@compute @workgroup_size(WG)
fn sample(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row = linear_wg(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.vocab;
    if (li == 0u) {
        row_args = args[row];
    }
    let a = workgroupUniformLoad(&row_args);

    var local_max = NEG_INF;
    for (var i = li; i < p.vocab; i = i + WG) {
        let v = f32(logits[base + i]);
        if (!is_nan_f32(v)) {
            local_max = max(local_max, v);
        }
    }
    // A row of only -inf / NaN has no candidates: it takes its argmax.
    let m = max_f(li, local_max);
    let all_masked = !(m > NEG_INF);
    if (a.temperature < 1e-5 || all_masked) {
        var id = 0xffffffffu;
        for (var i = li; i < p.vocab; i = i + WG) {
            if (f32(logits[base + i]) == m) {
                id = min(id, i);
            }
        }
        id = min_u(li, id);
        if (li == 0u) {
            out[row] = select(id, 0u, id == 0xffffffffu);
        }
        return;
    }
    let temp = a.temperature;
    var c = Cut(0u, 0xffffffffu, 0.0);

    if (a.top_k > 0u && a.top_k < p.vocab) {
        // The k-th key, then the lowest ids of its ties up to k tokens in all.
        var t = 0u;
        for (var b = 32u; b > 0u; b = b - 1u) {
            let cand = t | (1u << (b - 1u));
            if (count_ge(li, base, m, temp, c, cand) >= a.top_k) {
                t = cand;
            }
        }
        let above = select(count_ge(li, base, m, temp, c, t + 1u), 0u, t == 0xffffffffu);
        if (a.top_k > above) {
            c = Cut(t, nth_tied(li, base, m, temp, c, t, a.top_k - above), 0.0);
        }
    }
    if (a.top_p < 1.0) {
        let limit = a.top_p * mass_ge(li, base, m, temp, c, 0u, false);
        // Token j stays while the mass before it (in order) is below the limit. The last key
        // level that stays is the smallest t with mass{key > t} < limit; of its ties (equal
        // weights w) the first ceil((limit - above) / w) stay.
        var t = key_with_mass_above(li, base, m, temp, c, limit, true, true);
        if (t < 0xffffffffu && mass_ge(li, base, m, temp, c, t, true) >= limit) {
            t = t + 1u;
        }
        if (mass_ge(li, base, m, temp, c, 0u, true) < limit) {
            t = 0u;
        }
        t = min(t, key_of(m));
        // t may be no token's key: move down to the next key that has tokens.
        let tk = key_with_mass_above(li, base, m, temp, c, mass_ge(li, base, m, temp, c, t, false), false, true);
        let above = mass_ge(li, base, m, temp, c, tk, true);
        let w = weight(value_of(tk), m, temp);
        let r = max(1u, u32(ceil((limit - above) / w)));
        let tied = count_tied(li, base, m, temp, c, tk, 0xffffffffu);
        if (tied > 0u) {
            c = earlier(c, Cut(tk, nth_tied(li, base, m, temp, c, tk, min(r, tied)), 0.0));
        }
    }
    if (a.min_p > 0.0) {
        c.min_w = a.min_p;
    }
    // The inverse CDF in order: the key level holding the draw, then the tie at its offset.
    let goal = a.uniform * mass_ge(li, base, m, temp, c, 0u, false);
    let t = key_with_mass_above(li, base, m, temp, c, goal, false, false);
    let above = mass_ge(li, base, m, temp, c, t, true);
    let tied = count_tied(li, base, m, temp, c, t, 0xffffffffu);
    var id = 0xffffffffu;
    if (tied > 0u) {
        let j = u32(max(0.0, floor((goal - above) / weight(value_of(t), m, temp))));
        id = nth_tied(li, base, m, temp, c, t, min(j, tied - 1u) + 1u);
    } else {
        id = nth_tied(li, base, m, temp, c, key_of(m), 1u);
    }
    if (li == 0u) {
        out[row] = select(id, 0u, id >= p.vocab);
    }
}
