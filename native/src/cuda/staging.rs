//! Host-to-device copies of a step's inputs through page-locked staging memory. A copy from
//! pageable memory may wait for the work queued on the stream; async scheduling queues the
//! next step's inputs while the current step runs, so they go through pinned memory, whose
//! copies never wait.
//!
//! ```text
//! two halves of HALF bytes: copies fill the current half (16-byte aligned slots)
//! current half full ─ record an event, take the other half after waiting for ITS event
//!                     (recorded when it filled up: a half holds many steps' inputs, so that
//!                     wait is over long before)
//! copies larger than HALF (weights at load time) ─ straight from pageable memory
//! ```

use cudarc::driver::{result as dres, CudaEvent, PinnedHostSlice};
use tessera_core::backend::{Op, Result};
use tessera_core::tensor::DType;

use super::device::dev_err;
use super::{CudaBackend, CudaTensor};

/// Bytes of one staging half.
const HALF: usize = 4 << 20;

struct Half {
    host: PinnedHostSlice<u8>,
    used: usize,
    /// Recorded when this half filled up: its copies are done once it completes.
    closed: Option<CudaEvent>,
}

#[derive(Default)]
pub(crate) struct Staging {
    halves: Vec<Half>,
    cur: usize,
}

impl CudaBackend {
    /// Queues a copy of `data` to device address `dst` on the stream.
    pub(crate) fn copy_to_device(&self, op: Op, dst: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.device.bind(op)?;
        let stream = self.device.stream.cu_stream();
        let copy_err = |e| dev_err(op, format!("copying {} bytes to the device: {e}", data.len()));
        if data.len() > HALF {
            // SAFETY: dst is a live allocation of at least data.len() bytes (the caller's); a
            // pageable-source copy has consumed `data` when it returns.
            return unsafe { dres::memcpy_htod_async(dst, data, stream) }.map_err(copy_err);
        }
        let mut st = self.staging.lock().map_err(|_| dev_err(op, "staging state poisoned"))?;
        let src = st.slot(self, op, data.len())?;
        // SAFETY: `src` is data.len() bytes of pinned memory no queued copy still reads (slot);
        // it stays allocated while the backend lives; dst as above.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), src, data.len());
            dres::memcpy_htod_async(dst, std::slice::from_raw_parts(src, data.len()), stream)
        }
        .map_err(copy_err)
    }

    /// Host bytes of `dtype` uploaded as a tensor of the same dtype.
    pub(crate) fn upload_bytes_as(&self, data: &[u8], dtype: DType, shape: &[usize]) -> Result<CudaTensor> {
        self.upload_bytes(data, dtype, shape, dtype)
    }

    /// Host bytes of `dtype` uploaded as a tensor of `to` (converted on the device).
    pub(crate) fn upload_bytes(&self, data: &[u8], dtype: DType, shape: &[usize], to: DType) -> Result<CudaTensor> {
        let op = Op::Upload;
        self.not_capturing(op, "an upload")?;
        let staged = self.empty(op, dtype, shape)?;
        self.copy_to_device(op, staged.ptr, data)?;
        self.cast(op, &staged, to)
    }
}

impl Staging {
    /// `len` bytes of pinned memory free for a new copy.
    fn slot(&mut self, be: &CudaBackend, op: Op, len: usize) -> Result<*mut u8> {
        if self.halves.is_empty() {
            for _ in 0..2 {
                // SAFETY: write-combined page-locked memory the host only writes; every byte a
                // copy reads was written first.
                let host = unsafe { be.device.ctx.alloc_pinned::<u8>(HALF) }
                    .map_err(|e| dev_err(op, format!("allocating {HALF} bytes of pinned memory: {e}")))?;
                self.halves.push(Half { host, used: 0, closed: None });
            }
        }
        let aligned = len.next_multiple_of(16);
        if self.halves[self.cur].used + aligned > HALF {
            let event = be.device.stream.record_event(None).map_err(|e| dev_err(op, format!("recording an event: {e}")))?;
            self.halves[self.cur].closed = Some(event);
            self.cur ^= 1;
            let next = &mut self.halves[self.cur];
            if let Some(e) = next.closed.take() {
                e.synchronize().map_err(|e| dev_err(op, format!("waiting for staged copies: {e}")))?;
            }
            next.used = 0;
        }
        let half = &mut self.halves[self.cur];
        // Never used with cudarc's copies, so its own event is never recorded: no wait.
        let base = half.host.as_mut_ptr().map_err(|e| dev_err(op, format!("pinned memory: {e}")))?;
        // SAFETY: used + aligned <= HALF.
        let p = unsafe { base.add(half.used) };
        half.used += aligned;
        Ok(p)
    }
}
