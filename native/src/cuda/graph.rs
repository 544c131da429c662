//! Decode-step CUDA graphs: stream capture of the queued work into a graph replayed by id,
//! and the in-place writes the runner feeds a graph's persistent inputs with (the read-back
//! that ends a step is readback.rs).
//!
//! ```text
//! graph_begin ── capture the stream (thread-local mode); uploads and reads back refuse
//!   ops queue as usual: kernels, cuBLAS (explicit workspace), memsets, stream-ordered
//!   allocations/frees (graph memory nodes: every temporary is freed inside the graph)
//!   prefetches (prefetch.rs) fork a side stream off it: a parallel branch, joined before
//! graph_end ─── end capture, instantiate, keep as graphs[id]
//! graph_replay ─ cuGraphLaunch on the stream (replays [first, first + count) bracketed by
//!   cuProfilerStart/Stop with TESSERA_CUDA_PROFILER_REPLAYS=first:count, for ncu)
//! graph_variant: per distinct decode grid (blocks per sequence, which kernel) the attention
//!   kernel variant and key split (attention::DecodeGrid::launch) for (num_seqs, longest
//!   context): equal variants, equal launches
//! ```

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;

use cudarc::driver::{result as dres, sys as dsys, CudaGraph};
use tessera_core::backend::{Op, Result, Tensor};
use tessera_core::tensor::DType;

use super::device::{dev_err, setup_err};
use super::{shape_err, CudaBackend, CudaTensor};

/// `"first:count"` (decode-graph replays to profile), or None.
pub(crate) fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// A recorded graph. cudarc's graph holds raw driver handles; the backend only touches them
/// under its mutex, on the stream they were captured from.
pub(crate) struct Graph(pub CudaGraph);

// SAFETY: a graph exec may be launched from any thread as long as launches are not
// concurrent; every use goes through the backend's mutex.
unsafe impl Send for Graph {}

impl CudaBackend {
    pub(crate) fn graphs_possible(&self) -> bool {
        !self.sync_launches.load(Ordering::Relaxed) && !self.device.profiling()
    }

    pub(crate) fn op_graph_variant(&self, num_seqs: usize, max_seq_len: usize) -> Option<u64> {
        let seen = self.decode_grids.lock().ok()?;
        if seen.is_empty() {
            return None;
        }
        let forced = self.attention_splits.load(Ordering::Relaxed);
        let pipeline = self.decode_pipeline.load(Ordering::Relaxed);
        let tile = self.tile_splits.load(Ordering::Relaxed);
        let sms = self.device.info.multiprocessors as usize;
        let mut h = DefaultHasher::new();
        for grid in seen.iter() {
            grid.launch(forced, pipeline, tile, num_seqs, sms, max_seq_len).hash(&mut h);
        }
        Some(h.finish())
    }

    pub(crate) fn op_graph_begin(&self) -> Result<()> {
        if !self.graphs_possible() {
            return Err(setup_err("graphs are off while launches are synchronised or profiled"));
        }
        // write_kv's q companion must come from the recorded step itself: a tensor from
        // before the recording rotated inside the graph would be rotated again at each replay.
        self.forget_deferred();
        self.join_prefetch()?;
        self.device.bind(Op::Upload)?;
        self.device
            .stream
            .begin_capture(dsys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| setup_err(format!("beginning a stream capture: {e}")))?;
        self.capturing.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn op_graph_end(&self, ok: bool) -> Result<u64> {
        self.capturing.store(false, Ordering::Relaxed);
        self.forget_deferred();
        // A capture must join every stream it forked (the prefetch branch); a failed join
        // shows up as a failed end_capture below.
        let joined = self.join_prefetch();
        let ended = self.device.stream.end_capture(dsys::CUgraphInstantiate_flags(0));
        let graph = match (ok, ended) {
            (true, Ok(Some(g))) if joined.is_ok() => g,
            (_, ended) => {
                // Errors recorded by frees inside the broken capture must not fail later calls.
                let _ = self.device.ctx.check_err();
                return Err(setup_err(match ended {
                    Err(e) => format!("ending the stream capture: {e}"),
                    Ok(None) => "the stream capture recorded nothing".to_string(),
                    Ok(Some(_)) => match joined {
                        Err(e) => format!("joining the prefetch stream: {e}"),
                        Ok(()) => "an op failed while recording".to_string(),
                    },
                }));
            }
        };
        graph.upload().map_err(|e| setup_err(format!("uploading a graph: {e}")))?;
        let mut graphs = self.graphs.lock().map_err(|_| setup_err("graph table poisoned"))?;
        graphs.push(Graph(graph));
        Ok(graphs.len() as u64 - 1)
    }

    pub(crate) fn op_graph_replay(&self, id: u64) -> Result<()> {
        let graphs = self.graphs.lock().map_err(|_| setup_err("graph table poisoned"))?;
        let g = graphs.get(id as usize).ok_or_else(|| setup_err(format!("no graph {id}")))?;
        let n = self.replays.fetch_add(1, Ordering::Relaxed);
        let (first, count) = self.profiler_replays;
        if count > 0 && n == first {
            // SAFETY: plain driver calls on the current context; failures only lose the profile.
            let r = unsafe { dsys::cuProfilerStart() };
            tracing::info!(replay = n, result = ?r, "cuProfilerStart");
        }
        g.0.launch().map_err(|e| setup_err(format!("launching graph {id}: {e}")))?;
        if count > 0 && n + 1 == first + count {
            // SAFETY: as above.
            let r = unsafe { dsys::cuProfilerStop() };
            tracing::info!(replay = n, result = ?r, "cuProfilerStop");
        }
        if self.sync_launches.load(Ordering::Relaxed) {
            self.device.synchronize()?;
        }
        Ok(())
    }

    /// Refuses work that cannot be recorded (host copies) while a capture is on.
    pub(crate) fn not_capturing(&self, op: Op, what: &str) -> Result<()> {
        if self.capturing.load(Ordering::Relaxed) {
            return Err(dev_err(op, format!("{what} cannot be recorded into a graph")));
        }
        Ok(())
    }

    pub(crate) fn op_write_u32(&self, dst: &CudaTensor, values: &[u32]) -> Result<()> {
        let op = Op::Upload;
        self.not_capturing(op, "a host-to-device copy")?;
        if dst.dtype != DType::U32 || dst.numel() != values.len() {
            return Err(shape_err(op, format!("{} u32 values into a {} tensor of shape {:?}", values.len(), dst.dtype, dst.shape)));
        }
        if values.is_empty() {
            return Ok(());
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.copy_to_device(op, dst.ptr, &bytes)
    }

    pub(crate) fn op_copy_into(&self, dst: &CudaTensor, src: &CudaTensor) -> Result<()> {
        let op = Op::GatherRows;
        if dst.dtype != src.dtype || dst.numel() != src.numel() {
            return Err(shape_err(op, format!("copying {} {:?} into {} {:?}", src.dtype, src.shape, dst.dtype, dst.shape)));
        }
        let bytes = src.bytes();
        if bytes == 0 {
            return Ok(());
        }
        self.device.bind(op)?;
        // SAFETY: both are live allocations of `bytes` bytes on this context.
        unsafe { dres::memcpy_dtod_async(dst.ptr, src.ptr, bytes, self.device.stream.cu_stream()) }
            .map_err(|e| dev_err(op, format!("device copy of {bytes} bytes: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn profiler_replay_ranges_parse() {
        assert_eq!(parse_range("60:1"), Some((60, 1)));
        assert_eq!(parse_range(" 3 : 2 "), Some((3, 2)));
        assert_eq!(parse_range("60"), None);
        assert_eq!(parse_range("a:1"), None);
        assert_eq!(parse_range("1:-2"), None);
    }
}
