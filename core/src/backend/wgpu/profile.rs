//! Where a step's time goes (`TESSERA_WGPU_PROFILE=1`, native only): host time to record a
//! submission, time in `queue.submit`, time waiting for the read-back, and GPU time per
//! shader entry from timestamps written after every dispatch (where the adapter has
//! `TIMESTAMP_QUERY_INSIDE_PASSES`). A summary is logged (`tracing::info`, "wgpu profile")
//! at powers of two and every `REPORT_EVERY` read-backs, cumulative after the first
//! `WARMUP` read-backs (compilation, prefill).
//!
//! ```text
//! pass begin ─ ts ─ dispatch a ─ ts ─ dispatch b ─ ts ... pass end ─ (copy) ─ pass begin ─ ts
//!   gpu[a] += ts1 - ts0, gpu[b] += ts2 - ts1; first ts of a later pass - last ts = "between"
//! submit: resolve the timestamps into a mappable buffer; after the read-back's wait: map it
//! ```
//! Timestamps between dispatches include the barrier and launch gap before the next one,
//! which is what a step of hundreds of tiny dispatches pays for.
//!
//! `TESSERA_WGPU_PROFILE=step`: two timestamps a submission instead, one in a command buffer
//! submitted ahead of it and one after its last command (the adapter's
//! `TIMESTAMP_QUERY_INSIDE_ENCODERS`), nothing between dispatches, replays still prepared
//! ahead: per read-back, GPU busy = sum of end - start, GPU idle = sum of start - the
//! previous submission's end (the host's record / submit / read-back gap as the GPU sees it).

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;
#[cfg(target_arch = "wasm32")]
pub(crate) use web::*;

/// Whether the environment asks for profiling (`TESSERA_WGPU_PROFILE` set, not "0").
pub(crate) fn requested() -> bool {
    cfg!(not(target_arch = "wasm32")) && std::env::var("TESSERA_WGPU_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether the profile includes GPU timestamps after every dispatch
/// (`TESSERA_WGPU_PROFILE=host`: host times only, so replays are still prepared ahead as
/// without profiling; `=step`: see `step_requested`).
pub(crate) fn timestamps_requested() -> bool {
    requested() && std::env::var("TESSERA_WGPU_PROFILE").is_ok_and(|v| v != "host" && v != "step")
}

/// Whether the profile is `TESSERA_WGPU_PROFILE=step`: host times and two GPU timestamps a
/// submission (its start and end), none between dispatches.
pub(crate) fn step_requested() -> bool {
    requested() && std::env::var("TESSERA_WGPU_PROFILE").is_ok_and(|v| v == "step")
}

#[cfg(target_arch = "wasm32")]
mod web {
    /// No profiling in the browser (no monotonic clock in `std` there).
    #[derive(Default)]
    pub(crate) struct Profiler;

    #[derive(Default)]
    pub(crate) struct Pending;

    impl Profiler {
        pub fn new(_gpu: &super::super::device::Gpu) -> Self {
            Profiler
        }
        pub fn on(&self) -> bool {
            false
        }
        pub fn timestamps(&self) -> bool {
            false
        }
        pub fn recorded(&self, _p: &mut Pending) {}
        pub fn pass_begin(&self, _p: &mut Pending, _pass: &mut wgpu::ComputePass<'static>) {}
        pub fn after_dispatch(&self, _p: &mut Pending, _pass: &mut wgpu::ComputePass<'static>, _label: &'static str) {}
        pub fn before_submit(&self, _gpu: &super::super::device::Gpu, _p: &mut Pending, _enc: &mut wgpu::CommandEncoder) -> Option<wgpu::CommandBuffer> {
            None
        }
        pub fn finished(&self, _p: &mut Pending) {}
        pub fn submitted(&self, _p: &mut Pending) {}
        pub fn waited(&self, _gpu: &super::super::device::Gpu, _p: &mut Pending) {}
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::super::device::Gpu;

    /// Timestamps one submission may hold (wgpu's limit per query set).
    const CAPACITY: u32 = wgpu::QUERY_SET_MAX_QUERIES;
    /// Read-backs between two summaries (and at powers of two).
    const REPORT_EVERY: u64 = 128;
    /// Read-backs not counted at the start.
    const WARMUP: u64 = 8;

    /// Per-submission profiling state, kept in the recorder's pending state.
    #[derive(Default)]
    pub(crate) struct Pending {
        /// When the first command of the submission being recorded was recorded.
        started: Option<Instant>,
        submit_at: Option<Instant>,
        finished_at: Option<Instant>,
        /// Label of every timestamp written so far in this submission ("" = pass begin).
        labels: Vec<&'static str>,
        /// Resolved timestamps of submitted work, waiting to be mapped.
        resolved: Vec<(wgpu::Buffer, Vec<&'static str>)>,
        /// Step mode: each submission's (start, end) timestamps, waiting to be mapped.
        steps: Vec<wgpu::Buffer>,
    }

    #[derive(Default)]
    struct Stats {
        submissions: u64,
        reads: u64,
        dispatches: u64,
        record: Duration,
        submit: Duration,
        /// The `queue.submit` call alone (the rest of `submit` is finishing the encoder).
        queue_submit: Duration,
        wait: Duration,
        /// Read-back to read-back (one engine step each, normally; counted after the warm-up).
        step: Duration,
        last_read: Option<Instant>,
        /// The warm-up read-backs were dropped.
        warm: bool,
        gpu: HashMap<&'static str, (u64, f64)>,
        /// Step mode: GPU time inside submissions, between them (ns), and the last end tick.
        busy: f64,
        idle: f64,
        last_end: Option<u64>,
    }

    pub(crate) struct Profiler {
        on: bool,
        queries: Option<(wgpu::QuerySet, wgpu::Buffer, f64)>,
        /// Step mode: a query set of 2 (start, end), its resolve buffer, ns per tick.
        steps: Option<(wgpu::QuerySet, wgpu::Buffer, f64)>,
        stats: Mutex<Stats>,
    }

    impl Profiler {
        pub fn new(gpu: &Gpu) -> Self {
            let on = gpu.profile;
            let step = on && super::step_requested() && gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);
            let timestamps = on && !step && gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
            let steps = step.then(|| {
                let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("tessera step profile"), ty: wgpu::QueryType::Timestamp, count: 2 });
                let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera step profile resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (set, resolve, f64::from(gpu.queue.get_timestamp_period()))
            });
            let queries = timestamps.then(|| {
                let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("tessera profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: CAPACITY,
                });
                let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera profile resolve"),
                    size: u64::from(CAPACITY) * 8,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                (set, resolve, f64::from(gpu.queue.get_timestamp_period()))
            });
            if on {
                tracing::info!(timestamps, step, "wgpu profile on");
            }
            Profiler { on, queries, steps, stats: Mutex::default() }
        }

        pub fn on(&self) -> bool {
            self.on
        }

        /// Whether GPU timestamps are written.
        pub fn timestamps(&self) -> bool {
            self.queries.is_some()
        }

        /// A command is being recorded into the pending submission.
        pub fn recorded(&self, p: &mut Pending) {
            if self.on && p.started.is_none() {
                p.started = Some(Instant::now());
            }
        }

        fn stamp(&self, p: &mut Pending, pass: &mut wgpu::ComputePass<'static>, label: &'static str) {
            if let Some((set, _, _)) = &self.queries {
                if (p.labels.len() as u32) < CAPACITY {
                    pass.write_timestamp(set, p.labels.len() as u32);
                    p.labels.push(label);
                }
            }
        }

        pub fn pass_begin(&self, p: &mut Pending, pass: &mut wgpu::ComputePass<'static>) {
            self.stamp(p, pass, "");
        }

        pub fn after_dispatch(&self, p: &mut Pending, pass: &mut wgpu::ComputePass<'static>, label: &'static str) {
            if let Ok(mut s) = self.stats.lock() {
                s.dispatches += u64::from(self.on);
            }
            self.stamp(p, pass, label);
        }

        /// The pass is ended; resolves this submission's timestamps into a mappable buffer.
        /// Step mode: returns the command buffer to submit first (the start timestamp).
        pub fn before_submit(&self, gpu: &Gpu, p: &mut Pending, enc: &mut wgpu::CommandEncoder) -> Option<wgpu::CommandBuffer> {
            if !self.on {
                return None;
            }
            p.submit_at = Some(Instant::now());
            if let Some((set, resolve, _)) = &self.steps {
                let mut front = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera step start") });
                front.write_timestamp(set, 0);
                enc.write_timestamp(set, 1);
                let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera step profile read-back"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.resolve_query_set(set, 0..2, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, &staging, 0, 16);
                p.steps.push(staging);
                return Some(front.finish());
            }
            if let (Some((set, resolve, _)), false) = (&self.queries, p.labels.is_empty()) {
                let n = p.labels.len() as u32;
                let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera profile read-back"),
                    size: u64::from(n) * 8,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.resolve_query_set(set, 0..n, resolve, 0);
                enc.copy_buffer_to_buffer(resolve, 0, &staging, 0, u64::from(n) * 8);
                p.resolved.push((staging, std::mem::take(&mut p.labels)));
            }
            None
        }

        /// The command buffers are finished (encoded); `queue.submit` follows.
        pub fn finished(&self, p: &mut Pending) {
            if self.on {
                p.finished_at = Some(Instant::now());
            }
        }

        pub fn submitted(&self, p: &mut Pending) {
            if !self.on {
                return;
            }
            let now = Instant::now();
            if let Ok(mut s) = self.stats.lock() {
                s.submissions += 1;
                if let (Some(a), Some(b)) = (p.started.take(), p.submit_at) {
                    s.record += b - a;
                }
                if let Some(b) = p.submit_at {
                    s.submit += now - b;
                }
                if let Some(f) = p.finished_at.take() {
                    s.queue_submit += now - f;
                }
            }
        }

        /// A read-back's wait ended (all submitted work is done): maps the timestamps.
        pub fn waited(&self, gpu: &Gpu, p: &mut Pending) {
            if !self.on {
                return;
            }
            let now = Instant::now();
            let resolved = std::mem::take(&mut p.resolved);
            let period = self.queries.as_ref().map_or(1.0, |q| q.2);
            let mut times: Vec<(&'static str, f64)> = Vec::new();
            for (buf, labels) in resolved {
                buf.slice(..).map_async(wgpu::MapMode::Read, |_| {});
                if gpu.device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
                    continue;
                }
                let Ok(view) = buf.slice(..).get_mapped_range() else { continue };
                let ticks: Vec<u64> = view.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                for i in 1..ticks.len() {
                    let label = if labels[i].is_empty() { "(between passes)" } else { labels[i] };
                    times.push((label, ticks[i].saturating_sub(ticks[i - 1]) as f64 * period));
                }
                drop(view);
                buf.unmap();
            }
            let mut spans: Vec<(u64, u64)> = Vec::new();
            for buf in std::mem::take(&mut p.steps) {
                buf.slice(..).map_async(wgpu::MapMode::Read, |_| {});
                if gpu.device.poll(wgpu::PollType::wait_indefinitely()).is_err() {
                    continue;
                }
                let Ok(view) = buf.slice(..).get_mapped_range() else { continue };
                let t: Vec<u64> = view.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                spans.push((t[0], t[1]));
                drop(view);
                buf.unmap();
            }
            let Ok(mut s) = self.stats.lock() else { return };
            let step_period = self.steps.as_ref().map_or(1.0, |q| q.2);
            for (start, end) in spans {
                s.busy += end.saturating_sub(start) as f64 * step_period;
                if let Some(last) = s.last_end {
                    s.idle += start.saturating_sub(last) as f64 * step_period;
                }
                s.last_end = Some(end);
            }
            if let Some(b) = p.submit_at.take() {
                s.wait += now.saturating_duration_since(b);
            }
            if let Some(last) = s.last_read {
                s.step += now - last;
            }
            s.last_read = Some(Instant::now());
            s.reads += 1;
            if s.reads == WARMUP && !s.warm {
                // Forget the warm-up (pipeline compilation, prefill, graph recording).
                *s = Stats { warm: true, last_read: s.last_read, last_end: s.last_end, ..Stats::default() };
                return;
            }
            for (label, ns) in times {
                let e = s.gpu.entry(label).or_default();
                e.0 += 1;
                e.1 += ns;
            }
            if s.reads.is_multiple_of(REPORT_EVERY) || s.reads.is_power_of_two() {
                report(&s);
            }
        }
    }

    fn report(s: &Stats) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / s.reads.max(1) as f64;
        let gpu_total: f64 = s.gpu.values().map(|e| e.1).sum();
        let mut rows: Vec<_> = s.gpu.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let table: Vec<String> = rows
            .iter()
            .map(|(label, (n, ns))| format!("{label} {:.0}us/{:.1}us x{}", ns / 1e3 / s.reads.max(1) as f64, ns / 1e3 / *n as f64, n / s.reads.max(1)))
            .collect();
        tracing::info!(
            "wgpu profile: {} read-backs, {} submissions, {:.0} dispatches/read-back; per read-back (us): step {:.0}, \
             record {:.0}, submit {:.0} (queue.submit {:.0}), wait {:.0}, gpu (timestamps) {:.0}, gpu busy {:.0}, gpu idle {:.0} (step mode); \
             gpu per entry (per read-back/per dispatch x count): {}",
            s.reads,
            s.submissions,
            s.dispatches as f64 / s.reads.max(1) as f64,
            per(s.step),
            per(s.record),
            per(s.submit),
            per(s.queue_submit),
            per(s.wait),
            gpu_total / 1e3 / s.reads.max(1) as f64,
            s.busy / 1e3 / s.reads.max(1) as f64,
            s.idle / 1e3 / s.reads.max(1) as f64,
            table.join(", ")
        );
    }
}
