//! No lost work: a training run killed (SIGKILL) at random moments, its checkpoint saves included,
//! or stopped by a file-size limit part-way through writing them, always leaves the last good
//! checkpoints readable, and a resumed run finishes from them. The same for a command-line export
//! killed while it rewrites its files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use dinoscope::model::{LoadOptions, load_model};
use dinoscope::rng::Rng;
use dinoscope::train::official_checkpoint;
use dinoscope::train::run::{RESUME_FILE, TEACHER_FILE};

/// 64 synthetic scenes, batch 4, four epochs: 64 iterations, saved after every one.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("small.json");
    std::fs::write(
        &path,
        r#"{"epochs": 4, "batch": 4, "eval_every": 0,
            "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
            "augment": {"local_crops": 2}, "synthetic": {"size": 72, "images": 64}}"#,
    )
    .unwrap();
    path
}

const TOTAL_STEPS: usize = 64;

fn train(config: &Path, out: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dinoscope"));
    command
        .args(["train", "--device", "cpu", "--quiet", "--save-every", "1"])
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if resume {
        command.arg("--resume");
    }
    command
}

/// Iterations the run in `out` has logged so far.
fn logged_steps(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |text| text.lines().count())
}

/// The checkpoints that exist load; returns the iteration the training checkpoint resumes at.
fn assert_checkpoints_readable(out: &Path, when: &str) -> Option<usize> {
    let teacher = out.join(TEACHER_FILE);
    if teacher.exists() {
        let loaded = load_model(&teacher, &LoadOptions::default(), &Device::flex());
        assert!(loaded.is_ok(), "{when}: {:?}", loaded.err());
    }
    let resume = out.join(RESUME_FILE);
    resume
        .exists()
        .then(|| match official_checkpoint::load(&resume) {
            Ok(saved) => saved.next_step,
            Err(e) => panic!("{when}: {e}"),
        })
}

#[test]
fn training_killed_at_random_moments_resumes_from_its_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("run");
    let mut rng = Rng::new(11);
    let mut last_step = 0;
    let mut kills_mid_run = 0;
    for round in 0..6 {
        let resume = out.join(RESUME_FILE).exists();
        // Kill a few iterations further on, at a random moment inside an iteration or a save.
        let target = (logged_steps(&out) + 2 + rng.below(6)).min(TOTAL_STEPS - 2);
        let mut child = train(&config, &out, resume).spawn().unwrap();
        let started = Instant::now();
        while logged_steps(&out) < target
            && started.elapsed() < Duration::from_secs(120)
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let wait = Duration::from_millis(rng.below(60) as u64);
        std::thread::sleep(wait);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let when = format!("after the kill of round {round}, {wait:?} after iteration {target}");
        if let Some(step) = assert_checkpoints_readable(&out, &when) {
            assert!(
                step >= last_step,
                "{when}: went back from {last_step} to {step}"
            );
            last_step = step;
            kills_mid_run += usize::from(step < TOTAL_STEPS);
        }
    }
    assert!(
        kills_mid_run >= 2,
        "only {kills_mid_run} kills landed between the first checkpoint and the end"
    );
    let status = train(&config, &out, out.join(RESUME_FILE).exists())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        assert_checkpoints_readable(&out, "after finishing"),
        Some(TOTAL_STEPS)
    );
}

#[cfg(unix)]
#[test]
fn a_file_size_limit_hit_while_saving_keeps_the_previous_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("run");
    let first = train(&config, &out, false)
        .args(["--max-steps", "2"])
        .status()
        .unwrap();
    assert!(first.success());
    let before = |name: &str| std::fs::read(out.join(name)).unwrap();
    let (teacher, checkpoint) = (before(TEACHER_FILE), before(RESUME_FILE));

    // 256 KiB per file: the next save (MBs) fails part-way (SIGXFSZ, or EFBIG where ignored).
    let limited = Command::new("bash")
        .args(["-c", "ulimit -f 256; exec \"$@\"", "limited"])
        .arg(env!("CARGO_BIN_EXE_dinoscope"))
        .args(train(&config, &out, true).get_args())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!limited.success());
    assert_eq!(before(TEACHER_FILE), teacher, "the teacher was damaged");
    assert_eq!(
        before(RESUME_FILE),
        checkpoint,
        "the checkpoint was damaged"
    );
    assert_eq!(
        assert_checkpoints_readable(&out, "after the limit"),
        Some(2)
    );

    let resumed = train(&config, &out, true).status().unwrap();
    assert!(resumed.success());
    assert_eq!(
        assert_checkpoints_readable(&out, "after resuming"),
        Some(TOTAL_STEPS)
    );
}

#[test]
fn an_export_killed_while_rewriting_leaves_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for i in 0..6u8 {
        image::RgbImage::from_fn(320, 240, |x, y| {
            image::Rgb([(x as u8).wrapping_mul(i + 1), y as u8, i * 40])
        })
        .save(images.join(format!("{i}.png")))
        .unwrap();
    }
    let out = dir.path().join("pca");
    let pca = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dinoscope"));
        command
            .args(["pca", "--device", "cpu", "--weights"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/weights/default.safetensors"
            ))
            .arg("--out")
            .arg(&out)
            .arg(&images)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    assert!(pca().status().unwrap().success());
    let mut rng = Rng::new(5);
    for round in 0..5 {
        let mut child = pca().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(50 + rng.below(600) as u64));
        let _ = child.kill();
        let _ = child.wait();
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            let name = path.display().to_string();
            if name.ends_with(".png") {
                assert!(
                    image::open(&path).is_ok(),
                    "round {round}: {name} is broken"
                );
            } else if name.ends_with(".npy") {
                assert!(
                    dinoscope::arrays::read_npy(&path).is_ok(),
                    "round {round}: {name} is broken"
                );
            }
        }
    }
}

#[test]
fn a_failed_checkpoint_save_is_reported_as_a_save_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let out = dir.path().join("run");
    // A folder where the checkpoint file goes: the final rename fails.
    std::fs::create_dir_all(out.join(RESUME_FILE).join("in-the-way")).unwrap();
    let result = train(&config, &out, false)
        .args(["--max-steps", "1"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    assert!(err.contains("cannot save the training checkpoint"), "{err}");
    assert!(!err.contains("resume"), "{err}");
}
