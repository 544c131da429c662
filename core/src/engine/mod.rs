//! Running models: the model runner (one forward pass on a backend), the continuous-batching
//! `Engine` (scheduler + runner + sampler + detokenizer), the offline `LLM` API, request
//! outputs shaped like vLLM's, and a simple sequential generator used as the reference.

mod detokenizer;
mod executor;
mod generate;
mod input_batch;
mod llm;
mod llm_engine;
mod output;
mod output_processor;
mod runner;

pub use detokenizer::IncrementalDetokenizer;
pub use generate::{generate, GenerateParams};
pub use input_batch::{CachedRequestState, InputBatch, RowPlan};
pub use llm::{Progress, LLM};
pub use llm_engine::{Engine, EngineConfig, EngineStats, Prompt};
pub use output::{CompletionOutput, FinishReason, RequestOutput};
pub use runner::{ModelRunner, TokenFeed};
