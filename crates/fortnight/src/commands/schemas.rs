//! `fortnight schemas write|check`: keep `schemas/` in step with the message types.

use std::path::PathBuf;
use std::process::ExitCode;

use messages::schema;

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

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Write(args) => {
            let changed = schema::write_dir(&args.dir)?;
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
            let drift = schema::check_dir(&args.dir)?;
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
