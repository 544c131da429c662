//! `RequestOutput` / `CompletionOutput`, shaped like vLLM's so `--json` output and later the
//! offline API read the same.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// Hit `max_tokens` (or the model's length limit).
    Length,
    /// Produced an eos / stop token.
    Stop,
}

#[derive(Clone, Debug, Serialize)]
pub struct CompletionOutput {
    pub index: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Per generated token: the top-K `(token_id, logprob)` incl. the chosen one.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_logprobs")]
    pub logprobs: Option<Vec<Vec<(u32, f32)>>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RequestOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub prompt_token_ids: Vec<u32>,
    pub outputs: Vec<CompletionOutput>,
}

/// `[{"<token_id>": logprob, ...}, ...]` as vLLM prints them.
fn ser_logprobs<S: serde::Serializer>(v: &Option<Vec<Vec<(u32, f32)>>>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    let steps = v.as_ref().expect("skipped when None");
    let mut seq = s.serialize_seq(Some(steps.len()))?;
    struct Step<'a>(&'a [(u32, f32)]);
    impl Serialize for Step<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (id, lp) in self.0 {
                m.serialize_entry(&id.to_string(), lp)?;
            }
            m.end()
        }
    }
    for step in steps {
        seq.serialize_element(&Step(step))?;
    }
    seq.end()
}
