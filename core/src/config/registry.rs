//! The architecture registry: `architectures[0]` -> model family, with each family's
//! transformers defaults for fields a config.json may omit.

/// Model families: one graph file each in `models/` (Llama covers its close relatives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    SmolLM3,
    Gemma3,
    Phi3,
}

/// Every `architectures[0]` tessera runs, with its family.
const ARCHITECTURES: &[(&str, Family)] = &[
    ("LlamaForCausalLM", Family::Llama),
    ("MistralForCausalLM", Family::Mistral),
    ("Qwen2ForCausalLM", Family::Qwen2),
    ("Qwen3ForCausalLM", Family::Qwen3),
    ("SmolLM3ForCausalLM", Family::SmolLM3),
    ("Gemma3ForCausalLM", Family::Gemma3),
    ("Phi3ForCausalLM", Family::Phi3),
];

/// Names listed in the "unknown architecture" error.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "SmolLM3ForCausalLM",
    "Gemma3ForCausalLM",
    "Phi3ForCausalLM",
];

/// Defaults of the transformers config class of a family.
pub(crate) struct Defaults {
    pub hidden_act: &'static str,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
}

impl Family {
    pub fn from_architecture(name: &str) -> Option<Family> {
        ARCHITECTURES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    pub(crate) fn defaults(self) -> Defaults {
        let base = Defaults {
            hidden_act: "silu",
            rms_norm_eps: 1e-6,
            tie_word_embeddings: false,
            rope_theta: 10000.0,
            max_position_embeddings: 2048,
        };
        match self {
            Family::Llama | Family::Qwen2 | Family::Qwen3 => base,
            Family::Mistral => Defaults { max_position_embeddings: 4096 * 32, ..base },
            Family::SmolLM3 => Defaults { tie_word_embeddings: true, rope_theta: 2_000_000.0, ..base },
            Family::Gemma3 => Defaults {
                hidden_act: "gelu_pytorch_tanh",
                tie_word_embeddings: true,
                rope_theta: 1_000_000.0,
                max_position_embeddings: 131072,
                ..base
            },
            Family::Phi3 => Defaults { rms_norm_eps: 1e-5, max_position_embeddings: 4096, ..base },
        }
    }
}
