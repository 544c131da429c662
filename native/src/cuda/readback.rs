//! Read-backs to the host, the only host waits (counted for `host_wait_secs`).
//!
//! ```text
//! to_host(t)      no started read of t: copy t, synchronise the stream, check the error word
//! read_begin(t)   queue t's copy and the error word's into pinned memory, record an event
//! ...             more work is queued (async scheduling: the next step)
//! to_host(t)      wait for that event alone, check the word's copy, take the bytes
//! ```
//! The pinned buffers are kept for reuse: allocating page-locked memory costs far more than
//! a step.

use std::sync::atomic::Ordering;
use std::time::Instant;

use cudarc::driver::{result as dres, CudaEvent, PinnedHostSlice};
use tessera_core::backend::{Op, Result};
use tessera_core::tensor::HostTensor;

use super::device::dev_err;
use super::{CudaBackend, CudaTensor};

/// Bytes of the error word copied with every started read.
const WORD: usize = 16;
/// Largest tensor `read_begin` starts (sampled ids; larger reads simply wait in `to_host`).
const MAX_STARTED: usize = 1 << 20;
/// Started reads kept at once (a started read nobody collects is dropped after this many).
const MAX_IN_FLIGHT: usize = 4;

/// A copy queued by `read_begin`: `bytes` of the tensor at `ptr`, then the error word, into
/// `host`; `event` completes after both.
struct Started {
    ptr: u64,
    bytes: usize,
    host: PinnedHostSlice<u8>,
    event: CudaEvent,
}

#[derive(Default)]
pub(crate) struct ReadBacks {
    started: Vec<Started>,
    free: Vec<PinnedHostSlice<u8>>,
}

impl CudaBackend {
    /// Seconds the host has spent blocked in read-backs (`to_host`), i.e. waiting for the
    /// device: a step's wall time minus this is host work the device may have idled through.
    pub fn host_wait_secs(&self) -> f64 {
        self.host_wait_ns.load(Ordering::Relaxed) as f64 * 1e-9
    }

    pub(crate) fn op_read_begin(&self, t: &CudaTensor) -> Result<()> {
        let op = Op::ToHost;
        let bytes = t.bytes();
        if self.capturing.load(Ordering::Relaxed) || bytes == 0 || bytes > MAX_STARTED {
            return Ok(());
        }
        self.settle(t)?;
        self.join_prefetch()?;
        self.device.bind(op)?;
        let mut rb = self.reads.lock().map_err(|_| dev_err(op, "read-back state poisoned"))?;
        if let Some(i) = rb.started.iter().position(|s| s.ptr == t.ptr) {
            let old = rb.started.remove(i);
            rb.free.push(old.host);
        }
        if rb.started.len() >= MAX_IN_FLIGHT {
            let old = rb.started.remove(0);
            rb.free.push(old.host);
        }
        let need = bytes.next_multiple_of(WORD) + WORD;
        let mut host = match rb.free.iter().position(|h| h.len() >= need) {
            Some(i) => rb.free.swap_remove(i),
            // SAFETY: plain (not write-combined: the host reads it) page-locked memory; every
            // byte read is written by a copy first.
            None => unsafe { self.device.ctx.alloc_pinned_with_flags::<u8>(need.max(4096), 0) }
                .map_err(|e| dev_err(op, format!("allocating {need} bytes of pinned memory: {e}")))?,
        };
        // Never used with cudarc's own copies, so its event is never recorded: no wait.
        let dst = host.as_mut_ptr().map_err(|e| dev_err(op, format!("pinned memory: {e}")))?;
        let stream = self.device.stream.cu_stream();
        let word_at = bytes.next_multiple_of(WORD);
        // SAFETY: `host` holds `need` bytes and stays alive (in `started` or `free`, never
        // freed while the backend lives) until the event says both copies are done; the
        // sources are live allocations of `bytes` and WORD bytes.
        unsafe {
            dres::memcpy_dtoh_async(std::slice::from_raw_parts_mut(dst, bytes), t.ptr, stream)
                .and_then(|_| dres::memcpy_dtoh_async(std::slice::from_raw_parts_mut(dst.add(word_at), WORD), self.device.err_ptr, stream))
        }
        .map_err(|e| dev_err(op, format!("starting a read-back of {bytes} bytes: {e}")))?;
        let event = self.device.stream.record_event(None).map_err(|e| dev_err(op, format!("recording an event: {e}")))?;
        rb.started.push(Started { ptr: t.ptr, bytes, host, event });
        Ok(())
    }

    pub(crate) fn op_to_host(&self, t: &CudaTensor) -> Result<HostTensor<'static>> {
        let op = Op::ToHost;
        self.not_capturing(op, "a read-back")?;
        let bytes = t.bytes();
        let started = {
            let mut rb = self.reads.lock().map_err(|_| dev_err(op, "read-back state poisoned"))?;
            let i = rb.started.iter().position(|s| s.ptr == t.ptr && s.bytes == bytes);
            i.map(|i| rb.started.remove(i))
        };
        let t0 = Instant::now();
        let data = match started {
            Some(s) => {
                s.event.synchronize().map_err(|e| dev_err(op, format!("device work failed: {e}")))?;
                let host = s.host.as_slice().map_err(|e| dev_err(op, format!("pinned memory: {e}")))?;
                let word_at = bytes.next_multiple_of(WORD);
                let word: Vec<u32> = host[word_at..word_at + WORD].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                let data = host[..bytes].to_vec();
                if let Ok(mut rb) = self.reads.lock() {
                    rb.free.push(s.host);
                }
                if word[0] != 0 {
                    // A kernel queued before the copy recorded an error: the full check reports it.
                    self.device.synchronize()?;
                }
                data
            }
            None => {
                self.settle(t)?;
                self.join_prefetch()?;
                let mut data = vec![0u8; bytes];
                if bytes > 0 {
                    self.device
                        .stream
                        .memcpy_dtoh(&t.buf.slice(0..bytes), &mut data[..])
                        .map_err(|e| dev_err(op, format!("copying {bytes} bytes to the host: {e}")))?;
                }
                self.device.synchronize()?;
                data
            }
        };
        self.host_wait_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(HostTensor { dtype: t.dtype, shape: t.shape.clone(), data: std::borrow::Cow::Owned(data) })
    }
}
