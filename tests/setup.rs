//! The README's two set-up commands, `cargo run` and `bash .ci/run`, share one build.

use std::process::Command;

fn without_target_overrides(command: &mut Command) -> &mut Command {
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CI")
}

fn stdout(command: &mut Command) -> String {
    let out = command.output().expect("run the command");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_tests_build_where_cargo_run_builds() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = stdout(without_target_overrides(Command::new(cargo).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ])));
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let cargo_run_dir = metadata["target_directory"].as_str().unwrap();

    let tests_dir = stdout(without_target_overrides(
        Command::new("bash").arg(".ci/target-dir"),
    ));
    assert_eq!(tests_dir, cargo_run_dir);

    // A target directory the user chose is used by both.
    let chosen = stdout(
        without_target_overrides(Command::new("bash").arg(".ci/target-dir"))
            .env("CARGO_TARGET_DIR", "/somewhere/else"),
    );
    assert_eq!(chosen, "/somewhere/else");
}
