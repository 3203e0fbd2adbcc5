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
    /// The same tokenizer without truncation, for cutting long texts into chunks.
    whole: Tokenizer,
    max_seq_length: usize,
    lower_case: bool,
}

/// The tokenizers crate reads a `TemplateProcessing` from JSON without the checks its builder
/// makes, then indexes by what it read while encoding: a template naming a special token it does
/// not define, `$B` in the single-text template, or a special token with more ids than tokens
/// panics there (found by fuzzing). Checked here, at any depth (a `Sequence` of processors).
fn check_templates(v: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    let Value::Object(map) = v else {
        return match v {
            Value::Array(items) => items.iter().try_for_each(check_templates),
            _ => Ok(()),
        };
    };
    if map.get("type").and_then(Value::as_str) == Some("TemplateProcessing") {
        let empty = serde_json::Map::new();
        let defined = map.get("special_tokens").and_then(Value::as_object).unwrap_or(&empty);
        for (name, token) in defined {
            let len = |key| token.get(key).and_then(Value::as_array).map(Vec::len);
            if len("ids") != len("tokens") {
                return Err(format!("special token {name:?} has {:?} ids for {:?} tokens", len("ids"), len("tokens")));
            }
        }
        for (template, two_texts) in [("single", false), ("pair", true)] {
            let pieces = map.get(template).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for piece in pieces {
                if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str)
                    && !defined.contains_key(id)
                {
                    return Err(format!(
                        "the {template} template names special token {id:?}, which special_tokens lacks"
                    ));
                }
                if piece.pointer("/Sequence/id").and_then(Value::as_str) == Some("B") && !two_texts {
                    return Err("the single-text template names a second text ($B)".into());
                }
            }
        }
    }
    map.values().try_for_each(check_templates)
}

/// Whether a SentencePiece `precompiled_charsmap` (a little-endian u32 trie size, a darts-clone
/// double array of u32 units, then NUL-separated normalized strings) can be searched without
/// reading out of bounds. The tokenizers crate (spm_precompiled) indexes the array and the
/// strings by what it reads there while encoding, so a forged one panics mid-encode; this walks
/// every node a search can reach, as its `common_prefix_search` and `transform` do (for a
/// tokenizer.json's Precompiled normalizer here, for a GGUF file's charsmap in `gguf`). darts-clone
/// sizes arrays in blocks of 256 units (XLM-R's: 44,800), so a node's 255 children stay in it.
pub(crate) fn charsmap_is_sound(bytes: &[u8]) -> bool {
    let Some(size) = bytes.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
        return false;
    };
    let Some(trie) = bytes.get(4..4 + size / 4 * 4) else { return false };
    let Ok(normalized) = std::str::from_utf8(&bytes[4 + trie.len()..]) else { return false };
    let array: Vec<usize> =
        trie.chunks_exact(4).map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]) as usize).collect();
    if array.is_empty() || !array.len().is_multiple_of(256) {
        return false;
    }
    let offset = |u: usize| (u >> 10) << ((u & (1 << 9)) >> 6);
    let label = |u: usize| u & ((1 << 31) | 0xFF);
    let has_leaf = |u: usize| (u >> 8) & 1 == 1;
    let value = |u: usize| u & ((1 << 31) - 1);
    let root = offset(array[0]);
    let mut seen = vec![false; array.len()];
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if p >= array.len() {
            return false;
        }
        if std::mem::replace(&mut seen[p], true) {
            continue;
        }
        for c in 1..=255 {
            // In the block of `p`, which is whole.
            let unit = array[p ^ c];
            if label(unit) != c {
                continue;
            }
            let next = (p ^ c) ^ offset(unit);
            if next >= array.len() {
                return false;
            }
            if has_leaf(unit) && !normalized.is_char_boundary(value(array[next])) {
                return false;
            }
            stack.push(next);
        }
    }
    true
}

/// Standard base64 (padded or not) -> bytes; None if it is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for quad in text.chunks(4) {
        if quad.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in quad.iter().enumerate() {
            n |= (digit(c)? as u32) << (18 - 6 * i);
        }
        out.extend(&n.to_be_bytes()[1..quad.len()]);
    }
    Some(out)
}

/// Every Precompiled normalizer's charsmap, at any depth (a `Sequence` of normalizers), must be
/// base64 of a sound charsmap ([`charsmap_is_sound`]): the tokenizers crate would load a forged
/// one and panic on the first text.
fn check_charsmaps(v: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("Precompiled") {
                let b64 = map.get("precompiled_charsmap").and_then(Value::as_str).unwrap_or_default();
                let sound = base64_decode(b64).is_some_and(|bytes| bytes.is_empty() || charsmap_is_sound(&bytes));
                if !sound {
                    return Err(
                        "the Precompiled normalizer's charsmap is damaged (its trie would be read out of bounds)"
                            .into(),
                    );
                }
            }
            map.values().try_for_each(check_charsmaps)
        }
        Value::Array(items) => items.iter().try_for_each(check_charsmaps),
        _ => Ok(()),
    }
}

/// transformers 5 builds some tokenizer classes from their own code, taking only the vocabulary,
/// the post-processor and a SentencePiece charsmap from tokenizer.json
/// (`TokenizersBackend.convert_to_native_format`), and sentence-transformers tokenizes with what
/// it builds. Where published files differ from that build, the class decides the ids: an
/// XLM-RoBERTa tokenizer.json puts Metaspace straight after its normalizer, so spaces around a
/// text (or a text of spaces) become `▁` tokens that `XLMRobertaTokenizer`, splitting on
/// whitespace first, never makes. Its class is the one transformers picks for `model_type:
/// xlm-roberta` (multilingual-e5, bge-m3, paraphrase-multilingual-mpnet): rebuilt here as
/// transformers/models/xlm_roberta/tokenization_xlm_roberta.py does, with the file's
/// Precompiled charsmap as the only normalizer.
fn as_transformers_builds(json: &mut serde_json::Value, model_type: Option<&str>) {
    use serde_json::{Value, json};
    if model_type != Some("xlm-roberta") || json.pointer("/model/type").and_then(Value::as_str) != Some("Unigram") {
        return;
    }
    let precompiled = |n: &Value| n.get("type").and_then(Value::as_str) == Some("Precompiled");
    let normalizer = match json.get("normalizer") {
        Some(n) if precompiled(n) => n.clone(),
        Some(n) => n
            .get("normalizers")
            .and_then(Value::as_array)
            .and_then(|all| all.iter().find(|n| precompiled(n)).cloned())
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    json["normalizer"] = normalizer;
    json["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
    ]});
}

impl TextTokenizer {
    pub fn from_files(files: &ModelFiles, sentence: &SentenceConfig) -> Result<Self> {
        let name = "tokenizer.json";
        let bytes = files.require(name)?;
        let bad = |e: &dyn std::fmt::Display| Error::bad_file(format!("{}/{name}", files.origin()), e);
        // JSON first: the tokenizers crate panics on some malformed files (a truncated decoder
        // section) instead of returning its error.
        let mut json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(&e))?;
        let config: Option<serde_json::Value> = files.json("config.json")?;
        as_transformers_builds(&mut json, config.as_ref().and_then(|c| c.get("model_type")?.as_str()));
        if let Some(post) = json.get("post_processor") {
            check_templates(post).map_err(|e| bad(&e))?;
        }
        if let Some(normalizer) = json.get("normalizer") {
            check_charsmaps(normalizer).map_err(|e| bad(&e))?;
        }
        let mut inner: Tokenizer = serde_json::from_value(json).map_err(|e| bad(&e))?;
        let mut whole = inner.clone();
        whole.with_padding(None::<PaddingParams>);
        whole.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
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
        Ok(TextTokenizer { inner, whole, max_seq_length: sentence.max_seq_length, lower_case: sentence.do_lower_case })
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Tokenizes texts as sentence-transformers 6 does: as given (it no longer strips them; a
    /// byte-level BPE makes tokens of surrounding spaces), lower-cased if the model says so,
    /// special tokens added, truncated at `max_seq_length`.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let prepared: Vec<String> =
            texts.iter().map(|t| if self.lower_case { t.to_lowercase() } else { t.to_string() }).collect();
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

    /// Cuts `text` into pieces of at most `max_tokens` tokens (not counting special tokens),
    /// consecutive pieces sharing `overlap` tokens, each piece a slice of `text` from its first
    /// token's start to its last token's end. A text that fits is one piece; a text with no
    /// tokens is none.
    pub fn chunks<'t>(&self, text: &'t str, max_tokens: usize, overlap: usize) -> Result<Vec<&'t str>> {
        if max_tokens == 0 || overlap >= max_tokens {
            return Err(Error::Input(format!(
                "chunks of {max_tokens} tokens overlapping by {overlap}: the overlap must be smaller than the size"
            )));
        }
        let enc = self.whole.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        // Byte offsets into `text`; the tokenizer aligns them through its normalizer.
        let offsets = enc.get_offsets();
        let n = offsets.len();
        let mut out = vec![];
        let mut start = 0;
        while start < n {
            let end = (start + max_tokens).min(n);
            let (from, to) = (offsets[start].0, offsets[end - 1].1);
            let piece = text.get(from..to).ok_or_else(|| {
                Error::Tokenizer(format!("token offsets {from}..{to} do not fall on character boundaries"))
            })?;
            out.push(piece);
            if end == n {
                break;
            }
            start = end - overlap;
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The 240 KB nmt_nfkc charsmap of a real SentencePiece Unigram model (the tokenizers
    /// fixture's, as XLM-R's) passes; the same file with its root pointing past the trie, or
    /// with a charsmap that is not base64, is refused before the tokenizers crate could panic.
    #[test]
    fn charsmaps_are_walked_before_use() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizers/unigram-precompiled/tokenizer.json");
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(check_charsmaps(&json), Ok(()));
        let steps = json["normalizer"]["normalizers"].as_array().expect("a Sequence normalizer");
        let b64 = steps.iter().find_map(|n| n["precompiled_charsmap"].as_str()).expect("a Precompiled step");
        let bytes = base64_decode(b64).unwrap();
        assert!(bytes.len() > 200_000 && charsmap_is_sound(&bytes));
        let mut forged = bytes.clone();
        forged[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(!charsmap_is_sound(&forged));
        for bad in [crate::gguf::tests_base64(&forged), "not base64!".to_string()] {
            let precompiled = serde_json::json!({"type": "Precompiled", "precompiled_charsmap": bad});
            let wrapped = serde_json::json!({"normalizer": {"type": "Sequence", "normalizers": [precompiled]}});
            assert!(check_charsmaps(&wrapped).unwrap_err().contains("charsmap is damaged"));
        }
        assert_eq!(base64_decode("Zm9vYg"), Some(b"foob".to_vec()));
        assert_eq!(base64_decode("Zm9vYg=="), Some(b"foob".to_vec()));
    }
}
