//! Subgroup reductions, appended to the kernels that reduce (`matmul_many.wgsl`'s lane
//! reduction, `norm_matmul.wgsl`'s sum of squares, `attention.wgsl`'s block reductions)
//! when the device has wgpu's `SUBGROUP` feature with a fixed subgroup size SG (a power of
//! two; `kernels::NO_SUBGROUP` stands in otherwise, and every use is behind `SG > 0u`).
//! Subgroups are taken to be runs of SG consecutive `local_invocation_index` values of a
//! 1-D workgroup, as every Vulkan / Metal / D3D12 driver lays them out.

/// Sum of `v` over the subgroup.
fn sg_add(v: f32) -> f32 {
    return subgroupAdd(v);
}

/// Largest `v` of the subgroup.
fn sg_max(v: f32) -> f32 {
    return subgroupMax(v);
}

/// `v` of the invocation whose subgroup index is this one's xor `mask`.
fn sg_xor(v: f32, mask: u32) -> f32 {
    return subgroupShuffleXor(v, mask);
}
