//! Running models: the model runner (one step on a backend), request outputs shaped like
//! vLLM's, and a simple sequential generator (the continuous-batching engine replaces it).

mod generate;
mod output;
mod runner;

pub use generate::{generate, GenerateParams};
pub use output::{CompletionOutput, FinishReason, RequestOutput};
pub use runner::ModelRunner;
