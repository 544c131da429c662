//! `paged_attention`'s L2 prefetch (appended when the kernel sets PFN > 0, a decode step
//! whose op before it named the weights read next: `Backend::prefetch`). Workgroups past the
//! attention's own (index >= `p.pf_base`) read one word of every 32-byte sector of up to
//! eight weights (bindings 14 .. 21, PFS0 .. PFS7 sectors, PFW workgroups), so o_proj, the
//! MLP and the next layer's q/k/v find them in the GPU's L2 cache: a dependent matvec waits
//! on HBM's latency otherwise, and the attention leaves HBM idle. Each thread's loads are
//! independent (loops of constant trips) and XORed; nothing is written unless the XOR is all
//! ones, and then only to the sink (binding 22): the condition keeps the loads in the program.

@group(0) @binding(14) var<storage, read> pf0: array<u32>;
@group(0) @binding(15) var<storage, read> pf1: array<u32>;
@group(0) @binding(16) var<storage, read> pf2: array<u32>;
@group(0) @binding(17) var<storage, read> pf3: array<u32>;
@group(0) @binding(18) var<storage, read> pf4: array<u32>;
@group(0) @binding(19) var<storage, read> pf5: array<u32>;
@group(0) @binding(20) var<storage, read> pf6: array<u32>;
@group(0) @binding(21) var<storage, read> pf7: array<u32>;
@group(0) @binding(22) var<storage, read_write> pf_sink: array<u32>;

const PF_THREADS: u32 = PFW * WG;
/// Sectors of each weight.
const PFS: array<u32, 8> = array<u32, 8>(PFS0, PFS1, PFS2, PFS3, PFS4, PFS5, PFS6, PFS7);
/// Trips of the largest weight's loop (every weight's loop runs them, guarded).
const PFT: u32 = (max(max(max(PFS0, PFS1), max(PFS2, PFS3)), max(max(PFS4, PFS5), max(PFS6, PFS7))) + PF_THREADS - 1u) / PF_THREADS;

/// Word i of weight w.
fn pf_word(w: u32, i: u32) -> u32 {
    switch w {
        case 0u: { return pf0[i]; }
        case 1u: { return pf1[i]; }
        case 2u: { return pf2[i]; }
        case 3u: { return pf3[i]; }
        case 4u: { return pf4[i]; }
        case 5u: { return pf5[i]; }
        case 6u: { return pf6[i]; }
        default: { return pf7[i]; }
    }
}

fn prefetch_weights(e: u32, li: u32) {
    let g = e * WG + li;
    var acc = 0u;
    for (var w = 0u; w < PFN; w = w + 1u) {
        for (var u = 0u; u < PFT; u = u + 1u) {
            let s = g + u * PF_THREADS;
            if (s < PFS[w]) {
                acc = acc ^ pf_word(w, 8u * s);
            }
        }
    }
    if (acc == 0xffffffffu) {
        pf_sink[0] = acc;
    }
}
