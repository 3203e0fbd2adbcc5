//! Where the time of a real embedding run goes, op by op: a Backend wrapper that times each
//! call of the CPU backend (a development aid, not a test). The wrapper keeps the default of one
//! batch at a time, so op times do not overlap.
//! Usage: cargo run --release --example profile [BATCH_SIZE]
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use wembed::backend::{
    Attention, Backend, SeqMeta,
    cpu::{Cpu, CpuTensor},
};
use wembed::config::{Activation, PoolMode};
use wembed::weights::HostTensor;
use wembed::{EmbedOptions, Embedder, ModelFiles, Result};

#[derive(Default)]
struct Timed {
    inner: Cpu,
    times: Mutex<BTreeMap<String, (f64, usize)>>,
}

impl Timed {
    fn time<T>(&self, name: String, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        let mut times = self.times.lock().unwrap();
        let e = times.entry(name).or_default();
        e.0 += t.elapsed().as_secs_f64();
        e.1 += 1;
        r
    }
}

impl Backend for Timed {
    type Tensor = CpuTensor;
    type Matrix = <Cpu as Backend>::Matrix;
    type Vector = Vec<f32>;
    fn name(&self) -> String {
        self.inner.name()
    }
    fn matrix(&self, w: HostTensor) -> Result<Self::Matrix> {
        self.inner.matrix(w)
    }
    fn vector(&self, v: HostTensor) -> Result<Vec<f32>> {
        self.inner.vector(v)
    }
    fn quantized_matrix(&self, w: wembed::quant::QuantMatrix) -> Result<Self::Matrix> {
        self.inner.quantized_matrix(w)
    }
    fn table(&self, w: HostTensor) -> Result<Self::Matrix> {
        self.inner.table(w)
    }
    fn stored_as(&self, m: &Self::Matrix) -> &'static str {
        self.inner.stored_as(m)
    }
    fn batches_per_read(&self) -> usize {
        self.inner.batches_per_read()
    }
    fn embed(
        &self,
        ids: &[u32],
        t: &[u32],
        m: &SeqMeta,
        w: &Self::Matrix,
        p: Option<&Self::Matrix>,
        ty: Option<&Self::Matrix>,
    ) -> Result<CpuTensor> {
        self.time("embed".into(), || self.inner.embed(ids, t, m, w, p, ty))
    }
    fn linear(&self, x: &CpuTensor, w: &Self::Matrix, b: &Vec<f32>, act: Option<Activation>) -> Result<CpuTensor> {
        let (n, k) = self.inner.matrix_shape(w);
        self.time(format!("linear {n}x{k} {act:?}"), || self.inner.linear(x, w, b, act))
    }
    fn layer_norm(
        &self,
        x: CpuTensor,
        r: Option<&CpuTensor>,
        g: &Vec<f32>,
        b: &Vec<f32>,
        eps: f32,
    ) -> Result<CpuTensor> {
        self.time("layer_norm".into(), || self.inner.layer_norm(x, r, g, b, eps))
    }
    fn attention(&self, qkv: &CpuTensor, m: &SeqMeta, a: &Attention<'_, Self::Matrix>) -> Result<CpuTensor> {
        self.time("attention".into(), || self.inner.attention(qkv, m, a))
    }
    fn rotary(
        &self,
        qkv: CpuTensor,
        m: &SeqMeta,
        a: &Attention<'_, Self::Matrix>,
        t: &Self::Matrix,
    ) -> Result<CpuTensor> {
        self.time("rotary".into(), || self.inner.rotary(qkv, m, a, t))
    }
    fn glu(&self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        self.time(format!("glu {act:?}"), || self.inner.glu(x, act))
    }
    fn rms_norm(&self, x: &CpuTensor, g: &Vec<f32>, eps: f32, width: usize) -> Result<CpuTensor> {
        self.time("rms_norm".into(), || self.inner.rms_norm(x, g, eps, width))
    }
    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.time("add".into(), || self.inner.add(a, b))
    }
    fn pool(&self, x: &CpuTensor, m: &SeqMeta, modes: &[PoolMode], n: bool) -> Result<CpuTensor> {
        self.time("pool".into(), || self.inner.pool(x, m, modes, n))
    }
    fn normalize(&self, x: CpuTensor) -> Result<CpuTensor> {
        self.time("normalize".into(), || self.inner.normalize(x))
    }
    fn read(&self, t: &CpuTensor) -> impl Future<Output = Result<Vec<f32>>> {
        self.inner.read(t)
    }
}

fn main() {
    let batch_size: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(32);
    let pairs = wembed::eval::read_stsb_english("assets/data/stsbenchmark.tsv.gz".as_ref(), "test").unwrap();
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.s1.as_str(), p.s2.as_str()]).take(512).collect();
    let e = Embedder::load(Timed::default(), &ModelFiles::from_dir("assets/models/all-MiniLM-L6-v2").unwrap()).unwrap();
    let opts = EmbedOptions { batch_size: Some(batch_size), ..Default::default() };
    e.embed(&texts, &opts).unwrap();
    e.backend().times.lock().unwrap().clear();
    let t = Instant::now();
    e.embed(&texts, &opts).unwrap();
    let total = t.elapsed().as_secs_f64();
    println!(
        "{} texts, batch {batch_size}: {:.1} ms, {:.1} sentences/s",
        texts.len(),
        total * 1e3,
        texts.len() as f64 / total
    );
    let times = e.backend().times.lock().unwrap();
    let ops: f64 = times.values().map(|v| v.0).sum();
    for (name, (s, n)) in times.iter() {
        println!("{name:40} {:8.2} ms {:5.1}%  ({n} calls)", s * 1e3, s / total * 100.0);
    }
    println!(
        "{:40} {:8.2} ms {:5.1}%",
        "outside the ops (tokenizer, batching)",
        (total - ops) * 1e3,
        (total - ops) / total * 100.0
    );
}
