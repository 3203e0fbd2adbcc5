//! The `wembed` command line, run as a user would.

mod common;

use std::process::{Command, Output};

use common::*;

fn wembed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wembed")).current_dir(root()).args(args).output().unwrap()
}

fn tiny() -> String {
    root().join("tests/fixtures/tiny/mean-erf-norm").display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn embed_prints_json_vectors_equal_to_the_library() {
    let out = wembed(&["embed", "--model", &tiny(), "hello world!", "a man is playing a guitar."]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vectors: Vec<Vec<f32>> = serde_json::from_slice(&out.stdout).unwrap();
    let reference = tiny_ref(std::path::Path::new(&tiny()));
    let want = |t: &str| &reference.sentences.iter().find(|s| s.text == t).unwrap().pooled;
    assert_eq!(vectors.len(), 2);
    assert!(cosine(&vectors[0], want("hello world!")) > 0.99999);
    assert!(cosine(&vectors[1], want("a man is playing a guitar.")) > 0.99999);
}

#[test]
fn embed_reads_a_file_and_writes_npy() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("texts.txt");
    std::fs::write(&input, "hello world!\r\nthe quick brown fox\n\nlast line without newline").unwrap();
    let npy = tmp.path().join("out.npy");
    let out = wembed(&[
        "embed",
        "--model",
        &tiny(),
        "--file",
        input.to_str().unwrap(),
        "--format",
        "npy",
        "--out",
        npy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (4, 36)"), "{header}");
    assert_eq!((10 + header_len) % 64, 0, "numpy aligns the data to 64 bytes");
    assert_eq!(bytes.len() - 10 - header_len, 4 * 36 * 4);
}

#[test]
fn embed_writes_parquet_that_reads_back_as_the_json_vectors() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{ListAccessor, RowAccessor};
    let tmp = tempfile::tempdir().unwrap();
    let texts = ["hello world!", "the quick brown fox", "", "a man is playing a guitar."];
    let json = wembed(&[&["embed", "--model", &tiny()][..], &texts[..]].concat());
    assert!(json.status.success(), "{}", stderr(&json));
    let want: Vec<Vec<f32>> = serde_json::from_slice(&json.stdout).unwrap();
    let model = tiny();
    for (truncate, dim) in [(None, 36), (Some("24"), 24)] {
        let file = tmp.path().join(format!("out-{dim}.parquet"));
        let mut args = vec!["embed", "--model", &model, "--format", "parquet", "--out", file.to_str().unwrap()];
        if let Some(t) = truncate {
            args.extend(["--truncate-dim", t]);
        }
        args.extend(texts);
        let out = wembed(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), texts.len() as i64);
        let rows: Vec<_> = reader.get_row_iter(None).unwrap().map(|r| r.unwrap()).collect();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.get_string(0).unwrap(), texts[i]);
            let list = row.get_list(1).unwrap();
            let got: Vec<f32> = (0..list.len()).map(|j| list.get_float(j).unwrap()).collect();
            assert_eq!(got, want[i][..dim], "row {i}, dim {dim}");
        }
    }
    // --truncate-dim shapes .npy too.
    let npy = tmp.path().join("cut.npy");
    let out = wembed(&[
        "embed",
        "--model",
        &tiny(),
        "--truncate-dim",
        "24",
        "--format",
        "npy",
        "--out",
        npy.to_str().unwrap(),
        "x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&npy).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..74]).into_owned();
    assert!(header.contains("'shape': (1, 24)"), "{header}");
}

#[test]
fn invalid_utf8_in_a_file_names_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.txt");
    std::fs::write(&input, b"fine\nbro\xffken\n").unwrap();
    let out = wembed(&["embed", "--model", &tiny(), "--file", input.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2: not valid UTF-8"), "{}", stderr(&out));
}

#[test]
fn usage_errors_are_reported_not_panicked() {
    // clap's wording (exit status 2) for the usage errors, ours for the rest.
    for (args, needle) in [
        (vec![], "Usage: wembed"),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec!["embed", "--model"], "a value is required for '--model <PATH>'"),
        (vec!["embed", "--bogus"], "unexpected argument '--bogus'"),
        (vec!["embed", "--model", "/no/such/dir", "x"], "/no/such/dir"),
        (vec!["embed", "--batch-size", "many", "x"], "invalid value 'many' for '--batch-size <N>'"),
        (vec!["embed", "--device", "tpu", "x"], "device `tpu`: choose auto, cpu or gpu"),
        (vec!["embed", "--format", "csv", "x"], "[possible values: json, npy, parquet]"),
        (vec!["eval", "nothing"], "unrecognized subcommand 'nothing'"),
        (vec!["quantize", "--dtype", "q2", "a", "b"], "[possible values: q8, q4, f16]"),
    ] {
        let out = wembed(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?} panicked");
    }
    let tiny = tiny();
    let out = wembed(&["embed", "--model", &tiny]);
    assert!(stderr(&out).contains("nothing to embed"), "{}", stderr(&out));
}

#[test]
fn mistyped_commands_and_options_get_a_suggestion() {
    for (args, tip) in [
        (vec!["embedd", "x"], "a similar subcommand exists: 'embed'"),
        (vec!["embed", "--modle", "m", "x"], "a similar argument exists: '--model'"),
        (vec!["eval", "stsb", "--refrence", "r"], "a similar argument exists: '--reference'"),
    ] {
        let out = wembed(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(tip), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn version_and_help_go_to_stdout() {
    let out = wembed(&["--version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("wembed {}", env!("CARGO_PKG_VERSION")));
    // Every subcommand has its own help, naming its own options.
    for (args, option) in [
        (vec!["embed", "--help"], "--prompt-name <NAME>"),
        (vec!["eval", "stsb", "--help"], "--reference <FILE>"),
        (vec!["quantize", "-h"], "--dtype <DTYPE>"),
        (vec!["bench", "--help"], "--python <PATH>"),
        (vec!["gpu-bench", "--help"], "--peak-size <N>"),
    ] {
        let out = wembed(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(option), "{args:?}");
    }
}

/// Parses "<label> Spearman x100 = <number>" from the eval output.
fn spearman_line(stdout: &str, label: &str) -> f64 {
    let line =
        stdout.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"));
    line.split('=').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

/// `wembed eval stsb` with `args` within 0.05 Spearman points of the PyTorch figure the
/// fixture holds, both printed.
fn eval_stsb_agrees(args: &[&str], reference: MinilmRef) {
    let out = wembed(&[&["eval", "stsb"], args].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    print!("{stdout}");
    assert!(stdout.contains("1379 pairs"), "{stdout}");
    let ours = spearman_line(&stdout, "wembed");
    let pytorch = spearman_line(&stdout, "PyTorch");
    assert!((pytorch - reference.stsb_test.spearman_x100).abs() < 1e-4, "printed to 4 decimals");
    assert!((ours - pytorch).abs() <= 0.05, "wembed {ours} vs PyTorch {pytorch}");
}

#[test]
fn eval_stsb_agrees_with_pytorch() {
    minilm_dir();
    eval_stsb_agrees(&[], minilm_ref());
}

#[test]
fn eval_stsb_of_mpnet_agrees_with_pytorch() {
    let (model, reference) = (mpnet_dir(), root().join("tests/fixtures/mpnet.json"));
    eval_stsb_agrees(&["--model", model.to_str().unwrap(), "--reference", reference.to_str().unwrap()], mpnet_ref());
}

#[test]
fn quantize_keeps_the_dense_modules_weights() {
    // A Dense module's own model.safetensors (2_Dense/) is the model's too: copied, not dropped.
    let tmp = tempfile::tempdir().unwrap();
    let (source, q8) = (root().join("tests/fixtures/tiny/dense-tanh"), tmp.path().join("q8"));
    let out = wembed(&["quantize", "--dtype", "q8", source.to_str().unwrap(), q8.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for dense in ["2_Dense", "3_Dense"] {
        let weights = |d: &std::path::Path| std::fs::read(d.join(dense).join("model.safetensors")).unwrap();
        assert_eq!(weights(&q8), weights(&source), "{dense}");
    }
    let out = wembed(&["embed", "--model", q8.to_str().unwrap(), "hello world!"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What `wembed pack` writes for tests/fixtures/tiny/dense-tanh: every file the loader reads
/// (the Dense modules' weights too), nothing else (tokenizer_config.json, reference.json).
const PACKED: &[&str] = &[
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "3_Dense/config.json",
    "3_Dense/model.safetensors",
    "config.json",
    "config_sentence_transformers.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer.json",
];

/// The SHA-256 of a file by coreutils' sha256sum, independent of the sha2 crate wembed uses.
fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum (coreutils) runs");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Every file under `dir`, as paths relative to it with `/`.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// A pack's manifest.json, checked against its folder: the shape, and each file's size and
/// sha256sum. Returns (dtype, [(name, size)]).
fn checked_manifest(dir: &std::path::Path) -> (String, Vec<(String, u64)>) {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format"], "wembed-pack");
    assert_eq!(m["version"], 1);
    let files = m["files"].as_object().unwrap();
    let names: Vec<&str> = files.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, PACKED, "the manifest lists the files the loader reads, not itself");
    let mut on_disk = files_under(dir);
    on_disk.retain(|f| f != "manifest.json");
    assert_eq!(on_disk, PACKED, "the folder holds the listed files and manifest.json");
    let mut sizes = vec![];
    for (name, entry) in files {
        let path = dir.join(name);
        let size = entry["size"].as_u64().unwrap();
        assert_eq!(size, std::fs::metadata(&path).unwrap().len(), "{name}");
        assert_eq!(entry["sha256"].as_str().unwrap(), sha256sum(&path), "{name}");
        assert_eq!(entry.as_object().unwrap().len(), 2, "{name}: size and sha256 only");
        sizes.push((name.clone(), size));
    }
    (m["dtype"].as_str().unwrap().to_string(), sizes)
}

#[test]
fn pack_writes_the_files_a_page_loads_with_their_sizes_and_sha256() {
    let source = root().join("tests/fixtures/tiny/dense-tanh");
    let texts: Vec<String> = tiny_ref(&source).sentences.iter().map(|s| s.text.clone()).collect();
    let texts: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let embed = |dir: &std::path::Path| {
        let files = wembed::ModelFiles::from_dir(dir).unwrap();
        wembed::Embedder::load(wembed::Cpu::new(), &files).unwrap().embed(&texts, &Default::default()).unwrap()
    };
    let original = embed(&source);
    let tmp = tempfile::tempdir().unwrap();
    // The bars are those of reference.rs for tiny models in smaller files; f32 is the checkpoint.
    for (dtype, bar) in [(None, 0.999), (Some("q4"), 0.99), (Some("f16"), 0.9999), (Some("f32"), 1.0)] {
        let out_dir = tmp.path().join(dtype.unwrap_or("default"));
        let mut args = vec!["pack", source.to_str().unwrap(), out_dir.to_str().unwrap()];
        if let Some(d) = dtype {
            args.extend(["--dtype", d]);
        }
        let out = wembed(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("11 files"), "{stdout}");
        let (written, _) = checked_manifest(&out_dir);
        assert_eq!(written, dtype.unwrap_or("q8"), "q8 is the default");

        let packed = embed(&out_dir);
        let worst = original.iter().zip(&packed).map(|(a, b)| cosine(a, b)).fold(1.0f64, f64::min);
        eprintln!("pack {written}: worst cosine {worst:.6} to the original folder");
        if written == "f32" {
            assert_eq!(packed, original, "f32 packs the checkpoint unchanged");
        } else {
            assert!(worst >= bar, "{written}: worst cosine {worst} < {bar}");
        }
    }
}

#[test]
fn pack_refuses_what_it_cannot_pack_faithfully() {
    let source = root().join("tests/fixtures/tiny/dense-tanh");
    let tmp = tempfile::tempdir().unwrap();
    let q8 = tmp.path().join("q8");
    let again = tmp.path().join("again");
    let (src, q8s, agains) = (source.to_str().unwrap(), q8.to_str().unwrap(), again.to_str().unwrap());
    assert!(wembed(&["pack", src, q8s]).status.success());
    for (args, needle) in [
        (vec!["pack", src, q8s], "is not empty"),
        (vec!["pack", "/no/such/model", agains], "/no/such/model"),
        (vec!["pack", "--dtype", "q2", src, agains], "[possible values: q8, q4, f16, f32]"),
        (vec!["pack", "--dtype", "f32", q8s, agains], "is a q8_0 file, not f32"),
        (vec!["pack", src], "required arguments were not provided"),
    ] {
        let out = wembed(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // A pack packed again in its own dtype is copied as it is, not quantized twice.
    let out = wembed(&["pack", q8s, agains]);
    assert!(out.status.success(), "{}", stderr(&out));
    let weights = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(weights(&q8), weights(&again));
}

#[test]
fn the_committed_pack_fixture_is_what_pack_writes_today() {
    // www/test/files.test.mjs loads tests/fixtures/pack/dense-tanh-q8 and tampered copies of it.
    // Quantized files are not byte-stable (their metadata is a hash map), so names, sizes and
    // dtype are compared; the fixture's hashes are checked against its own files.
    let fixture = root().join("tests/fixtures/pack/dense-tanh-q8");
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("pack");
    let source = root().join("tests/fixtures/tiny/dense-tanh");
    let out = wembed(&["pack", "--dtype", "q8", source.to_str().unwrap(), fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        checked_manifest(&fixture),
        checked_manifest(&fresh),
        "regenerate with: wembed pack tests/fixtures/tiny/dense-tanh tests/fixtures/pack/dense-tanh-q8"
    );
}
