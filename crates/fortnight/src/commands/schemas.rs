//! `fortnight schemas write|check`: keep `schemas/` in step with the message types. The
//! `messages` crate generates and compares; the files are read and written here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use messages::schema::{self, Drift};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Regenerate every topic's JSON Schema into DIR and remove schemas of topics that are gone.
    Write(Args),
    /// Exit 1 when DIR differs from the schemas the code generates.
    Check(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory holding one `<topic>.json` per topic.
    #[arg(long, default_value = "schemas")]
    pub dir: PathBuf,
}

/// Every `.json` file in `dir`, as (file name, text).
fn read_dir(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if name.ends_with(".json") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            files.push((name, text));
        }
    }
    Ok(files)
}

fn drift_of(dir: &Path) -> anyhow::Result<Vec<Drift>> {
    let files = read_dir(dir)?;
    Ok(schema::compare(
        files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    ))
}

/// Writes every generated schema into `dir` and removes files of topics that no longer exist.
/// Returns what changed.
fn write_dir(dir: &Path) -> anyhow::Result<Vec<Drift>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let drift = drift_of(dir)?;
    for (topic, generated) in schema::all() {
        let path = dir.join(schema::file_name(topic));
        std::fs::write(&path, schema::render(&generated))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    for item in &drift {
        if let Drift::Stale(file) = item {
            let path = dir.join(file);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(drift)
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Write(args) => {
            let changed = write_dir(&args.dir)?;
            for item in &changed {
                println!("updated: {item}");
            }
            println!(
                "{} schemas in {}, {} changed",
                schema::all().len(),
                args.dir.display(),
                changed.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let drift = drift_of(&args.dir)?;
            if drift.is_empty() {
                println!("{} matches the message types", args.dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            for item in &drift {
                eprintln!("drift: {item}");
            }
            eprintln!(
                "regenerate with `{}` and commit the result",
                schema::REGENERATE
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
