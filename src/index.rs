//! Exact-or-rescored vector search over sentence embeddings: the numeric core of the npm
//! package's `SemanticIndex` (which adds documents, chunks, metadata and persistence).
//!
//! Vectors are L2-normalized on the way in, so the score is the cosine. The exact f32 vectors
//! are always kept (they are what is persisted, and what rescoring reads); `Storage` says what
//! the scan reads: the f32 vectors themselves, int8 copies (one scale per vector, 4x less memory
//! traffic), or sign bits (32x less, a Hamming scan). The compressed scans take more candidates
//! than asked for and rescore them exactly, so scores are always exact cosines.
//!
//! An index records the model (and dtype) whose vectors it holds, and refuses vectors or
//! queries of another width; the JS layer refuses a different model by name.

use std::collections::HashSet;

use crate::backend::cpu::kernels::dot8 as dot;
use crate::error::{Error, Result};

/// What the scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    Int8,
    Binary,
}

impl std::str::FromStr for Storage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Storage> {
        match s {
            "f32" => Ok(Storage::F32),
            "int8" => Ok(Storage::Int8),
            "binary" => Ok(Storage::Binary),
            other => Err(Error::Input(format!("storage `{other}`: choose f32, int8 or binary"))),
        }
    }
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::Int8 => "int8",
            Storage::Binary => "binary",
        }
    }

    /// Candidates scanned per result asked for, before exact rescoring.
    fn oversample(self) -> usize {
        match self {
            Storage::F32 => 1,
            Storage::Int8 => 4,
            Storage::Binary => 16,
        }
    }
}

const MAGIC: &[u8; 8] = b"WEMBIDX1";

/// Vectors with `u32` labels (the JS layer maps labels to chunks).
#[derive(Debug, Clone)]
pub struct VectorIndex {
    dim: usize,
    storage: Storage,
    model: String,
    labels: Vec<u32>,
    vectors: Vec<f32>,
    int8: Vec<i8>,
    int8_scale: Vec<f32>,
    bits: Vec<u64>,
}

fn int8_of(v: &[f32]) -> (Vec<i8>, f32) {
    let amax = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    (v.iter().map(|x| (x / scale).round() as i8).collect(), scale)
}

fn bits_of(v: &[f32]) -> Vec<u64> {
    let mut out = vec![0u64; v.len().div_ceil(64)];
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut lanes = [0i32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: i32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| *x as i32 * *y as i32).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            lanes[l] += x[l] as i32 * y[l] as i32;
        }
    }
    lanes.iter().sum::<i32>() + tail
}

/// The `k` best (score, row) pairs, best first.
fn top_k(mut scored: Vec<(f32, usize)>, k: usize) -> Vec<(f32, usize)> {
    let by_score = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if scored.len() > k && k > 0 {
        scored.select_nth_unstable_by(k - 1, by_score);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by_score);
    scored.truncate(k);
    scored
}

/// The widest vectors an index takes (the widest embedding models are 4,096 wide).
pub const MAX_DIM: usize = 1 << 16;

impl VectorIndex {
    /// An empty index for `dim`-wide vectors of `model`.
    pub fn new(dim: usize, storage: Storage, model: impl Into<String>) -> Result<VectorIndex> {
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::Input(format!("an index takes vectors 1 to {MAX_DIM} wide, not {dim}")));
        }
        Ok(Self::empty(dim, storage, model.into()))
    }

    fn empty(dim: usize, storage: Storage, model: String) -> VectorIndex {
        VectorIndex {
            dim,
            storage,
            model,
            labels: vec![],
            vectors: vec![],
            int8: vec![],
            int8_scale: vec![],
            bits: vec![],
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn storage(&self) -> Storage {
        self.storage
    }
    pub fn model(&self) -> &str {
        &self.model
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `v` checked (width, finite, non-zero) and L2-normalized.
    fn check(&self, what: &str, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(Error::Input(format!(
                "{what} has {} dimensions; this index holds {}-dimensional vectors of {}",
                v.len(),
                self.dim,
                self.model
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::Input(format!("{what} has a non-finite value at {i}")));
        }
        let norm = dot(v, v).sqrt();
        if norm == 0.0 {
            return Err(Error::Input(format!("{what} is all zeros")));
        }
        Ok(v.iter().map(|x| x / norm).collect())
    }

    /// Adds `vectors` (`labels.len() * dim` floats, row by row), normalizing each. Nothing is
    /// added if any vector is bad.
    pub fn add(&mut self, labels: &[u32], vectors: &[f32]) -> Result<()> {
        if vectors.len() != labels.len() * self.dim {
            return Err(Error::Input(format!(
                "{} floats for {} labels of {} dimensions",
                vectors.len(),
                labels.len(),
                self.dim
            )));
        }
        let rows = vectors
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(i, v)| self.check(&format!("vector {i}"), v))
            .collect::<Result<Vec<_>>>()?;
        for (label, v) in labels.iter().zip(rows) {
            self.push(*label, v);
        }
        Ok(())
    }

    fn push(&mut self, label: u32, v: Vec<f32>) {
        match self.storage {
            Storage::F32 => {}
            Storage::Int8 => {
                let (q, s) = int8_of(&v);
                self.int8.extend(q);
                self.int8_scale.push(s);
            }
            Storage::Binary => self.bits.extend(bits_of(&v)),
        }
        self.labels.push(label);
        self.vectors.extend(v);
    }

    /// Removes every vector whose label is in `labels`; returns how many went.
    pub fn remove(&mut self, labels: &HashSet<u32>) -> usize {
        let before = self.len();
        let keep: Vec<usize> = (0..before).filter(|&r| !labels.contains(&self.labels[r])).collect();
        if keep.len() == before {
            return 0;
        }
        let old = std::mem::replace(self, VectorIndex::empty(self.dim, self.storage, self.model.clone()));
        for r in keep {
            self.push(old.labels[r], old.vectors[r * old.dim..(r + 1) * old.dim].to_vec());
        }
        before - self.len()
    }

    /// The `k` nearest vectors by cosine among those whose label `allow`s, best first, as
    /// (label, exact cosine).
    pub fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(u32) -> bool) -> Result<Vec<(u32, f32)>> {
        let q = self.check("the query", query)?;
        if k == 0 || self.is_empty() {
            return Ok(vec![]);
        }
        let dim = self.dim;
        let rows = (0..self.len()).filter(|&r| allow(self.labels[r]));
        let exact = |r: usize| dot(&q, &self.vectors[r * dim..(r + 1) * dim]);
        let candidates = k.saturating_mul(self.storage.oversample()).max(k);
        let best = match self.storage {
            Storage::F32 => top_k(rows.map(|r| (exact(r), r)).collect(), k),
            Storage::Int8 => {
                let (qi, _) = int8_of(&q);
                let approx =
                    rows.map(|r| (dot_i8(&qi, &self.int8[r * dim..(r + 1) * dim]) as f32 * self.int8_scale[r], r));
                let shortlist = top_k(approx.collect(), candidates);
                top_k(shortlist.into_iter().map(|(_, r)| (exact(r), r)).collect(), k)
            }
            Storage::Binary => {
                let qb = bits_of(&q);
                let words = qb.len();
                let hamming = |r: usize| -> u32 {
                    qb.iter().zip(&self.bits[r * words..(r + 1) * words]).map(|(a, b)| (a ^ b).count_ones()).sum()
                };
                let shortlist = top_k(rows.map(|r| (-(hamming(r) as f32), r)).collect(), candidates);
                top_k(shortlist.into_iter().map(|(_, r)| (exact(r), r)).collect(), k)
            }
        };
        Ok(best.into_iter().map(|(s, r)| (self.labels[r], s)).collect())
    }

    /// The index as bytes: magic, a JSON header (dim, storage, model, count), labels (u32 LE),
    /// vectors (f32 LE). The compressed copies are rebuilt on load.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "dim": self.dim, "storage": self.storage.name(), "model": self.model, "count": self.len(),
        })
        .to_string();
        let mut out = Vec::with_capacity(16 + header.len() + self.len() * (4 + 4 * self.dim));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        for v in &self.vectors {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads [`VectorIndex::to_bytes`] output, checking every length.
    pub fn from_bytes(bytes: &[u8]) -> Result<VectorIndex> {
        let bad = |why: &str| Error::bad_file("index", format!("{why}; is the saved index truncated or corrupt?"));
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(bad("not a wembed index (no WEMBIDX1 header)"));
        }
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        let end =
            12usize.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("header runs past the end"))?;
        let header = &bytes[12..end];
        let h: serde_json::Value = serde_json::from_slice(header).map_err(|_| bad("unreadable header"))?;
        let (Some(dim), Some(storage), Some(model), Some(count)) =
            (h["dim"].as_u64(), h["storage"].as_str(), h["model"].as_str(), h["count"].as_u64())
        else {
            return Err(bad("header lacks dim, storage, model or count"));
        };
        let body = &bytes[end..];
        // Checked in u64 first: on wasm32 a usize product of forged numbers would wrap.
        if dim == 0 || dim > MAX_DIM as u64 {
            return Err(bad(&format!("dimension {dim} (at most {MAX_DIM})")));
        }
        let need = dim
            .checked_mul(4)
            .and_then(|row| row.checked_add(4))
            .and_then(|row| row.checked_mul(count))
            .filter(|&n| n == body.len() as u64)
            .ok_or_else(|| {
                bad(&format!("{} bytes of vectors, the header implies {count} of dimension {dim}", body.len()))
            })?;
        let (dim, count, need) = (dim as usize, count as usize, need as usize);
        debug_assert_eq!(body.len(), need);
        let mut index = VectorIndex::new(dim, storage.parse()?, model)?;
        let (labels, vectors) = body.split_at(count * 4);
        let floats: Vec<f32> = vectors.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4"))).collect();
        for (i, l) in labels.chunks_exact(4).enumerate() {
            // Stored normalized: checked, not normalized again (that would move the last bits).
            let v = &floats[i * dim..(i + 1) * dim];
            index.check(&format!("stored vector {i}"), v)?;
            index.push(u32::from_le_bytes(l.try_into().expect("4")), v.to_vec());
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_headers_are_bad_files() {
        let mut good = VectorIndex::new(4, Storage::F32, "m").unwrap();
        good.add(&[7], &[1.0, 0.0, 0.0, 0.0]).unwrap();
        let bytes = good.to_bytes();
        let hlen = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let body = &bytes[12 + hlen..];
        for header in [
            r#"{"dim":1073741824,"storage":"f32","model":"m","count":1}"#,
            r#"{"dim":4,"storage":"f32","model":"m","count":4611686018427387904}"#,
            r#"{"dim":0,"storage":"f32","model":"m","count":0}"#,
            r#"{"dim":4,"storage":"f32","model":"m","count":2}"#,
            r#"{}"#,
        ] {
            let mut forged = MAGIC.to_vec();
            forged.extend((header.len() as u32).to_le_bytes());
            forged.extend(header.as_bytes());
            forged.extend(body);
            let err = VectorIndex::from_bytes(&forged).err().unwrap_or_else(|| panic!("{header} loaded"));
            assert_eq!(err.code(), "BAD_FILE", "{header}: {err}");
        }
    }

    fn rng(seed: &mut u64) -> f32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * dim).map(|_| rng(&mut s)).collect()
    }

    fn brute(vs: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<u32> {
        let n = |v: &[f32]| dot(v, v).sqrt();
        let mut s: Vec<(f32, usize)> =
            vs.chunks_exact(dim).enumerate().map(|(i, v)| (dot(v, q) / n(v) / n(q), i)).collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s.iter().take(k).map(|(_, i)| *i as u32).collect()
    }

    #[test]
    fn f32_search_is_exact_and_int8_binary_rescore_to_exact_scores() {
        let (n, dim) = (500, 48);
        let vs = data(n, dim, 1);
        let labels: Vec<u32> = (0..n as u32).collect();
        for storage in [Storage::F32, Storage::Int8, Storage::Binary] {
            let mut idx = VectorIndex::new(dim, storage, "m").unwrap();
            idx.add(&labels, &vs).unwrap();
            let mut hits = 0;
            for qi in 0..20 {
                let q = &data(1, dim, 100 + qi)[..];
                let got = idx.search(q, 10, &|_| true).unwrap();
                let want = brute(&vs, dim, q, 10);
                hits += got.iter().filter(|(l, _)| want.contains(l)).count();
                for (l, score) in &got {
                    // Scores are exact cosines whatever the scan read.
                    let v = &vs[*l as usize * dim..(*l as usize + 1) * dim];
                    let exact = dot(v, q) / dot(v, v).sqrt() / dot(q, q).sqrt();
                    assert!((score - exact).abs() < 1e-5, "{storage:?}");
                }
                assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "{storage:?}: not sorted");
            }
            let recall = hits as f64 / 200.0;
            let floor = match storage {
                Storage::F32 => 1.0,
                Storage::Int8 => 0.97,
                Storage::Binary => 0.6,
            };
            assert!(recall >= floor, "{storage:?}: recall@10 {recall}");
        }
    }

    #[test]
    fn filters_remove_and_edge_cases() {
        let dim = 8;
        let mut idx = VectorIndex::new(dim, Storage::Int8, "m").unwrap();
        assert!(idx.search(&[1.0; 8], 5, &|_| true).unwrap().is_empty(), "empty index");
        idx.add(&[10, 11, 12], &data(3, dim, 3)).unwrap();
        let all = idx.search(&[1.0; 8], 50, &|_| true).unwrap();
        assert_eq!(all.len(), 3, "k larger than the index");
        let odd = idx.search(&[1.0; 8], 50, &|l| l % 2 == 1).unwrap();
        assert_eq!(odd.iter().map(|x| x.0).collect::<Vec<_>>(), vec![11]);
        assert_eq!(idx.remove(&HashSet::from([11, 99])), 1);
        assert!(idx.search(&[1.0; 8], 50, &|_| true).unwrap().iter().all(|x| x.0 != 11));
        let err = idx.search(&[1.0; 7], 1, &|_| true).unwrap_err().to_string();
        assert!(err.contains("7 dimensions") && err.contains("8-dimensional"), "{err}");
        assert!(idx.add(&[1], &[0.0; 8]).unwrap_err().to_string().contains("all zeros"));
        assert!(idx.add(&[1, 2], &[1.0; 8]).is_err());
        assert_eq!(idx.len(), 2, "a failed add adds nothing");
    }

    #[test]
    fn bytes_round_trip_and_damage_is_an_error() {
        let dim = 16;
        let mut idx = VectorIndex::new(dim, Storage::Binary, "all-MiniLM-L6-v2/q8").unwrap();
        idx.add(&[1, 2, 3, 4], &data(4, dim, 9)).unwrap();
        let bytes = idx.to_bytes();
        let back = VectorIndex::from_bytes(&bytes).unwrap();
        assert_eq!(back.model(), "all-MiniLM-L6-v2/q8");
        assert_eq!(back.storage(), Storage::Binary);
        let q = data(1, dim, 5);
        assert_eq!(back.search(&q, 3, &|_| true).unwrap(), idx.search(&q, 3, &|_| true).unwrap());
        for cut in [0, 5, 20, bytes.len() - 1] {
            assert!(VectorIndex::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
