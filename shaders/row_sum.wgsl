//! The sum of squares' reduction that RMSNorm (`rms_norm.wgsl`) and the decode matvecs' norm
//! prologue (`norm_matmul.wgsl`) share, so that both round alike (appended to both): the
//! values of threads 0 .. n (n a power of two <= WG; the workgroup's other threads hold
//! zeros) added by subgroups of `sg` lanes then the n / sg subgroup sums in order (one
//! barrier; `ops::norm_subgroup` picks sg, a size dividing n), or with sg = 0 by a tree in
//! `partial` (log2 n barriers). Every thread gets the total; `partial` is the caller's again
//! after its next barrier.

fn row_sum(li: u32, v: f32, n: u32, sg: u32) -> f32 {
    if (sg > 0u) {
        let s = sg_add(v);
        if (li % sg == 0u) {
            partial[li / sg] = s;
        }
        workgroupBarrier();
        var total = partial[0];
        for (var j = 1u; j < n / sg; j = j + 1u) {
            total = total + partial[j];
        }
        return total;
    }
    partial[li] = v;
    workgroupBarrier();
    for (var s = n / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            partial[li] = partial[li] + partial[li + s];
        }
        workgroupBarrier();
    }
    return partial[0];
}
