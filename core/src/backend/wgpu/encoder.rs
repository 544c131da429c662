//! Recording work: ops append dispatches to one pending command encoder (one open compute
//! pass) and nothing is submitted until a read-back (or a full parameter arena) needs it, so
//! a whole engine step is normally one submission. Also buffer allocation and `to_host`.
//!
//! ```text
//! op ─ alloc output (poison: + fill dispatch) ─ params → arena slot ─ bind group ─ dispatch
//!                                                   │ (arena full: flush, reuse the arena)
//! to_host ─ end pass ─ copy → staging ─ write arena, submit ─ map_async ─ (native: poll) ─ bytes
//! read_begin ─ end pass ─ copy → staging ─ write arena, submit (the next step is recorded
//!   behind it) ... to_host ─ map_async ─ (native: poll for that submission alone) ─ bytes
//! ```
//! The uniform parameters of every dispatch live in one arena buffer at aligned offsets; its
//! bytes are written with one `write_buffer` right before the submit, which the queue orders
//! before the submitted commands (and after earlier submissions, so the arena is reused).
//!
//! Graphs (the trait's decode-step graphs): between `begin_capture` and `end_capture` the
//! commands go to a list instead of the encoder, their parameters to arenas of their own
//! (written once), their outputs to a pool of their own; `replay` re-encodes that list into
//! the pending pass: no op code, no checks, no allocation, no bind group creation.
//!
//! ```text
//! capture  op ─ output from the graph's pool ─ params → graph arena ─ bind group ─ Cmd list
//! replay   Cmd list ─ set_pipeline (when it changes) / set_bind_group / dispatch  (or copy)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::device::Gpu;
use super::kernels::Pipeline;
use super::profile::{self, Profiler};
use super::tensor::{device_err, BufferPool};
use crate::backend::Result;

/// Bytes of the uniform-parameter arena (256 B slots: 1024 dispatches per submission).
const ARENA_BYTES: u64 = 256 * 1024;
/// Largest parameter block of any shader, in bytes.
const MAX_PARAMS: usize = 256;
/// Bytes of op outputs a graph gets as fresh buffers before it reuses its own freed ones.
const FRESH_BYTES: u64 = 64 << 20;

/// One storage binding of a dispatch: `size` bytes of `buffer` from `offset` (None = to the end).
pub(crate) struct Binding<'a> {
    pub index: u32,
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: Option<u64>,
}

impl<'a> Binding<'a> {
    pub fn whole(index: u32, buffer: &'a wgpu::Buffer) -> Self {
        Binding { index, buffer, offset: 0, size: None }
    }
}

/// One recorded command: what a graph holds and replays.
enum Cmd {
    Dispatch { pipe: Arc<Pipeline>, bind_group: wgpu::BindGroup, groups: [u32; 3] },
    Copy { src: wgpu::Buffer, dst: wgpu::Buffer, size: u64 },
}

/// A uniform arena and the bytes to write into it.
struct Arena {
    buffer: wgpu::Buffer,
    bytes: Vec<u8>,
}

impl Arena {
    fn new(gpu: &Gpu) -> Self {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera params"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Arena { buffer, bytes: Vec::new() }
    }

    /// Offset of the next aligned slot, if one more parameter block fits.
    fn slot(&self, align: usize) -> Option<usize> {
        let slot = self.bytes.len().div_ceil(align) * align;
        ((slot + MAX_PARAMS) as u64 <= ARENA_BYTES).then_some(slot)
    }

    fn put(&mut self, slot: usize, params: &[u8], len: usize) {
        self.bytes.resize(slot, 0);
        self.bytes.extend_from_slice(params);
        self.bytes.resize(slot + len, 0);
    }
}

/// A graph being recorded.
struct Capture {
    cmds: Vec<Cmd>,
    arenas: Vec<Arena>,
    pool: Arc<BufferPool>,
    /// Bytes of fresh (never reused) outputs so far.
    fresh_bytes: u64,
}

/// A recorded graph: its commands, the arenas their parameters live in, and the pool its
/// intermediate outputs came from (kept, so no other op ever writes them).
struct Graph {
    cmds: Vec<Cmd>,
    _arenas: Vec<wgpu::Buffer>,
    _pool: Arc<BufferPool>,
}

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// The pipeline last set on the open pass (by address).
    pipeline: usize,
    arena: Option<Arena>,
    dispatches: usize,
    /// Command buffers of this submission finished ahead of `encoder` (a prepared replay
    /// and whatever was recorded before it), submitted before it.
    finished: Vec<wgpu::CommandBuffer>,
    capture: Option<Capture>,
    graphs: HashMap<u64, Arc<Graph>>,
    next_graph: u64,
    /// The graph replayed since the last read-back.
    replayed: Option<u64>,
    /// A replay of a graph encoded while the GPU ran the previous step.
    prepared: Option<(u64, wgpu::CommandBuffer)>,
    /// Read-backs submitted by `read_begin`, not yet mapped.
    started: Vec<StartedRead>,
    profile: profile::Pending,
}

/// A copy of `bytes` of `src` into `staging`, submitted as submission `index`.
struct StartedRead {
    src: wgpu::Buffer,
    bytes: u64,
    staging: wgpu::Buffer,
    index: wgpu::SubmissionIndex,
}

/// Started reads kept at once (one nobody collects is dropped after this many).
const MAX_STARTED: usize = 4;

/// The pending commands of a backend.
pub(crate) struct Recorder {
    state: Mutex<Pending>,
    submissions: std::sync::atomic::AtomicUsize,
    profiler: Profiler,
    /// Whether a read-back that follows a replay encodes the next replay while it waits.
    prepare: bool,
}

/// Workgroup grid for `n` groups along one axis, wrapped into y past the per-dimension limit.
pub(crate) fn grid(n: u32, max: u32) -> [u32; 3] {
    if n <= max {
        return [n, 1, 1];
    }
    let y = n.div_ceil(max);
    [n.div_ceil(y), y, 1]
}

impl Recorder {
    pub fn new(gpu: &Gpu) -> Self {
        let profiler = Profiler::new(gpu);
        // GPU timestamps are written only by commands encoded in the pending encoder.
        let prepare = !profiler.timestamps() && std::env::var("TESSERA_WGPU_PREPARE").map_or(true, |v| v != "0");
        Recorder { state: Mutex::default(), submissions: Default::default(), profiler, prepare }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Pending>> {
        self.state.lock().map_err(|_| device_err("command recorder poisoned"))
    }

    /// Records one dispatch of `pipe` with uniform `params` and storage `bindings`.
    pub fn dispatch(&self, gpu: &Gpu, pipe: &Arc<Pipeline>, params: &[u32], bindings: &[Binding<'_>], groups: [u32; 3]) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let bytes: Vec<u8> = params.iter().flat_map(|w| w.to_le_bytes()).collect();
        let len = bytes.len().div_ceil(16).max(1) * 16;
        if len > MAX_PARAMS {
            return Err(device_err(format!("{len} bytes of parameters exceed the {MAX_PARAMS}-byte slot")));
        }
        let mut guard = self.lock()?;
        let st = &mut *guard;
        let align = gpu.sizes.uniform_align as usize;
        if st.capture.is_none() && st.arena.as_ref().is_some_and(|a| a.slot(align).is_none()) {
            self.submit(gpu, st, None);
        }
        let arena = match &mut st.capture {
            Some(c) => {
                if c.arenas.last().and_then(|a| a.slot(align)).is_none() {
                    c.arenas.push(Arena::new(gpu));
                }
                c.arenas.last_mut().expect("pushed above")
            }
            None => st.arena.get_or_insert_with(|| Arena::new(gpu)),
        };
        let slot = arena.slot(align).expect("an arena with room");
        arena.put(slot, &bytes, len);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &arena.buffer,
                offset: slot as u64,
                size: NonZeroU64::new(len as u64),
            }),
        }];
        for b in bindings {
            entries.push(wgpu::BindGroupEntry {
                binding: b.index,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: b.size.and_then(NonZeroU64::new),
                }),
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.layout,
            entries: &entries,
        });
        let cmd = Cmd::Dispatch { pipe: pipe.clone(), bind_group, groups };
        match &mut st.capture {
            Some(c) => c.cmds.push(cmd),
            None => self.encode(gpu, st, &cmd),
        }
        Ok(())
    }

    /// Records a copy of the first `size` bytes of `src` into `dst`.
    pub fn copy(&self, gpu: &Gpu, src: &wgpu::Buffer, dst: &wgpu::Buffer, size: u64) -> Result<()> {
        let mut st = self.lock()?;
        let cmd = Cmd::Copy { src: src.clone(), dst: dst.clone(), size };
        match &mut st.capture {
            Some(c) => c.cmds.push(cmd),
            None => self.encode(gpu, &mut st, &cmd),
        }
        Ok(())
    }

    /// Appends `cmd` to the pending encoder (opening a pass for dispatches).
    fn encode(&self, gpu: &Gpu, st: &mut Pending, cmd: &Cmd) {
        self.profiler.recorded(&mut st.profile);
        match cmd {
            Cmd::Dispatch { pipe, bind_group, groups } => {
                if st.pass.is_none() {
                    let enc = st.encoder.get_or_insert_with(|| gpu.device.create_command_encoder(&Default::default()));
                    let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera step"), timestamp_writes: None });
                    let mut pass = pass.forget_lifetime();
                    self.profiler.pass_begin(&mut st.profile, &mut pass);
                    st.pass = Some(pass);
                    st.pipeline = 0;
                }
                let pass = st.pass.as_mut().expect("opened above");
                let id = Arc::as_ptr(pipe) as usize;
                if st.pipeline != id {
                    pass.set_pipeline(&pipe.pipeline);
                    st.pipeline = id;
                }
                pass.set_bind_group(0, bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                self.profiler.after_dispatch(&mut st.profile, pass, pipe.entry);
                st.dispatches += 1;
            }
            Cmd::Copy { src, dst, size } => {
                st.pass = None;
                let enc = st.encoder.get_or_insert_with(|| gpu.device.create_command_encoder(&Default::default()));
                enc.copy_buffer_to_buffer(src, 0, dst, 0, *size);
            }
        }
    }

    /// Ends the pass, runs `extra` on the encoder, writes the arena and submits (the finished
    /// command buffers first, then the encoder's).
    fn submit(&self, gpu: &Gpu, st: &mut Pending, extra: Option<&dyn Fn(&mut wgpu::CommandEncoder)>) -> Option<wgpu::SubmissionIndex> {
        st.pass = None;
        if st.encoder.is_none() && extra.is_none() && st.finished.is_empty() {
            return None;
        }
        let mut enc = st.encoder.take().unwrap_or_else(|| gpu.device.create_command_encoder(&Default::default()));
        if let Some(f) = extra {
            f(&mut enc);
        }
        let front = self.profiler.before_submit(gpu, &mut st.profile, &mut enc);
        if let Some(a) = &mut st.arena {
            if !a.bytes.is_empty() {
                gpu.queue.write_buffer(&a.buffer, 0, &a.bytes);
                a.bytes.clear();
            }
        }
        let mut buffers: Vec<wgpu::CommandBuffer> = front.into_iter().collect();
        buffers.append(&mut st.finished);
        buffers.push(enc.finish());
        self.profiler.finished(&mut st.profile);
        let index = gpu.queue.submit(buffers);
        self.profiler.submitted(&mut st.profile);
        st.dispatches = 0;
        self.submissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(index)
    }

    /// Submits everything recorded so far.
    pub fn flush(&self, gpu: &Gpu) -> Result<()> {
        let mut st = self.lock()?;
        self.submit(gpu, &mut st, None);
        Ok(())
    }

    /// Writes `bytes` into `dst` at offset 0, after everything recorded so far has read it
    /// (pending work is submitted first: queue writes land before the next submission).
    pub fn write(&self, gpu: &Gpu, dst: &wgpu::Buffer, bytes: &[u8]) -> Result<()> {
        let mut st = self.lock()?;
        if st.capture.is_some() {
            return Err(device_err("writing a buffer while recording a graph"));
        }
        if st.encoder.is_some() || !st.finished.is_empty() {
            self.submit(gpu, &mut st, None);
        }
        gpu.queue.write_buffer(dst, 0, bytes);
        Ok(())
    }

    /// Dispatches recorded and not yet submitted.
    pub fn pending_dispatches(&self) -> usize {
        self.state.lock().map(|s| s.dispatches).unwrap_or(0)
    }

    /// Submissions so far.
    pub fn submissions(&self) -> usize {
        self.submissions.load(std::sync::atomic::Ordering::Relaxed)
    }

    // ---- graphs -------------------------------------------------------------------------

    /// Starts recording commands into a graph; op outputs come from a pool of its own.
    pub fn begin_capture(&self) -> Result<()> {
        let mut st = self.lock()?;
        if st.capture.is_some() {
            return Err(device_err("a graph is already being recorded"));
        }
        st.capture = Some(Capture { cmds: Vec::new(), arenas: Vec::new(), pool: Arc::default(), fresh_bytes: 0 });
        Ok(())
    }

    /// While a graph is recorded: the pool an output of `bytes` bytes returns to, and whether
    /// it may reuse one of that pool's buffers. The first `FRESH_BYTES` of a graph's outputs
    /// are fresh buffers: an op that writes a buffer nothing earlier in the step touched needs
    /// no barrier after the ops before it, so independent dispatches (q / k / v, gate / up)
    /// can overlap on the GPU.
    pub fn capture_output(&self, bytes: u64) -> Option<(Arc<BufferPool>, bool)> {
        let mut st = self.state.lock().ok()?;
        let c = st.capture.as_mut()?;
        let fresh = c.fresh_bytes + bytes <= FRESH_BYTES;
        if fresh {
            c.fresh_bytes += bytes;
        }
        Some((c.pool.clone(), !fresh))
    }

    /// Ends the recording; `ok == false` discards it. Returns the new graph's id.
    pub fn end_capture(&self, gpu: &Gpu, ok: bool) -> Result<u64> {
        let mut st = self.lock()?;
        let c = st.capture.take().ok_or_else(|| device_err("no graph is being recorded"))?;
        if !ok {
            return Err(device_err("an op failed while recording a graph"));
        }
        if c.cmds.is_empty() {
            return Err(device_err("the graph recorded nothing"));
        }
        for a in &c.arenas {
            gpu.queue.write_buffer(&a.buffer, 0, &a.bytes);
        }
        let id = st.next_graph;
        st.next_graph += 1;
        let graph = Graph { cmds: c.cmds, _arenas: c.arenas.into_iter().map(|a| a.buffer).collect(), _pool: c.pool };
        st.graphs.insert(id, Arc::new(graph));
        Ok(id)
    }

    /// Records graph `id`'s commands: the replay prepared during the last read-back when
    /// there is one for this graph (what was recorded before it is finished first), else
    /// re-encoded into the pending encoder.
    pub fn replay(&self, gpu: &Gpu, id: u64) -> Result<()> {
        let mut guard = self.lock()?;
        let st = &mut *guard;
        if st.capture.is_some() {
            return Err(device_err("replaying a graph while recording one"));
        }
        let g = st.graphs.get(&id).cloned().ok_or_else(|| device_err(format!("no graph {id}")))?;
        st.replayed = Some(id);
        match st.prepared.take() {
            Some((pid, cb)) if pid == id => {
                st.pass = None;
                if let Some(enc) = st.encoder.take() {
                    st.finished.push(enc.finish());
                }
                st.finished.push(cb);
                st.dispatches += g.cmds.len();
            }
            _ => {
                for cmd in &g.cmds {
                    self.encode(gpu, st, cmd);
                }
            }
        }
        Ok(())
    }

    /// Encodes graph `id` into a command buffer of its own, for the next step's replay.
    fn prepare_replay(&self, gpu: &Gpu, st: &mut Pending, id: u64) {
        let Some(g) = st.graphs.get(&id).cloned() else { return };
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera prepared replay") });
        let mut pass: Option<wgpu::ComputePass<'_>> = None;
        let mut last = 0usize;
        for cmd in &g.cmds {
            match cmd {
                Cmd::Dispatch { pipe, bind_group, groups } => {
                    let p = pass.get_or_insert_with(|| {
                        last = 0;
                        enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera step"), timestamp_writes: None })
                            .forget_lifetime()
                    });
                    let pid = Arc::as_ptr(pipe) as usize;
                    if last != pid {
                        p.set_pipeline(&pipe.pipeline);
                        last = pid;
                    }
                    p.set_bind_group(0, bind_group, &[]);
                    p.dispatch_workgroups(groups[0], groups[1], groups[2]);
                }
                Cmd::Copy { src, dst, size } => {
                    pass = None;
                    enc.copy_buffer_to_buffer(src, 0, dst, 0, *size);
                }
            }
        }
        drop(pass);
        st.prepared = Some((id, enc.finish()));
    }

    /// Submits the pending work followed by a copy of `bytes` bytes of `src` into a mappable
    /// buffer; `read` of the same range then waits for that submission alone.
    pub fn read_begin(&self, gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<()> {
        let mut st = self.lock()?;
        if st.capture.is_some() {
            return Ok(()); // a hint: `read` copies when it comes
        }
        let staging = staging_buffer(gpu, bytes);
        let size = staging.size();
        let copy = |enc: &mut wgpu::CommandEncoder| enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        let index = self.submit(gpu, &mut st, Some(&copy)).expect("a copy was submitted");
        st.started.retain(|r| r.src != *src);
        if st.started.len() >= MAX_STARTED {
            st.started.remove(0);
        }
        st.started.push(StartedRead { src: src.clone(), bytes, staging, index });
        Ok(())
    }

    /// Submits the pending work followed by a copy of `bytes` bytes of `src` into a mappable
    /// buffer (or takes the copy `read_begin` submitted), waits for it, and returns those
    /// bytes. The only read-back path.
    pub async fn read(&self, gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let (staging, index) = {
            let mut st = self.lock()?;
            if st.capture.is_some() {
                return Err(device_err("reading back while recording a graph"));
            }
            let read = match st.started.iter().position(|r| r.src == *src && r.bytes == bytes) {
                Some(i) => {
                    let r = st.started.remove(i);
                    (r.staging, Some(r.index))
                }
                None => {
                    let staging = staging_buffer(gpu, bytes);
                    let size = staging.size();
                    let copy = |enc: &mut wgpu::CommandEncoder| enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
                    self.submit(gpu, &mut st, Some(&copy));
                    (staging, None)
                }
            };
            // While the GPU runs, encode the replay the next decode step will want.
            if let (true, Some(id)) = (self.prepare, st.replayed.take()) {
                self.prepare_replay(gpu, &mut st, id);
            }
            read
        };
        let (tx, rx) = oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r.map_err(|e| e.to_string())));
        #[cfg(not(target_arch = "wasm32"))]
        gpu.device
            .poll(wgpu::PollType::Wait { submission_index: index, timeout: None })
            .map_err(|e| device_err(format!("waiting for the device: {e}")))?;
        #[cfg(target_arch = "wasm32")]
        let _ = index;
        let mapped = rx.await;
        if self.profiler.on() {
            let mut st = self.lock()?;
            self.profiler.waited(gpu, &mut st.profile);
        }
        gpu.errors.check("device error before a read-back")?;
        mapped.map_err(|e| device_err(format!("mapping a read-back buffer: {e}")))?;
        let data = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| device_err(format!("reading a mapped buffer: {e:?}")))?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        Ok(data)
    }
}

/// A mappable buffer for a read-back of `bytes` bytes (a multiple of 4, at least 4).
fn staging_buffer(gpu: &Gpu, bytes: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tessera read-back"),
        size: bytes.div_ceil(4).max(1) * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

// ---- a minimal one-shot channel (map_async's callback -> the awaiting read) ---------------

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<Slot<T>>>);
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    (Sender(shared.clone()), Receiver(shared))
}

fn lock<T>(m: &Mutex<Slot<T>>) -> std::sync::MutexGuard<'_, Slot<T>> {
    match m.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    }
}

impl<T> Sender<T> {
    fn send(self, v: T) {
        let waker = {
            let mut s = lock(&self.0);
            s.value = Some(v);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = lock(&self.0);
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
