//! Hugging Face `tokenizer.json` -> token ids, truncated the way sentence-transformers does, and
//! batches of them packed back to back.

use tokenizers::{PaddingParams, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::backend::SeqMeta;
use crate::config::{ModelFiles, SentenceConfig};
use crate::error::{Error, Result};

/// One tokenized text.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Tokens dropped by truncation at `max_seq_length`.
    pub truncated: bool,
}

/// Token ids of several texts back to back, unpadded: `[tokens]`, with [`SeqMeta`] saying
/// where each text starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub meta: SeqMeta,
}

impl Batch {
    /// Packs `encoded`; `pool_start` leaves the first tokens out of mean/max pooling (clamped
    /// so a text shorter than its prompt still pools its last token).
    pub fn pack(encoded: &[&Encoded], pool_start: u32) -> Batch {
        let ids = encoded.iter().flat_map(|e| e.ids.iter().copied()).collect();
        let type_ids = encoded.iter().flat_map(|e| e.type_ids.iter().copied()).collect();
        let lens: Vec<u32> = encoded.iter().map(|e| e.ids.len() as u32).collect();
        let starts = vec![pool_start; lens.len()];
        Batch { ids, type_ids, meta: SeqMeta::new(lens, starts) }
    }
}

/// The model's tokenizer, set up to cut at `max_seq_length` and never pad by itself.
pub struct TextTokenizer {
    inner: Tokenizer,
    max_seq_length: usize,
    lower_case: bool,
}

impl TextTokenizer {
    pub fn from_files(files: &ModelFiles, sentence: &SentenceConfig) -> Result<Self> {
        let name = "tokenizer.json";
        let bytes = files.require(name)?;
        let mut inner =
            Tokenizer::from_bytes(bytes).map_err(|e| Error::bad_file(format!("{}/{name}", files.origin()), e))?;
        // tokenizer.json often carries its own truncation and padding (all-MiniLM-L6-v2's pads
        // and cuts at 128). sentence-transformers ignores both and cuts at max_seq_length,
        // counting the special tokens, so the closing [SEP] always survives.
        inner.with_padding(None::<PaddingParams>);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: sentence.max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(format!("cannot truncate at {}: {e}", sentence.max_seq_length)))?;
        Ok(TextTokenizer { inner, max_seq_length: sentence.max_seq_length, lower_case: sentence.do_lower_case })
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Tokenizes texts as sentence-transformers does: surrounding whitespace stripped,
    /// lower-cased if the model says so, special tokens added, truncated at `max_seq_length`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let prepared: Vec<String> = texts
            .iter()
            .map(|t| {
                let t = t.trim();
                if self.lower_case { t.to_lowercase() } else { t.to_string() }
            })
            .collect();
        let encodings = self.inner.encode_batch(prepared, true).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|enc| Encoded {
                truncated: !enc.get_overflowing().is_empty(),
                ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
            })
            .collect())
    }

    /// Number of tokens a prompt occupies at the start of a text, as sentence-transformers
    /// computes it for `include_prompt: false`: the prompt's own tokens, less a closing special
    /// token ([SEP], EOS) if the tokenizer adds one.
    pub fn prompt_length(&self, prompt: &str) -> Result<u32> {
        let enc = self.encode(&[prompt])?;
        let ids = &enc[0].ids;
        let special = self.inner.get_added_tokens_decoder();
        let ends_special = ids.last().is_some_and(|id| special.get(id).is_some_and(|t| t.special));
        Ok((ids.len() - usize::from(ends_special)) as u32)
    }
}
