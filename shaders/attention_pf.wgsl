//! `paged_attention`'s L2 prefetch (appended when the kernel sets PFN > 0, a decode step
//! whose op before it named the weights read next: `Backend::prefetch`). Workgroups past the
//! attention's own (index >= `p.pf_base`) read one word of every 32-byte sector of up to four
//! weights (bindings 14 .. 17, PFS0 .. PFS3 sectors, PFW workgroups), so o_proj and the MLP
//! that follow find them in the GPU's L2 cache: a dependent matvec waits on HBM's latency
//! otherwise, and the attention leaves HBM idle. Each thread's loads are independent
//! (constant trips) and XORed; nothing is written unless the XOR is all ones, and then only
//! to the sink (binding 18): the condition keeps the loads in the program.

@group(0) @binding(14) var<storage, read> pf0: array<u32>;
@group(0) @binding(15) var<storage, read> pf1: array<u32>;
@group(0) @binding(16) var<storage, read> pf2: array<u32>;
@group(0) @binding(17) var<storage, read> pf3: array<u32>;
@group(0) @binding(18) var<storage, read_write> pf_sink: array<u32>;

const PF_THREADS: u32 = PFW * WG;

/// Sectors [0, n) of one weight, thread g's share: trips of a constant count.
fn pf_trips(n: u32) -> u32 {
    return (n + PF_THREADS - 1u) / PF_THREADS;
}

fn prefetch_weights(e: u32, li: u32) {
    let g = e * WG + li;
    var acc = 0u;
    for (var u = 0u; u < pf_trips(PFS0); u = u + 1u) {
        let s = g + u * PF_THREADS;
        if (s < PFS0) {
            acc = acc ^ pf0[8u * s];
        }
    }
    for (var u = 0u; u < pf_trips(PFS1); u = u + 1u) {
        let s = g + u * PF_THREADS;
        if (s < PFS1) {
            acc = acc ^ pf1[8u * s];
        }
    }
    for (var u = 0u; u < pf_trips(PFS2); u = u + 1u) {
        let s = g + u * PF_THREADS;
        if (s < PFS2) {
            acc = acc ^ pf2[8u * s];
        }
    }
    for (var u = 0u; u < pf_trips(PFS3); u = u + 1u) {
        let s = g + u * PF_THREADS;
        if (s < PFS3) {
            acc = acc ^ pf3[8u * s];
        }
    }
    if (acc == 0xffffffffu) {
        pf_sink[0] = acc;
    }
}
