//! Search speed and recall of the vector index (src/index.rs): all-MiniLM-L6-v2 vectors of the
//! distinct STS-B sentences (all splits), 200 of them held out as queries. Recall@10 of int8
//! and binary against exact f32 on the real vectors; time per query on 100,000 vectors (the real
//! ones plus normalized sums of random pairs of them, to reach the size).
//! Usage: cargo run --release --example index_bench
use std::time::Instant;

use wembed::index::{Storage, VectorIndex};
use wembed::{Cpu, EmbedOptions, Embedder, ModelFiles};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let embedder = Embedder::load(Cpu::new(), &ModelFiles::from_dir("assets/models/all-MiniLM-L6-v2")?)?;
    let mut seen = std::collections::HashSet::new();
    let mut texts = vec![];
    for split in ["train", "dev", "test"] {
        for p in wembed::eval::read_stsb_english("assets/data/stsbenchmark.tsv.gz".as_ref(), split)? {
            for s in [p.s1, p.s2] {
                if seen.insert(s.clone()) {
                    texts.push(s);
                }
            }
        }
    }
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let t = Instant::now();
    let vectors = embedder.embed(&refs, &EmbedOptions::default())?;
    eprintln!("embedded {} sentences in {:.1}s", vectors.len(), t.elapsed().as_secs_f64());
    let dim = embedder.dim();
    let (queries, base) = vectors.split_at(200);
    let flat: Vec<f32> = base.iter().flatten().copied().collect();
    let labels: Vec<u32> = (0..base.len() as u32).collect();

    let build = |storage, labels: &[u32], flat: &[f32]| -> VectorIndex {
        let mut idx = VectorIndex::new(dim, storage, "all-MiniLM-L6-v2").unwrap();
        idx.add(labels, flat).unwrap();
        idx
    };
    let exact = build(Storage::F32, &labels, &flat);
    let truth: Vec<Vec<u32>> =
        queries.iter().map(|q| exact.search(q, 10, &|_| true).unwrap().iter().map(|x| x.0).collect()).collect();

    // 100k vectors: the real ones, then normalized sums of random pairs.
    let mut big = flat.clone();
    let mut s = 12345u64;
    let mut next = |n: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % n as u64) as usize
    };
    while big.len() < 100_000 * dim {
        let (a, b) = (next(base.len()), next(base.len()));
        big.extend(base[a].iter().zip(&base[b]).map(|(x, y)| x + y));
    }
    let big_labels: Vec<u32> = (0..100_000u32).collect();

    println!(
        "| storage | recall@10 vs f32 ({} real vectors, 200 queries) | ms per query, 100,000 x {dim} |",
        base.len()
    );
    println!("|---|---|---|");
    for storage in [Storage::F32, Storage::Int8, Storage::Binary] {
        let idx = build(storage, &labels, &flat);
        let mut hits = 0;
        for (q, want) in queries.iter().zip(&truth) {
            hits += idx.search(q, 10, &|_| true)?.iter().filter(|x| want.contains(&x.0)).count();
        }
        let large = build(storage, &big_labels, &big);
        let t = Instant::now();
        for q in queries {
            std::hint::black_box(large.search(q, 10, &|_| true)?);
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0 / queries.len() as f64;
        println!("| {} | {:.3} | {ms:.2} |", storage.name(), hits as f64 / (10 * queries.len()) as f64);
    }
    Ok(())
}
