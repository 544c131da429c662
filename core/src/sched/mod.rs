//! The continuous-batching scheduler (vLLM v1's): requests as plain data, one token budget
//! per step, chunked prefill, prefix-cache hits, preemption by recompute.

mod output;
mod request;
mod scheduler;

pub use output::{
    CachedRequestData, EngineCoreOutput, ModelRunnerOutput, NewRequestData, SampledOutput, SchedulerOutput, TopLogprobs,
};
pub use request::{Request, RequestStatus, StopReason};
pub use scheduler::{Scheduler, SchedulerConfig, SchedulerStats, SchedulingPolicy};
