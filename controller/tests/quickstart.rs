//! `docs/quickstart.md` is checked against the code: every `fleetgate-controller` command in it
//! parses (flags exist, values are valid), and every script and kustomization path it names exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The lines of the quickstart's `sh` code blocks.
fn shell_lines() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/quickstart.md")).unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh => lines.push(l.to_owned()),
            _ => {}
        }
    }
    assert!(
        lines.len() > 20,
        "the quickstart has its commands in sh blocks"
    );
    lines
}

/// The arguments of each line that runs `program` (up to a `#` comment).
fn commands_of(program: &str) -> Vec<Vec<String>> {
    shell_lines()
        .iter()
        .filter_map(|l| {
            let code = l.split(" #").next().unwrap();
            let rest = code.strip_prefix(program)?.strip_prefix(' ')?;
            Some(rest.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

#[test]
fn every_controller_command_in_the_quickstart_parses() {
    let commands = commands_of("fleetgate-controller");
    assert!(commands.len() >= 2, "{commands:?}");
    for args in commands {
        let done = Command::new(env!("CARGO_BIN_EXE_fleetgate-controller"))
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        let errors = String::from_utf8_lossy(&done.stderr);
        assert!(
            done.status.success(),
            "fleetgate-controller {args:?}: {errors}"
        );
    }
}

#[test]
fn every_script_and_manifest_path_in_the_quickstart_exists() {
    let mut paths = Vec::new();
    for line in shell_lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_start_matches('(');
            if w.starts_with("scripts/") || w.starts_with("examples/") {
                paths.push(w.to_owned());
            } else if matches!(w, "-k" | "-f")
                && words.get(i + 1).is_some_and(|p| p.starts_with("examples/"))
            {
                assert!(root().join(words[i + 1]).exists(), "{line}");
            }
        }
    }
    assert!(paths.len() >= 6, "{paths:?}");
    for p in paths {
        assert!(
            root().join(&p).exists(),
            "{p} is named in the quickstart but does not exist"
        );
    }
    for d in [
        "examples/deploy/demo",
        "examples/deploy/member",
        "examples/deploy/overlays/envoy",
    ] {
        assert!(root().join(d).join("kustomization.yaml").exists(), "{d}");
    }
}
