//! Terminal and file output of the CLI: a progress bar, .npy and JSON writers.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// A progress bar on stderr (indicatif), drawn only when stderr is a terminal: logs, pipes
/// and tests see nothing of it.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {rate} eta {eta}")
                .map(|s| {
                    s.progress_chars("#-").with_key("rate", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", st.per_sec());
                    })
                })
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_style(style)
                .with_message(label.to_string())
        });
        Progress { bar }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done >= total {
                bar.finish();
            }
        }
    }
}

/// NumPy .npy (format 1.0) of a `[rows, cols]` little-endian f32 matrix.
///
/// Hand-written on purpose: the maintained crate, npyz 0.8, parses headers through py_literal
/// and pest (27 crates, a proc-macro grammar and a cc build), measured at 93 s wall / 68 CPU-s for
/// a clean build of it alone (2 shared cores, deps at opt-level 3), to write one 64-byte-aligned
/// header that tests/cli.rs checks against numpy's layout.
pub fn npy_bytes(rows: usize, cols: usize, data: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 and ended by a newline, as numpy writes it.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Rows per Parquet row group: big enough for fast scans, small enough that a reader (DuckDB,
/// Spark) can split a large file between threads.
const PARQUET_ROW_GROUP: usize = 65_536;

/// Apache Parquet of the texts and their vectors (`flat`: `[texts.len(), dim]` row-major): the
/// columns `text` (UTF-8 string) and `embedding` (a list of float32, the standard LIST layout
/// that pyarrow, DuckDB, LanceDB and Spark read as `list<float>` / `FLOAT[]`), Snappy-compressed.
pub fn parquet_bytes(texts: &[String], dim: usize, flat: &[f32]) -> Result<Vec<u8>, String> {
    use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let err = |e: parquet::errors::ParquetError| format!("writing Parquet: {e}");
    let schema = parse_message_type(
        "message embeddings { required binary text (STRING);          required group embedding (LIST) { repeated group list { required float element; } } }",
    )
    .map_err(err)?;
    let props = WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build();
    let mut writer = SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(props)).map_err(err)?;
    for (g, chunk) in texts.chunks(PARQUET_ROW_GROUP).enumerate() {
        let rows = &flat[g * PARQUET_ROW_GROUP * dim..][..chunk.len() * dim];
        let mut group = writer.next_row_group().map_err(err)?;
        let mut text = group.next_column().map_err(err)?.ok_or("Parquet: no text column")?;
        let values: Vec<ByteArray> = chunk.iter().map(|t| ByteArray::from(t.as_str())).collect();
        text.typed::<ByteArrayType>().write_batch(&values, None, None).map_err(err)?;
        text.close().map_err(err)?;
        let mut embedding = group.next_column().map_err(err)?.ok_or("Parquet: no embedding column")?;
        // Every element is present (definition level 1, the list's); a repetition level of 0
        // starts a row's list, 1 continues it.
        let def = vec![1i16; rows.len()];
        let rep: Vec<i16> = (0..rows.len()).map(|i| i16::from(i % dim != 0)).collect();
        embedding.typed::<FloatType>().write_batch(rows, Some(&def), Some(&rep)).map_err(err)?;
        embedding.close().map_err(err)?;
        group.close().map_err(err)?;
    }
    writer.into_inner().map_err(err)
}

/// Writes `bytes` to `path`, or to stdout for `-`.
pub fn write_out(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    if path == "-" {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes)?;
        stdout.flush()
    } else {
        std::fs::write(path, bytes)
    }
}
