//! `Tokenizer`: a thin wrapper over `tokenizers::Tokenizer` built from the bytes of tokenizer.json.
//!
//! It behaves like transformers 5's `TokenizersBackend` for the calls the engine makes:
//! `encode(text, add_special_tokens)` runs the tokenizer.json pipeline (added/special tokens
//! are matched inside the text; the post-processor adds BOS/EOS only when asked), and
//! `decode(ids, skip_special_tokens)` runs its decoder. transformers 5 ignores
//! `add_bos_token`/`add_eos_token` from tokenizer_config.json when a tokenizer.json exists,
//! and so does this wrapper. `clean_up_tokenization_spaces` (false for the models we load)
//! can be switched on with [`Tokenizer::set_clean_up_tokenization_spaces`]; like transformers
//! 5.24 it is then ignored for BPE models, where it would corrupt text.

use super::error::{Result, TokenizerError};

/// A loaded tokenizer.json.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    clean_up_tokenization_spaces: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field(
                "clean_up_tokenization_spaces",
                &self.clean_up_tokenization_spaces,
            )
            .finish()
    }
}

impl Tokenizer {
    /// Parse the contents of a tokenizer.json.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| {
            TokenizerError::TokenizerJson {
                message: e.to_string(),
            }
        })?;
        Ok(Tokenizer {
            inner,
            clean_up_tokenization_spaces: false,
        })
    }

    /// Read and parse a tokenizer.json from disk (native only; the browser passes bytes).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Apply transformers' `clean_up_tokenization` (" ." -> "." etc.) after decoding, as
    /// `clean_up_tokenization_spaces: true` in tokenizer_config.json asks. transformers 5
    /// skips it for BPE models (it would strip real spaces), and so does this.
    pub fn set_clean_up_tokenization_spaces(&mut self, on: bool) {
        let is_bpe = matches!(self.inner.get_model(), tokenizers::ModelWrapper::BPE(_));
        self.clean_up_tokenization_spaces = on && !is_bpe;
    }

    /// Token ids of `text`. `add_special_tokens` runs the post-processor (BOS/EOS templates).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding =
            self.inner
                .encode(text, add_special_tokens)
                .map_err(|e| TokenizerError::Encode {
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special_tokens` drops tokens marked special in tokenizer.json.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text =
            self.inner
                .decode(ids, skip_special_tokens)
                .map_err(|e| TokenizerError::Decode {
                    message: e.to_string(),
                })?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Id of a token (vocabulary entry or added token), as `convert_tokens_to_ids`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id (byte-level tokens in their mapped form, e.g. `Ġworld`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids including added tokens (`len(tokenizer)` in transformers).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` object, for what this wrapper does not expose.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// transformers' `clean_up_tokenization`: removes the space before punctuation and contractions.
pub fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_string(), |acc, (from, to)| acc.replace(from, to))
}
