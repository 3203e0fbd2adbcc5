//! The embedding pipeline: text -> tokens -> length-grouped packed batches -> encoder ->
//! pooling -> vectors in input order.

use rayon::prelude::*;

use crate::backend::cpu::Cpu;
use crate::backend::{Backend, SeqMeta};
use crate::config::{ModelConfig, ModelFiles, SentenceConfig};
use crate::error::{Error, Result};
use crate::model::{Dense, Encoder};
use crate::split::{Exchange, split_parts};
use crate::tokenizer::{Batch, Encoded, TextTokenizer};

/// Per-call options; `Default` gives what sentence-transformers' `encode()` does for the model.
#[derive(Debug, Clone)]
pub struct EmbedOptions {
    /// Most texts run together through the encoder; `None`: the backend's default
    /// ([`Backend::default_batch`]: 32 on the CPU, as sentence-transformers; a GPU fills
    /// batches by tokens). Texts are grouped by length first.
    pub batch_size: Option<usize>,
    /// Most tokens in one batch; `None`: the backend's default (a GPU's measured budget; no
    /// limit on the CPU). A text longer than this still runs, alone.
    pub batch_tokens: Option<usize>,
    /// Name of a prompt from `config_sentence_transformers.json` ("query", "document"…);
    /// `None` uses the model's `default_prompt_name`, if any.
    pub prompt_name: Option<String>,
    /// A literal prompt prepended to every text; overrides `prompt_name`.
    pub prompt: Option<String>,
    /// L2-normalize the vectors; `None` follows the model (its Normalize module).
    pub normalize: Option<bool>,
    /// Cut texts longer than the model's `max_seq_length` (as sentence-transformers does);
    /// when false, such a text is an error instead.
    pub truncate: bool,
    /// Keep the first `truncate_dim` values of each vector (Matryoshka models), as
    /// sentence-transformers' `truncate_dim` does: after normalization, so a truncated vector
    /// of a normalizing model is not of unit length. `None`: the model's own setting, if any.
    pub truncate_dim: Option<usize>,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            batch_size: None,
            batch_tokens: None,
            prompt_name: None,
            prompt: None,
            normalize: None,
            truncate: true,
            truncate_dim: None,
        }
    }
}

/// Gives the caller's event loop a turn: pending once, woken at once. Between waves of
/// [`Embedder::embed_async`], so a page's JS layer (which polls from tasks, see
/// `crate::wasm`) can paint and handle input during a long call; under `pollster` it costs a
/// re-poll.
pub(crate) async fn yield_now() {
    struct YieldNow(bool);
    impl std::future::Future for YieldNow {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.0 {
                return std::task::Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
    YieldNow(false).await
}

/// A loaded sentence-embedding model on one backend.
pub struct Embedder<B: Backend> {
    backend: B,
    encoder: Encoder<B>,
    /// `Dense` modules after pooling.
    dense: Vec<Dense<B>>,
    tokenizer: TextTokenizer,
    pub model: ModelConfig,
    pub sentence: SentenceConfig,
}

/// The token-level output of the encoder for one text, for inspection and tests.
pub struct TokenStates {
    pub ids: Vec<u32>,
    /// `[ids.len(), hidden]`
    pub hidden: Vec<f32>,
}

impl<B: Backend> Embedder<B> {
    pub fn load(mut backend: B, files: &ModelFiles) -> Result<Self> {
        let files = &files.resolved()?;
        let model = ModelConfig::from_files(files)?;
        if !model.activations_fit_f16() {
            backend.keep_f32_arithmetic();
        }
        let (sentence, tokenizer) = text_side(files, &model)?;
        let encoder = Encoder::load(&backend, &model, files)?;
        let dense = sentence.dense.iter().map(|d| Dense::load(&backend, d, files)).collect::<Result<Vec<_>>>()?;
        Ok(Embedder { backend, encoder, dense, tokenizer, model, sentence })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Length of the output vectors.
    pub fn dim(&self) -> usize {
        self.sentence.truncate_dim.unwrap_or(usize::MAX).min(self.pooled_dim())
    }

    /// Length of the pooled vectors, before `truncate_dim` cuts them.
    fn pooled_dim(&self) -> usize {
        self.dense
            .last()
            .map_or(self.sentence.pooling.modes.len() * self.model.hidden_size(), |d| d.config.out_features)
    }

    /// Most tokens (special tokens included) a text is cut to.
    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_seq_length()
    }

    /// What the weights are stored as (see [`Encoder::dtype_name`]).
    pub fn dtype_name(&self) -> String {
        self.encoder.dtype_name(&self.backend)
    }

    /// `text` cut into pieces that each fit the model (see [`TextTokenizer::chunks`]):
    /// `max_tokens` is capped at what the model takes besides its special tokens and the
    /// model's default prompt, so a chunk embedded with default options is never cut.
    pub fn chunks<'t>(&self, text: &'t str, max_tokens: usize, overlap: usize) -> Result<Vec<&'t str>> {
        chunk_text(&self.tokenizer, &self.sentence, text, max_tokens, overlap)
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        self.tokenizer.encode(texts)
    }

    fn resolve_prompt(&self, opts: &EmbedOptions) -> Result<Option<String>> {
        resolve_prompt(&self.sentence, opts)
    }

    /// Length of the vectors `opts` ask for: `truncate_dim`, else the model's [`Self::dim`].
    pub fn dim_for(&self, opts: &EmbedOptions) -> Result<usize> {
        match opts.truncate_dim {
            None => Ok(self.dim()),
            Some(n) if n == 0 || n > self.pooled_dim() => {
                Err(Error::Input(format!("truncate_dim {n}: the model's vectors have {} values", self.pooled_dim())))
            }
            Some(n) => Ok(n),
        }
    }

    /// Tokenizes and checks texts; returns the encodings, how many leading tokens pooling skips,
    /// and the length of the vectors `opts` ask for ([`Self::dim_for`]).
    fn prepare(&self, texts: &[&str], opts: &EmbedOptions) -> Result<(Vec<Encoded>, u32, usize)> {
        if opts.batch_size == Some(0) || opts.batch_tokens == Some(0) {
            return Err(Error::Input("batch_size and batch_tokens must be at least 1".into()));
        }
        let keep = self.dim_for(opts)?;
        let prompt = self.resolve_prompt(opts)?;
        let encoded = match &prompt {
            Some(p) => {
                let joined: Vec<String> = texts.iter().map(|t| format!("{p}{t}")).collect();
                self.tokenizer.encode(&joined.iter().map(|s| s.as_str()).collect::<Vec<_>>())?
            }
            None => self.tokenizer.encode(texts)?,
        };
        for (i, e) in encoded.iter().enumerate() {
            if e.ids.is_empty() {
                return Err(Error::Input(format!(
                    "text {i} gives no tokens (its tokenizer adds no special tokens and the text is empty)"
                )));
            }
            if e.truncated && !opts.truncate {
                return Err(Error::Input(format!(
                    "text {i} is longer than the model's limit of {} tokens (allow truncation to cut it)",
                    self.max_tokens()
                )));
            }
        }
        let pool_start = match &prompt {
            Some(p) if !self.sentence.pooling.include_prompt => self.tokenizer.prompt_length(p)?,
            _ => 0,
        };
        Ok((encoded, pool_start, keep))
    }

    /// `encoded` in batches: at most `batch_size` texts and `batch_tokens` tokens each (the
    /// backend's defaults where `opts` leave them), never over what the backend can hold.
    fn batches(&self, encoded: &[Encoded], opts: &EmbedOptions) -> Vec<Vec<usize>> {
        let defaults = self.backend.default_batch();
        let texts = opts.batch_size.unwrap_or(defaults.texts);
        let can_hold = self.backend.max_batch_tokens(self.model.widest_activation());
        let tokens = opts.batch_tokens.unwrap_or(defaults.tokens).min(can_hold);
        length_groups(encoded, texts, tokens)
    }

    /// Encoder and pooling for one group of texts -> `[group.len(), dim]` on the device.
    fn run_group(&self, encoded: &[Encoded], group: &[usize], pool_start: u32, normalize: bool) -> Result<B::Tensor> {
        let batch = Batch::pack(&group.iter().map(|&i| &encoded[i]).collect::<Vec<_>>(), pool_start);
        let hidden = self.encoder.forward(&self.backend, &batch.ids, &batch.type_ids, &batch.meta)?;
        self.pool(&hidden, &batch.meta, normalize)
    }

    /// The sentence modules after the encoder: last hidden state -> `[texts, dim]`.
    fn pool(&self, hidden: &B::Tensor, meta: &SeqMeta, normalize: bool) -> Result<B::Tensor> {
        let modes = &self.sentence.pooling.modes;
        if self.dense.is_empty() {
            return self.backend.pool(hidden, meta, modes, normalize);
        }
        // Pooling, Dense…, then Normalize, in modules.json's order.
        let mut x = self.backend.pool(hidden, meta, modes, false)?;
        for d in &self.dense {
            x = d.forward(&self.backend, &x)?;
        }
        if normalize { self.backend.normalize(x) } else { Ok(x) }
    }

    /// A group's result checked for NaN and ±Inf: broken weights (or a `layer_norm_eps` that
    /// passed the config checks but not the arithmetic) are an error naming the block where
    /// the values first went non-finite, never vectors handed to the caller.
    async fn check_finite(&self, encoded: &[Encoded], group: &[usize], pool_start: u32, flat: &[f32]) -> Result<()> {
        if flat.iter().all(|v| v.is_finite()) {
            return Ok(());
        }
        let batch = Batch::pack(&group.iter().map(|&i| &encoded[i]).collect::<Vec<_>>(), pool_start);
        let at = self.encoder.first_non_finite(&self.backend, &batch.ids, &batch.type_ids, &batch.meta).await?;
        let at = at.unwrap_or_else(|| "pooling".into());
        Err(Error::weight(
            at,
            "the forward pass produced non-finite values (NaN or Inf) here: the model's weights or config are \
             broken or out of range for f32",
        ))
    }

    /// A group's result, checked as [`Self::check_finite`] does; where the backend computed in
    /// reduced arithmetic (f16 on a GPU, where an activation past f16's range gives Inf), it
    /// keeps f32 from then on and the group runs again, so the caller gets the f32 result.
    async fn checked(
        &self,
        encoded: &[Encoded],
        group: &[usize],
        pool_start: u32,
        normalize: bool,
        flat: Vec<f32>,
    ) -> Result<Vec<f32>> {
        if !flat.iter().all(|v| v.is_finite()) && self.backend.fall_back_to_f32() {
            let pooled = self.run_group(encoded, group, pool_start, normalize)?;
            let again = self.backend.read(&pooled).await?;
            self.check_finite(encoded, group, pool_start, &again).await?;
            return Ok(again);
        }
        self.check_finite(encoded, group, pool_start, &flat).await?;
        Ok(flat)
    }

    /// Embeds texts; one vector per text, in input order. Empty input gives an empty list.
    /// Batches are recorded [`Backend::batches_per_read`] at a time and read back together
    /// (on a GPU: one submit); `progress(done, total)` is called after each such wave, and the
    /// caller's event loop gets a turn before the next.
    pub async fn embed_async(
        &self,
        texts: &[&str],
        opts: &EmbedOptions,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let (encoded, pool_start, keep) = self.prepare(texts, opts)?;
        let normalize = opts.normalize.unwrap_or(self.sentence.normalize);
        let mut out = vec![Vec::new(); texts.len()];
        let mut done = 0;
        let groups = self.batches(&encoded, opts);
        for (w, wave) in groups.chunks(self.backend.batches_per_read().max(1)).enumerate() {
            if w > 0 {
                yield_now().await;
            }
            let pooled =
                wave.iter().map(|g| self.run_group(&encoded, g, pool_start, normalize)).collect::<Result<Vec<_>>>()?;
            let flats = self.backend.read_many(&pooled.iter().collect::<Vec<_>>()).await?;
            for (group, flat) in wave.iter().zip(flats) {
                let flat = self.checked(&encoded, group, pool_start, normalize, flat).await?;
                scatter(&mut out, group, &flat, self.pooled_dim(), keep);
                done += group.len();
            }
            progress(done, texts.len());
        }
        Ok(out)
    }

    /// Blocking embed (native code, or the CPU backend anywhere); one vector per text, in input
    /// order.
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Vec<f32>>>
    where
        B: Sync,
        B::Tensor: Send,
        B::Matrix: Sync,
        B::Vector: Sync,
    {
        self.embed_with_progress(texts, opts, |_, _| {})
    }

    /// Blocking embed that reports `(done, total)` after each batch. Where the backend allows
    /// ([`Backend::concurrent_batches`]), batches run side by side on rayon's threads.
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        opts: &EmbedOptions,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<Vec<Vec<f32>>>
    where
        B: Sync,
        B::Tensor: Send,
        B::Matrix: Sync,
        B::Vector: Sync,
    {
        if self.backend.concurrent_batches() <= 1 {
            return pollster::block_on(self.embed_async(texts, opts, progress));
        }
        let (encoded, pool_start, keep) = self.prepare(texts, opts)?;
        let normalize = opts.normalize.unwrap_or(self.sentence.normalize);
        let groups = self.batches(&encoded, opts);
        let progress = std::sync::Mutex::new((0usize, progress));
        let results: Vec<Result<Vec<f32>>> = groups
            .par_iter()
            .with_max_len(1)
            .map(|group| {
                let pooled = self.run_group(&encoded, group, pool_start, normalize)?;
                let flat = pollster::block_on(self.backend.read(&pooled))?;
                let flat = pollster::block_on(self.checked(&encoded, group, pool_start, normalize, flat))?;
                if let Ok(mut p) = progress.lock() {
                    p.0 += group.len();
                    let done = p.0;
                    (p.1)(done, texts.len());
                }
                Ok(flat)
            })
            .collect();
        let mut out = vec![Vec::new(); texts.len()];
        for (group, flat) in groups.iter().zip(results) {
            scatter(&mut out, group, &flat?, self.pooled_dim(), keep);
        }
        Ok(out)
    }

    /// The encoder's last hidden state for each text alone (no batching, no pooling).
    pub fn token_states(&self, texts: &[&str]) -> Result<Vec<TokenStates>> {
        let encoded = self.tokenizer.encode(texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for e in &encoded {
            let batch = Batch::pack(&[e], 0);
            let hidden = self.encoder.forward(&self.backend, &batch.ids, &batch.type_ids, &batch.meta)?;
            let hidden = pollster::block_on(self.backend.read(&hidden))?;
            out.push(TokenStates { ids: e.ids.clone(), hidden });
        }
        Ok(out)
    }
}

impl Embedder<Cpu> {
    /// Whether [`Self::embed_split`] shares this model's forward pass between its parts (the
    /// BERT family; other models run whole on part 0).
    pub fn can_split(&self) -> bool {
        matches!(self.encoder, Encoder::Bert(_))
    }

    /// One text embedded by `parts` callers together, each with its own copy of this model,
    /// this one being `part` ([`crate::split`]): every part calls this with the same text and
    /// options, and they trade rows through `ex`. Part 0 returns the vector, equal to
    /// [`Self::embed_async`]'s (the tests check); the others return `None`. A text too short to
    /// be worth cutting ([`split_parts`]) or a model that cannot ([`Self::can_split`]) runs
    /// whole on part 0 and the others return at once, trading nothing.
    pub async fn embed_split(
        &self,
        text: &str,
        opts: &EmbedOptions,
        part: usize,
        parts: usize,
        ex: &mut impl Exchange,
    ) -> Result<Option<Vec<f32>>> {
        let (encoded, pool_start, keep) = self.prepare(&[text], opts)?;
        let normalize = opts.normalize.unwrap_or(self.sentence.normalize);
        let batch = Batch::pack(&[&encoded[0]], pool_start);
        let parts = match &self.encoder {
            Encoder::Bert(_) => split_parts(batch.meta.tokens, parts),
            _ => 1,
        };
        if part >= parts {
            return Ok(None);
        }
        let hidden = match &self.encoder {
            Encoder::Bert(m) if parts > 1 => m.forward_split(&self.backend, &batch, part, parts, ex).await?,
            e => e.forward(&self.backend, &batch.ids, &batch.type_ids, &batch.meta)?,
        };
        if part != 0 {
            return Ok(None);
        }
        let flat = self.backend.read(&self.pool(&hidden, &batch.meta, normalize)?).await?;
        self.check_finite(&encoded, &[0], pool_start, &flat).await?;
        Ok(Some(flat[..keep].to_vec()))
    }
}

/// Puts the rows of a group's `[group.len(), dim]` result at the group's input positions.
/// Keeps the first `keep` values of each row (`truncate_dim`).
fn scatter(out: &mut [Vec<f32>], group: &[usize], flat: &[f32], dim: usize, keep: usize) {
    for (row, &i) in flat.chunks_exact(dim).zip(group) {
        out[i] = row[..keep].to_vec();
    }
}

/// Indices of `encoded` grouped into batches of similar length: sorted by token count (stable,
/// so equal lengths keep input order), then cut into runs of `batch_size` texts and at most
/// `max_tokens` tokens (a backend's limit; a single text is never split). Batches are packed,
/// not padded, so this no longer saves compute; it keeps attention's per-sequence work even
/// across the threads.
pub fn length_groups(encoded: &[Encoded], batch_size: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].ids.len());
    let mut groups: Vec<Vec<usize>> = vec![];
    let mut tokens = 0;
    for i in order {
        let len = encoded[i].ids.len();
        match groups.last_mut() {
            Some(g) if g.len() < batch_size.max(1) && tokens + len <= max_tokens => {
                g.push(i);
                tokens += len;
            }
            _ => {
                groups.push(vec![i]);
                tokens = len;
            }
        }
    }
    groups
}

/// The sentence-transformers config and the tokenizer of resolved `files`. Every backend
/// takes texts as long as the model does (the GPU's attention has no length cap since it
/// streams keys through workgroup memory).
fn text_side(files: &ModelFiles, model: &ModelConfig) -> Result<(SentenceConfig, TextTokenizer)> {
    let sentence = SentenceConfig::from_files(files, model)?;
    let tokenizer = TextTokenizer::from_files(files, &sentence)?;
    Ok((sentence, tokenizer))
}

/// The prompt `opts` ask for: a literal one, a named one, or the model's default.
fn resolve_prompt(sentence: &SentenceConfig, opts: &EmbedOptions) -> Result<Option<String>> {
    if let Some(p) = &opts.prompt {
        return Ok(Some(p.clone()));
    }
    let name = opts.prompt_name.as_ref().or(sentence.default_prompt_name.as_ref());
    match name {
        None => Ok(None),
        Some(name) => match sentence.prompts.get(name) {
            Some(p) => Ok(Some(p.clone())),
            None => {
                let known: Vec<&str> = sentence.prompts.keys().map(|s| s.as_str()).collect();
                Err(Error::Input(format!(
                    "no prompt named `{name}` in this model (it has: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )))
            }
        },
    }
}

/// `text` cut into pieces that each fit the model (see [`TextTokenizer::chunks`]): `max_tokens`
/// is capped at what the model takes besides its special tokens and its default prompt, so a
/// chunk embedded with default options is never cut.
fn chunk_text<'t>(
    tokenizer: &TextTokenizer,
    sentence: &SentenceConfig,
    text: &'t str,
    max_tokens: usize,
    overlap: usize,
) -> Result<Vec<&'t str>> {
    // The leading special tokens and the prompt's (prompt_length counts both), then the
    // closing special token.
    let lead = match resolve_prompt(sentence, &EmbedOptions::default())? {
        Some(p) => (tokenizer.prompt_length(&p)? as usize).max(1),
        None => 1,
    };
    let room = tokenizer.max_seq_length().saturating_sub(lead + 1).max(1);
    // A size cut down to the model's room takes the overlap down with it.
    let overlap = if max_tokens > room { overlap.min(room - 1) } else { overlap };
    tokenizer.chunks(text, max_tokens.min(room), overlap)
}

/// What `chunks()` needs and nothing more: the tokenizer and the sentence-transformers config,
/// loaded from a model's files without its weights (a page whose model runs in workers keeps
/// one of these, not a copy of the weights).
pub struct Chunker {
    tokenizer: TextTokenizer,
    sentence: SentenceConfig,
}

impl Chunker {
    /// From the model's files (the weights may be left out, except a GGUF file, whose header
    /// holds the config).
    pub fn load(files: &ModelFiles) -> Result<Self> {
        let files = &files.resolved()?;
        let model = ModelConfig::from_files(files)?;
        let (sentence, tokenizer) = text_side(files, &model)?;
        Ok(Chunker { tokenizer, sentence })
    }

    /// As [`Embedder::chunks`].
    pub fn chunks<'t>(&self, text: &'t str, max_tokens: usize, overlap: usize) -> Result<Vec<&'t str>> {
        chunk_text(&self.tokenizer, &self.sentence, text, max_tokens, overlap)
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_seq_length()
    }
}
