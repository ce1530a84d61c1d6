//! Bounded mutation fuzzing of every parser that reads outside bytes: checkpoints (`.pth`,
//! safetensors), `.npy` / `.npz` arrays (feature maps, stereo disparities), images of every format,
//! training configs (JSON, TOML) and SPair annotations.
//!
//! Seeds are valid files of each format; cases are truncations (every offset of the small seeds),
//! byte flips, length fields inflated to huge values, and format-aware lies (safetensors headers,
//! zip entry sizes, pickle opcodes and nesting). Every case must end in `Ok` or an error naming the
//! file, never a panic, and no single allocation may exceed the target's stated bound (a header
//! claiming a 10^12-element tensor is refused before anything that size is allocated).
//!
//! CI runs `DEFAULT_CASES` random cases per seed and mutation kind; a developer runs longer with
//! `DINOSCOPE_FUZZ_CASES=5000 cargo test --test fuzz -- --nocapture` (the table is printed either way).

mod common;
mod counting_alloc;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use burn::tensor::Device;
use dinoscope::analysis::fusion::load_external;
use dinoscope::analysis::spair::load_pairs;
use dinoscope::analysis::stereo::load_disparity;
use dinoscope::arrays::{read_npy, read_npz, write_npy};
use dinoscope::model::Vit;
use dinoscope::model::checkpoint::{PTH_BACKBONE_KEY, PTH_EXTRAS_KEY};
use dinoscope::model::config::Arch;
use dinoscope::model::preprocess::load_rgb;
use dinoscope::model::pth_writer::{PyValue, write_pth};
use dinoscope::model::save::{official_tensors, save_safetensors};
use dinoscope::model::{LoadOptions, load_model};
use dinoscope::rng::Rng;
use dinoscope::train::TrainConfig;

/// Random cases per seed and mutation kind when `DINOSCOPE_FUZZ_CASES` is not set.
const DEFAULT_CASES: usize = 40;
const MIB: usize = 1 << 20;

/// The stem every case file is written under; errors must name it.
const CASE_STEM: &str = "fuzz-case";

type Parse = fn(&Path) -> Result<(), String>;
type Mutate = fn(&[u8], &mut Rng) -> Vec<u8>;

struct Target {
    name: String,
    extension: String,
    seeds: Vec<Vec<u8>>,
    parse: Parse,
    /// Bound on any single allocation while parsing one case.
    max_alloc: usize,
    /// Format-aware mutations, beside the generic ones.
    structured: Vec<(&'static str, Mutate)>,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    accepted: usize,
    errors: usize,
    errors_naming_file: usize,
    panics: Vec<String>,
    unnamed: Vec<String>,
    largest_alloc: usize,
    peak_live: usize,
}

fn cases_per_kind() -> usize {
    std::env::var("DINOSCOPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

// ---- generic mutations ----

fn truncate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    seed[..rng.below(seed.len().max(1))].to_vec()
}

fn flip_bytes(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    if out.is_empty() {
        return out;
    }
    for _ in 0..1 + rng.below(8) {
        let i = rng.below(out.len());
        out[i] ^= 1 << rng.below(8);
    }
    out
}

/// Overwrites 4 or 8 bytes, mostly near the start where headers and length fields live, with
/// a huge or boundary value.
fn inflate_length(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    const VALUES: [u64; 7] = [
        u64::MAX,
        u32::MAX as u64,
        i32::MAX as u64,
        1 << 40,
        1_000_000_000_000,
        0,
        1 << 31,
    ];
    let mut out = seed.to_vec();
    let width = if rng.chance(0.5) { 4 } else { 8 };
    if out.len() < width {
        return out;
    }
    let window = if rng.chance(0.7) {
        out.len().min(512)
    } else {
        out.len()
    };
    let at = rng.below(window - width + 1).min(out.len() - width);
    let value = VALUES[rng.below(VALUES.len())];
    out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
    out
}

// ---- structured mutations ----

/// A safetensors header (JSON after an 8-byte length) with one lie: a shape multiplied, offsets
/// overlapping or past the end, a wrong dtype, or a header length larger than the file.
fn safetensors_lie(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let Some(len) = seed
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    else {
        return seed.to_vec();
    };
    let Some(header) = seed.get(8..8 + len) else {
        return seed.to_vec();
    };
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(header) else {
        return seed.to_vec();
    };
    let names: Vec<String> = map
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    if names.is_empty() {
        return seed.to_vec();
    }
    let name = &names[rng.below(names.len())];
    let entry = &mut map[name];
    match rng.below(5) {
        0 => {
            if let Some(shape) = entry["shape"].as_array_mut()
                && let Some(first) = shape.first_mut()
            {
                *first = serde_json::json!(1_000_000_000_000u64);
            }
        }
        1 => entry["data_offsets"] = serde_json::json!([0, 16]),
        2 => entry["data_offsets"] = serde_json::json!([0, u64::MAX / 2]),
        3 => entry["dtype"] = serde_json::json!(["F64", "I8", "BOOL", "F16", "XX"][rng.below(5)]),
        _ => {
            let mut out = seed.to_vec();
            out[..8].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
            return out;
        }
    }
    let header = serde_json::to_vec(&map).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&seed[8 + len..]);
    out
}

/// Zip local-header and central-directory size fields (`.pth`, `.npz`) set to huge values.
fn zip_size_lie(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    let signatures: [(&[u8; 4], usize); 2] = [(b"PK\x03\x04", 18), (b"PK\x01\x02", 20)];
    let mut fields = Vec::new();
    for (signature, offset) in signatures {
        for at in 0..out.len().saturating_sub(4) {
            if &out[at..at + 4] == signature && at + offset + 8 <= out.len() {
                fields.push(at + offset);
            }
        }
    }
    if let Some(&at) = fields.get(rng.below(fields.len().max(1))) {
        let value: u32 = if rng.chance(0.5) { u32::MAX } else { 1 << 30 };
        let which = if rng.chance(0.5) { 0 } else { 4 }; // compressed or uncompressed size
        out[at + which..at + which + 4].copy_from_slice(&value.to_le_bytes());
    }
    out
}

/// A byte of the pickle stream (`data.pkl`) replaced by an opcode the reader must refuse or
/// handle (unknown, `GLOBAL`, `REDUCE`, `BUILD`, deep `MARK`s...).
fn pickle_opcode(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    const OPCODES: [u8; 8] = [0xff, b'c', b'R', b'b', b'(', 0x93, b'i', 0x00];
    let mut out = seed.to_vec();
    let Some(start) = find(&out, b"data.pkl") else {
        return out;
    };
    let at = (start + 8 + 30 + rng.below(200)).min(out.len().saturating_sub(1));
    out[at] = OPCODES[rng.below(OPCODES.len())];
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- seeds ----

fn nano() -> Vit {
    Vit::init_seeded(Arch::VitNano.config(), 0, &Device::flex())
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn checkpoint_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let training = dir.join("training.pth");
    let teacher = official_tensors(&nano())
        .unwrap()
        .into_iter()
        .map(|(name, t)| (format!("backbone.{name}"), PyValue::Tensor(t)))
        .collect();
    let backbone = serde_json::to_string(&Arch::VitNano.config()).unwrap();
    let root = PyValue::dict([
        ("teacher", PyValue::OrderedDict(teacher)),
        (
            PTH_EXTRAS_KEY,
            PyValue::dict([(PTH_BACKBONE_KEY, PyValue::Str(backbone))]),
        ),
    ]);
    write_pth(&training, &root).unwrap();
    vec![
        read(&training),
        read(&common::fixture("v1_p8.pth")),
        read(&common::fixture("malicious.pth")),
        deep_pickle_pth(),
        zip_bomb_pth(),
    ]
}

/// A `.pth` whose `data.pkl` is 256 MiB of zeros deflated to a few hundred KiB.
fn zip_bomb_pth() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("archive/data.pkl", deflated).unwrap();
    let zeros = vec![0u8; MIB];
    for _ in 0..256 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A `.pth` whose pickle nests 100,000 lists (a recursive reader would overflow its stack).
fn deep_pickle_pth() -> Vec<u8> {
    const DEPTH: usize = 100_000;
    let mut pickle = vec![0x80, 2];
    pickle.extend(std::iter::repeat_n(b']', DEPTH));
    pickle.extend(std::iter::repeat_n(b'a', DEPTH - 1));
    pickle.push(b'.');
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&pickle).unwrap();
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap().into_inner()
}

fn safetensors_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let path = dir.join("nano.safetensors");
    save_safetensors(&nano(), &path).unwrap();
    vec![
        read(&path),
        read(&common::fixture("unknown_arch.safetensors")),
        read(&common::fixture("v2_reg4__28x42.safetensors")),
    ]
}

fn npy_seed(dir: &Path) -> Vec<u8> {
    let path = dir.join("seed.npy");
    let values: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32 * 0.5).collect();
    write_npy(&path, &[2, 3, 4], &values).unwrap();
    read(&path)
}

fn npz_seed(npy: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("arr_0.npy", stored).unwrap();
    zip.write_all(npy).unwrap();
    zip.finish().unwrap().into_inner()
}

fn disparity_npz(dir: &Path) -> Vec<u8> {
    let path = dir.join("disparity.npy");
    let values: Vec<f32> = (0..6 * 8).map(|v| v as f32).collect();
    write_npy(&path, &[6, 8], &values).unwrap();
    npz_seed(&read(&path))
}

fn image_seeds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let picture = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, ((x + y) * 5) as u8])
    });
    ["png", "jpg", "bmp", "tiff", "webp"]
        .into_iter()
        .map(|extension| {
            let path = dir.join(format!("seed.{extension}"));
            picture.save(&path).unwrap();
            (extension.to_string(), read(&path))
        })
        .collect()
}

/// A PNG header claiming 16384 x 16384 16-bit RGBA (2 GiB decoded) followed by no pixel data.
fn png_bomb_header() -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&16_384u32.to_be_bytes());
    ihdr.extend_from_slice(&16_384u32.to_be_bytes());
    ihdr.extend_from_slice(&[16, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn config_seeds() -> (Vec<u8>, Vec<u8>) {
    let config = TrainConfig::default();
    (
        serde_json::to_vec_pretty(&config).unwrap(),
        toml::to_string(&config).unwrap().into_bytes(),
    )
}

// ---- parsers under test ----

fn load_checkpoint(path: &Path) -> Result<(), String> {
    load_model(path, &LoadOptions::default(), &Device::flex())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn load_image(path: &Path) -> Result<(), String> {
    load_rgb(path).map(|_| ()).map_err(|e| e.to_string())
}

fn load_config(path: &Path) -> Result<(), String> {
    TrainConfig::from_file(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn load_spair(path: &Path) -> Result<(), String> {
    // The annotation goes where SPair keeps it: `<root>/PairAnnotation/<split>/<pair>.json`.
    let root = path.with_extension("spair");
    let split = root.join("PairAnnotation/test");
    std::fs::create_dir_all(&split).map_err(|e| e.to_string())?;
    let copy = split.join(format!("{CASE_STEM}.json"));
    std::fs::copy(path, &copy).map_err(|e| e.to_string())?;
    let result = load_pairs(&root, "test", None).map(|_| ());
    std::fs::remove_dir_all(&root).ok();
    result.map_err(|e| e.to_string())
}

// ---- the run ----

fn run_target(
    index: usize,
    target: &Target,
    dir: &Path,
    hook_message: &Mutex<Option<String>>,
) -> Tally {
    let cases = cases_per_kind();
    let path = dir.join(format!("{CASE_STEM}.{}", target.extension));
    let mut tally = Tally::default();
    let run_case = |bytes: Vec<u8>, tally: &mut Tally| {
        std::fs::write(&path, &bytes).unwrap();
        drop(bytes);
        let baseline = counting_alloc::restart();
        let outcome = std::panic::catch_unwind(|| (target.parse)(&path));
        tally.cases += 1;
        let largest = counting_alloc::largest();
        tally.largest_alloc = tally.largest_alloc.max(largest);
        if largest > target.max_alloc
            && let Some(dir) = std::env::var_os("DINOSCOPE_FUZZ_KEEP")
        {
            // Keeps the case for reproducing it with the command line.
            let kept = Path::new(&dir).join(format!("over-bound.{}", target.extension));
            std::fs::copy(&path, kept).unwrap();
        }
        let peak = counting_alloc::peak().saturating_sub(baseline);
        tally.peak_live = tally.peak_live.max(peak);
        match outcome {
            Ok(Ok(())) => tally.accepted += 1,
            Ok(Err(message)) => {
                tally.errors += 1;
                if message.contains(CASE_STEM) {
                    tally.errors_naming_file += 1;
                } else if tally.unnamed.len() < 5 {
                    tally.unnamed.push(message);
                }
            }
            Err(_) => {
                let message = hook_message.lock().unwrap().take().unwrap_or_default();
                tally.panics.push(message);
            }
        }
    };
    for (s, seed) in target.seeds.iter().enumerate() {
        let mut rng = Rng::derive(0xF022, &[index as u64, s as u64]);
        run_case(seed.clone(), &mut tally);
        if seed.len() <= 4096 {
            for end in 0..seed.len() {
                run_case(seed[..end].to_vec(), &mut tally);
            }
        } else {
            for _ in 0..cases {
                run_case(truncate(seed, &mut rng), &mut tally);
            }
        }
        let generic: [Mutate; 2] = [flip_bytes, inflate_length];
        for mutate in generic
            .iter()
            .chain(target.structured.iter().map(|(_, m)| m))
        {
            for _ in 0..cases {
                run_case(mutate(seed, &mut rng), &mut tally);
            }
        }
    }
    tally
}

fn targets(dir: &Path) -> Vec<Target> {
    let npy = npy_seed(dir);
    let (json, toml) = config_seeds();
    let spair = read(&common::fixture(
        "spair_tiny/PairAnnotation/test/000001-2008_000001-2008_000002:cat.json",
    ));
    let mut targets = vec![
        Target {
            name: "checkpoint .pth (zip + pickle)".into(),
            extension: "pth".into(),
            seeds: checkpoint_seeds(dir),
            parse: load_checkpoint,
            max_alloc: 64 * MIB,
            structured: vec![
                ("zip sizes", zip_size_lie),
                ("pickle opcodes", pickle_opcode),
            ],
        },
        Target {
            name: "checkpoint .safetensors".into(),
            extension: "safetensors".into(),
            seeds: safetensors_seeds(dir),
            parse: load_checkpoint,
            max_alloc: 64 * MIB,
            structured: vec![("header lies", safetensors_lie)],
        },
        Target {
            name: "array .npy".into(),
            extension: "npy".into(),
            seeds: vec![npy.clone()],
            parse: |p| read_npy(p).map(|_| ()).map_err(|e| e.to_string()),
            max_alloc: 16 * MIB,
            structured: vec![],
        },
        Target {
            name: "array .npz".into(),
            extension: "npz".into(),
            seeds: vec![npz_seed(&npy)],
            parse: |p| read_npz(p, "arr_0").map(|_| ()).map_err(|e| e.to_string()),
            max_alloc: 16 * MIB,
            structured: vec![("zip sizes", zip_size_lie)],
        },
        Target {
            name: "feature map .npy (fusion)".into(),
            extension: "npy".into(),
            seeds: vec![npy],
            parse: |p| {
                load_external(p, None)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
            max_alloc: 16 * MIB,
            structured: vec![],
        },
        Target {
            name: "stereo disparity .npz".into(),
            extension: "npz".into(),
            seeds: vec![disparity_npz(dir)],
            parse: |p| load_disparity(p).map(|_| ()).map_err(|e| e.to_string()),
            max_alloc: 16 * MIB,
            structured: vec![("zip sizes", zip_size_lie)],
        },
        Target {
            name: "training config .json".into(),
            extension: "json".into(),
            seeds: vec![json],
            parse: load_config,
            max_alloc: 16 * MIB,
            structured: vec![],
        },
        Target {
            name: "training config .toml".into(),
            extension: "toml".into(),
            seeds: vec![toml],
            parse: load_config,
            max_alloc: 16 * MIB,
            structured: vec![],
        },
        Target {
            name: "SPair annotation .json".into(),
            extension: "json".into(),
            seeds: vec![spair],
            parse: load_spair,
            max_alloc: 16 * MIB,
            structured: vec![],
        },
    ];
    for (extension, seed) in image_seeds(dir) {
        let mut seeds = vec![seed];
        if extension == "png" {
            seeds.push(png_bomb_header());
        }
        targets.push(Target {
            name: format!("image .{extension}"),
            extension,
            seeds,
            parse: load_image,
            // The decoder's own limit (`load_rgb`: 2 GiB per image, sides up to 16384).
            max_alloc: 2 << 30,
            structured: vec![],
        });
    }
    targets
}

#[test]
fn no_parser_panics_or_over_allocates_on_mutated_input() {
    let dir = tempfile::tempdir().unwrap();
    let hook_message: &'static Mutex<Option<String>> = Box::leak(Box::new(Mutex::new(None)));
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = dinoscope::panics::message(info.payload());
        *hook_message.lock().unwrap() = Some(format!("{text}{location}"));
    }));
    let mut report = String::from(
        "| target | cases | accepted | errors (naming the file) | panics | largest allocation | peak live |\n|---|---|---|---|---|---|---|\n",
    );
    let mut failures: HashMap<String, String> = HashMap::new();
    for (index, target) in targets(dir.path()).into_iter().enumerate() {
        let started = std::time::Instant::now();
        let tally = run_target(index, &target, dir.path(), hook_message);
        report.push_str(&format!(
            "| {} | {} | {} | {} ({}) | {} | {:.1} MiB | {:.1} MiB |\n",
            target.name,
            tally.cases,
            tally.accepted,
            tally.errors,
            tally.errors_naming_file,
            tally.panics.len(),
            tally.largest_alloc as f64 / MIB as f64,
            tally.peak_live as f64 / MIB as f64,
        ));
        eprintln!(
            "{}: {} cases in {:.1} s",
            target.name,
            tally.cases,
            started.elapsed().as_secs_f64()
        );
        if !tally.panics.is_empty() {
            failures.insert(
                format!("{} panics", target.name),
                format!("{:?}", &tally.panics[..tally.panics.len().min(5)]),
            );
        }
        if tally.errors_naming_file != tally.errors {
            failures.insert(
                format!("{} errors not naming the file", target.name),
                format!("{:?}", tally.unnamed),
            );
        }
        if tally.largest_alloc > target.max_alloc {
            failures.insert(
                format!("{} allocation", target.name),
                format!("{} bytes > bound {}", tally.largest_alloc, target.max_alloc),
            );
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{report}");
    assert!(failures.is_empty(), "{failures:#?}\n{report}");
}
