//! What one compute dispatch costs on this machine's wgpu adapter, measured with raw wgpu
//! (no tessera op code): N dispatches recorded with prepared bind groups in one pass, one
//! submit, GPU time from pass timestamps where the adapter has TIMESTAMP_QUERY (else wall
//! time from submit to completion), per dispatch. Run by scripts/wgpu-bench/bench.sh:
//!
//! ```text
//! cargo run --release -p tessera-core --features wgpu --example wgpu_dispatch_cost
//! kernel  touch   one thread writes one word (the dispatch itself)
//!         matvec  y[576] = W[576, 576] · x (f32), 72 workgroups of 256 = matmul_vec's shape
//! deps    indep   dispatch i writes buffer i (wgpu puts no barrier between them)
//!         same    every dispatch writes one buffer (a barrier after each: write -> write)
//!         chain   dispatch i reads buffer i and writes buffer i + 1 (a barrier after each:
//!                 write -> read, as between a decode step's dependent ops)
//!         passes  chain, one compute pass per dispatch
//! zero    workgroup memory zero-initialised (wgpu's default) or not
//! ```

use std::time::Instant;

const N: usize = 600;
const K: u32 = 576;

const SHADER: &str = r#"
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;

@compute @workgroup_size(64)
fn touch(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x == 0u) {
        dst[0] = src[0] + 1.0;
    }
}

const KK: u32 = 576u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lane = li % 32u;
    let c = wg.x * 8u + li / 32u;
    var acc = 0.0;
    for (var k = 4u * lane; k < KK; k = k + 128u) {
        let xv = vec4<f32>(src[k], src[k + 1u], src[k + 2u], src[k + 3u]);
        let wb = c * KK + k;
        acc = acc + dot(xv, vec4<f32>(w[wb], w[wb + 1u], w[wb + 2u], w[wb + 3u]));
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s = s / 2u) {
        if (lane < s) {
            partial[li] = partial[li] + partial[li + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u) {
        dst[c] = partial[li] * 0.01;
    }
}
"#;

struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    timestamps: bool,
}

fn open() -> Gpu {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .expect("a wgpu adapter");
    let info = adapter.get_info();
    let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    println!("adapter: {} ({:?}, driver {} {}), timestamps: {timestamps}", info.name, info.backend, info.driver, info.driver_info);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: None,
        required_features: if timestamps { wgpu::Features::TIMESTAMP_QUERY } else { wgpu::Features::empty() },
        required_limits: adapter.limits(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .expect("a device");
    Gpu { device, queue, timestamps }
}

fn layout(d: &wgpu::Device) -> wgpu::BindGroupLayout {
    let entry = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &[entry(0, true), entry(1, false), entry(2, true)] })
}

fn pipeline(g: &Gpu, bgl: &wgpu::BindGroupLayout, entry: &str, zero: bool) -> wgpu::ComputePipeline {
    let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(SHADER.into()) });
    let pl = g.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: None, bind_group_layouts: &[Some(bgl)], immediate_size: 0 });
    g.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: Some(&pl),
        module: &module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { zero_initialize_workgroup_memory: zero, ..Default::default() },
        cache: None,
    })
}

/// Seconds per dispatch of one run: GPU time of the passes (timestamps) or wall time.
fn run(g: &Gpu, pipe: &wgpu::ComputePipeline, groups: &[wgpu::BindGroup], workgroups: u32, per_pass: bool) -> f64 {
    let qs = g.timestamps.then(|| g.device.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 }));
    let mut enc = g.device.create_command_encoder(&Default::default());
    let passes = if per_pass { groups.len() } else { 1 };
    for p in 0..passes {
        let ts = qs.as_ref().filter(|_| p == 0 || p + 1 == passes).map(|q| wgpu::ComputePassTimestampWrites {
            query_set: q,
            beginning_of_pass_write_index: (p == 0).then_some(0),
            end_of_pass_write_index: (p + 1 == passes).then_some(1),
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: ts });
        pass.set_pipeline(pipe);
        let range = if per_pass { p..p + 1 } else { 0..groups.len() };
        for bg in &groups[range] {
            pass.set_bind_group(0, bg, &[]);
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
    }
    let read = g.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    if let Some(q) = &qs {
        let resolve = g.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 16, usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        enc.resolve_query_set(q, 0..2, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
    }
    let t0 = Instant::now();
    g.queue.submit([enc.finish()]);
    read.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    g.device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let wall = t0.elapsed().as_secs_f64();
    let secs = if g.timestamps {
        let v = read.slice(..).get_mapped_range().expect("mapped");
        let t = |i: usize| u64::from_le_bytes(v[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        (t(1).saturating_sub(t(0))) as f64 * f64::from(g.queue.get_timestamp_period()) * 1e-9
    } else {
        wall
    };
    secs / groups.len() as f64
}

fn main() {
    let g = open();
    let bgl = layout(&g.device);
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    let buf = |bytes: u64| g.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage: storage, mapped_at_creation: false });
    let bufs: Vec<wgpu::Buffer> = (0..=N).map(|_| buf(u64::from(K) * 4)).collect();
    let w = buf(u64::from(K * K) * 4);
    let wv: Vec<u8> = (0..K * K).flat_map(|i| (((i * 7919) % 1000) as f32 * 1e-3 - 0.5).to_le_bytes()).collect();
    g.queue.write_buffer(&w, 0, &wv);
    let bind = |src: &wgpu::Buffer, dst: &wgpu::Buffer| {
        g.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &bgl,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: w.as_entire_binding() },
            ],
        })
    };
    let indep: Vec<_> = (0..N).map(|i| bind(&bufs[N], &bufs[i])).collect();
    let same: Vec<_> = (0..N).map(|_| bind(&bufs[N], &bufs[0])).collect();
    let chain: Vec<_> = (0..N).map(|i| bind(&bufs[i], &bufs[i + 1])).collect();
    let what = if g.timestamps { "GPU time (pass timestamps)" } else { "wall time" };
    println!("dispatch cost, µs per dispatch ({what}; {N} dispatches, median of 5):");
    println!("{:<8} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8}", "kernel", "groups", "zero", "indep", "same", "chain", "passes");
    for (entry, sizes) in [("touch", &[1u32, 72, 1024][..]), ("matvec", &[72u32][..])] {
        for zero in [true, false] {
            let pipe = pipeline(&g, &bgl, entry, zero);
            for &groups in sizes {
                let mut row = Vec::new();
                for (set, per_pass) in [(&indep, false), (&same, false), (&chain, false), (&chain, true)] {
                    let mut t: Vec<f64> = (0..6).map(|_| run(&g, &pipe, set, groups, per_pass)).skip(1).collect();
                    t.sort_by(f64::total_cmp);
                    row.push(t[t.len() / 2] * 1e6);
                }
                println!("{entry:<8} {groups:>6} {zero:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", row[0], row[1], row[2], row[3]);
            }
        }
    }
}
