//! `RequestOutput` / `CompletionOutput`, shaped like vLLM's so `--json` output, the offline
//! API and later the server read the same.

use serde::Serialize;

use crate::sched::StopReason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// Hit `max_tokens` (or the model's length limit).
    Length,
    /// Produced an eos / stop token or a stop string.
    Stop,
    /// Aborted by the caller.
    Abort,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompletionOutput {
    pub index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Sum of the chosen tokens' logprobs (when logprobs were asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cumulative_logprob: Option<f64>,
    /// Per generated token: the top-K `(token_id, logprob)` incl. the chosen one.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_logprobs")]
    pub logprobs: Option<Vec<Vec<(u32, f32)>>>,
    /// `None` while the request runs.
    pub finish_reason: Option<FinishReason>,
    /// The stop token id or stop string that ended it (`null` for eos / length).
    pub stop_reason: Option<StopReason>,
}

impl CompletionOutput {
    pub fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RequestOutput {
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub prompt_token_ids: Vec<u32>,
    /// Per prompt token: `None` for the first, then the top-K `(token_id, logprob)` incl. the
    /// actual token.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_prompt_logprobs")]
    pub prompt_logprobs: Option<Vec<Option<Vec<(u32, f32)>>>>,
    pub outputs: Vec<CompletionOutput>,
    pub finished: bool,
    /// Prompt tokens served from the prefix cache.
    pub num_cached_tokens: usize,
}

struct Step<'a>(&'a [(u32, f32)]);

impl Serialize for Step<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (id, lp) in self.0 {
            m.serialize_entry(&id.to_string(), lp)?;
        }
        m.end()
    }
}

/// `[{"<token_id>": logprob, ...}, ...]` as vLLM prints them.
fn ser_logprobs<S: serde::Serializer>(v: &Option<Vec<Vec<(u32, f32)>>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let steps = v.as_deref().unwrap_or_default();
    let mut seq = s.serialize_seq(Some(steps.len()))?;
    for step in steps {
        seq.serialize_element(&Step(step))?;
    }
    seq.end()
}

/// `[null, {"<token_id>": logprob, ...}, ...]`.
fn ser_prompt_logprobs<S: serde::Serializer>(v: &Option<Vec<Option<Vec<(u32, f32)>>>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let steps = v.as_deref().unwrap_or_default();
    let mut seq = s.serialize_seq(Some(steps.len()))?;
    for step in steps {
        seq.serialize_element(&step.as_deref().map(Step))?;
    }
    seq.end()
}
