//! Recording work: ops append dispatches to one pending command encoder (one open compute
//! pass) and nothing is submitted until a read-back (or a full parameter arena) needs it, so
//! a whole engine step is normally one submission. Also buffer allocation and `to_host`.
//!
//! ```text
//! op ─ alloc output (poison: + fill dispatch) ─ params → arena slot ─ bind group ─ dispatch
//!                                                   │ (arena full: flush, reuse the arena)
//! to_host ─ end pass ─ copy → staging ─ write arena, submit ─ map_async ─ (native: poll) ─ bytes
//! ```
//! The uniform parameters of every dispatch live in one arena buffer at aligned offsets; its
//! bytes are written with one `write_buffer` right before the submit, which the queue orders
//! before the submitted commands (and after earlier submissions, so the arena is reused).

use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::device::Gpu;
use super::kernels::Pipeline;
use super::tensor::device_err;
use crate::backend::Result;

/// Bytes of the uniform-parameter arena (256 B slots: 1024 dispatches per submission).
const ARENA_BYTES: u64 = 256 * 1024;
/// Largest parameter block of any shader, in bytes.
const MAX_PARAMS: usize = 256;

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

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    arena: Option<wgpu::Buffer>,
    params: Vec<u8>,
    dispatches: usize,
}

/// The pending commands of a backend.
#[derive(Default)]
pub(crate) struct Recorder {
    state: Mutex<Pending>,
    submissions: std::sync::atomic::AtomicUsize,
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
    /// Records one dispatch of `pipe` with uniform `params` and storage `bindings`.
    pub fn dispatch(&self, gpu: &Gpu, pipe: &Pipeline, params: &[u32], bindings: &[Binding<'_>], groups: [u32; 3]) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let bytes: Vec<u8> = params.iter().flat_map(|w| w.to_le_bytes()).collect();
        let len = bytes.len().div_ceil(16).max(1) * 16;
        if len > MAX_PARAMS {
            return Err(device_err(format!("{len} bytes of parameters exceed the {MAX_PARAMS}-byte slot")));
        }
        let mut st = self.state.lock().map_err(|_| device_err("command recorder poisoned"))?;
        let align = gpu.sizes.uniform_align as usize;
        let mut slot = st.params.len().div_ceil(align) * align;
        if (slot + MAX_PARAMS) as u64 > ARENA_BYTES {
            self.submit(gpu, &mut st, None);
            slot = 0;
        }
        if st.arena.is_none() {
            st.arena = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tessera params"),
                size: ARENA_BYTES,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        st.params.resize(slot, 0);
        st.params.extend_from_slice(&bytes);
        st.params.resize(slot + len, 0);
        let arena = st.arena.as_ref().expect("created above");
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: arena,
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
        if st.pass.is_none() {
            let enc = st.encoder.get_or_insert_with(|| gpu.device.create_command_encoder(&Default::default()));
            let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera step"), timestamp_writes: None });
            st.pass = Some(pass.forget_lifetime());
        }
        let pass = st.pass.as_mut().expect("opened above");
        pass.set_pipeline(&pipe.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        st.dispatches += 1;
        Ok(())
    }

    /// Ends the pass, runs `extra` on the encoder, writes the arena and submits.
    fn submit(&self, gpu: &Gpu, st: &mut Pending, extra: Option<&dyn Fn(&mut wgpu::CommandEncoder)>) {
        st.pass = None;
        if st.encoder.is_none() && extra.is_none() {
            return;
        }
        let mut enc = st.encoder.take().unwrap_or_else(|| gpu.device.create_command_encoder(&Default::default()));
        if let Some(f) = extra {
            f(&mut enc);
        }
        if let (Some(arena), false) = (&st.arena, st.params.is_empty()) {
            gpu.queue.write_buffer(arena, 0, &st.params);
        }
        gpu.queue.submit([enc.finish()]);
        st.params.clear();
        st.dispatches = 0;
        self.submissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Submits everything recorded so far.
    pub fn flush(&self, gpu: &Gpu) -> Result<()> {
        let mut st = self.state.lock().map_err(|_| device_err("command recorder poisoned"))?;
        self.submit(gpu, &mut st, None);
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

    /// Submits the pending work followed by a copy of `bytes` bytes of `src` into a mappable
    /// buffer, waits for it, and returns those bytes. The only read-back path.
    pub async fn read(&self, gpu: &Gpu, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4).max(1) * 4;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera read-back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut st = self.state.lock().map_err(|_| device_err("command recorder poisoned"))?;
            let copy = |enc: &mut wgpu::CommandEncoder| enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
            self.submit(gpu, &mut st, Some(&copy));
        }
        let (tx, rx) = oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r.map_err(|e| e.to_string())));
        #[cfg(not(target_arch = "wasm32"))]
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| device_err(format!("waiting for the device: {e}")))?;
        let mapped = rx.await;
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
