//! One text's forward pass shared by several callers that share no memory.
//!
//! In a browser page that is not cross-origin isolated, wembed's workers each hold their own
//! copy of the model and can only pass messages. A batch of texts is spread over them text by
//! text; a single text (a search query: the call a user waits on) would run on one of them
//! while the other cores idle. [`Embedder::embed_split`](crate::Embedder::embed_split) cuts that
//! text's tokens into row ranges instead, one per worker: each worker runs the matmuls, layer
//! norms and activations of its rows only (all of them row by row), and once per layer the
//! workers trade their rows of the packed query/key/value projection ([`Exchange::all_gather`]),
//! since attention reads every key and value. Each part then attends for its own queries over
//! every key ([`Cpu::attention_rows`](crate::backend::cpu::Cpu::attention_rows)). Until
//! 2026-12-07 each computed the whole attention and kept its rows: on a 146-token text that
//! is 14% of one worker's time, which both workers paid in full. After the last layer the
//! hidden rows are gathered once more and the first part pools.
//!
//! Only the BERT family does this (the default models and their kin: MiniLM, MPNet, BGE, E5,
//! XLM-R); others run whole on the first part.

use std::future::Future;
use std::ops::Range;

use crate::error::Result;

/// Fewest rows a part takes. Below it the per-layer trade costs more than the rows save: a
/// wasm kernel's tile is up to 6 rows, so 8 rows are still two passes over the weights, and a
/// message between workers costs a wake-up on each side. Measured in Node (all-MiniLM-L6-v2
/// q8, one worker against two sharing the text, calls alternating, p50 of 40; lengths under
/// 24 approximate, counted in words): ~12 tokens 0.90x, ~16 1.00x, 24 1.12-1.20x, 32
/// 1.26-1.30x, 48 to 128 1.37-1.46x. Since each part attends for its own queries only
/// (2026-12-07, p50 of 21): 24 tokens 1.12x, 32 1.26x, 48 1.45x, 64 1.61x, 128 1.67-1.78x.
pub const MIN_ROWS_PER_PART: usize = 12;

/// How the parts of a split forward pass trade rows.
pub trait Exchange {
    /// Sends this part's rows (`[rows, cols]`, row-major) to parts `0..parts` and returns every
    /// part's rows in part order, this part's own included. Every part calls it the same number
    /// of times with the same `parts`; an error (a peer that failed) ends the pass.
    fn all_gather(&mut self, mine: Vec<f32>, parts: usize) -> impl Future<Output = Result<Vec<Vec<f32>>>>;
}

/// How many parts a text of `tokens` tokens is cut into when `parts` callers are there: at
/// least [`MIN_ROWS_PER_PART`] rows each, at least one part.
pub fn split_parts(tokens: usize, parts: usize) -> usize {
    parts.min(tokens / MIN_ROWS_PER_PART).max(1)
}

/// Rows of part `part` of `parts` over `tokens` rows: contiguous, in part order, sizes one apart
/// (the first `tokens % parts` parts one row longer).
pub fn split_rows(tokens: usize, parts: usize, part: usize) -> Range<usize> {
    let (base, longer) = (tokens / parts, tokens % parts);
    let start = part * base + part.min(longer);
    start..start + base + usize::from(part < longer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_the_text_in_order_sizes_one_apart() {
        for tokens in 0..40 {
            for parts in 1..6 {
                let ranges: Vec<_> = (0..parts).map(|p| split_rows(tokens, parts, p)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[parts - 1].end, tokens);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1, "{tokens} {parts} {ranges:?}");
                }
            }
        }
    }

    #[test]
    fn short_texts_use_fewer_parts() {
        assert_eq!(split_parts(2, 2), 1);
        assert_eq!(split_parts(16, 2), 1);
        assert_eq!(split_parts(23, 2), 1);
        assert_eq!(split_parts(24, 2), 2);
        assert_eq!(split_parts(30, 4), 2);
        assert_eq!(split_parts(400, 4), 4);
        assert_eq!(split_parts(0, 3), 1);
    }
}
