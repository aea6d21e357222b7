//! Recipe mode: the stream's recipe for a format is an executable that receives its inputs
//! as environment variables and writes exactly one image file into `FORTNIGHT_OUTPUT_DIR`.
//!
//! | variable | value |
//! |---|---|
//! | `FORTNIGHT_REPO` | the OSTree repository (path) |
//! | `FORTNIGHT_REF`, `FORTNIGHT_COMMIT` | the tree |
//! | `FORTNIGHT_VERSION`, `FORTNIGHT_STREAM`, `FORTNIGHT_ARCH`, `FORTNIGHT_FORMAT` | the candidate and format |
//! | `FORTNIGHT_OUTPUT_DIR` | an empty directory for the image; also the working directory |
//! | `TMPDIR` | scratch space, removed after the build whatever happens |
//!
//! Besides these, a recipe gets the stream's `recipe_env` and, from the consumer's own
//! environment, only what `runner::INHERITED` names: never the broker URL and its password.

use std::time::Duration;

use messages::{Format, Tree};
use runner::{Job, RunError};
use settings::StreamSettings;

use crate::Failure;
use crate::staging::{Candidate, Staging};

/// Runs the recipe for `format` and stages the image it wrote.
pub(crate) async fn build(
    staging: &mut Staging,
    stream: &StreamSettings,
    tree: &Tree,
    candidate: &Candidate,
    format: &Format,
    timeout: Duration,
) -> Result<(), Failure> {
    let Some(recipe) = stream.recipes.get(format) else {
        return Err(Failure::build(
            Some(format),
            format!(
                "stream {} has no recipe for format {format}; add streams.{}.recipes.\"{format}\"",
                candidate.stream, candidate.stream
            ),
        ));
    };
    let out_dir = staging.path().join(format!("out-{format}"));
    let log = staging.path().join(format!("{format}.log"));
    // The recipe's scratch space lives in the staging directory, so it goes with it even when
    // a timeout kills the recipe before its own clean-up runs.
    let tmp = staging.path().join(format!("tmp-{format}"));
    for dir in [&out_dir, &tmp] {
        tokio::fs::create_dir(dir)
            .await
            .map_err(|e| Failure::retry(format!("cannot create {}: {e}", dir.display())))?;
    }
    let job = Job::new(recipe, timeout)
        .envs(&stream.recipe_env)
        .env("FORTNIGHT_REPO", &tree.repo)
        .env("FORTNIGHT_REF", tree.ostree_ref.as_str())
        .env("FORTNIGHT_COMMIT", tree.commit.as_str())
        .env("FORTNIGHT_VERSION", candidate.version.as_str())
        .env("FORTNIGHT_STREAM", candidate.stream.as_str())
        .env("FORTNIGHT_ARCH", candidate.arch.as_str())
        .env("FORTNIGHT_FORMAT", format.as_str())
        .env("FORTNIGHT_OUTPUT_DIR", &out_dir)
        .env("TMPDIR", &tmp)
        .cwd(&out_dir);
    tracing::info!(recipe = %recipe.display(), format = %format, "recipe started");
    let finished = match runner::run(&job, &log).await {
        Ok(finished) => finished,
        Err(e @ RunError::Spawn { .. }) => return Err(Failure::build(Some(format), e.to_string())),
        Err(e) => return Err(Failure::Step(e.into())),
    };
    let output = tokio::fs::read(&log).await.unwrap_or_default();
    let ending = finished.ending.describe(timeout);
    staging.log(&format!(
        "### {format}: {} ({ending}, {:.1}s)",
        recipe.display(),
        finished.duration.as_secs_f64()
    ));
    staging.log(&String::from_utf8_lossy(&output));
    tracing::info!(format = %format, ending = %ending, seconds = finished.duration.as_secs_f64(), "recipe finished");
    let image = match finished.ending.success() {
        true => single_output(&out_dir)
            .await
            .map_err(|problem| format!(" {problem}")),
        false => Err(format!(": {ending}")),
    };
    match image {
        Ok(image) => {
            staging.add_image(format, image, None);
            Ok(())
        }
        Err(problem) => {
            let reason = format!("recipe {} for {format}{problem}", recipe.display());
            Err(match storage_fault(&output) {
                Some(fault) => Failure::retry(format!(
                    "{reason}, {fault}; free space on the store's filesystem or make it writable, the build is retried"
                )),
                None => Failure::build(Some(format), reason),
            })
        }
    }
}

/// What tools print for the errors that say the machine, not the recipe or the tree, is at
/// fault: ENOSPC, EDQUOT (glibc's and musl's wording) and EROFS.
const STORAGE_ERRORS: [&str; 4] = [
    "No space left on device",
    "Disk quota exceeded",
    "Quota exceeded",
    "Read-only file system",
];

/// Why a failed recipe may succeed once the store has room again or is writable: its output
/// names such an error. A recipe reports failure only by its exit status and its output, and
/// a tidy one (the shipped recipes) removes its scratch space on the way out, so by the time
/// it exits the space it ran out of is free again and only its tools' messages tell. (A store
/// that is still full or read-only fails the build log's write next, which is a retry too.)
fn storage_fault(output: &[u8]) -> Option<String> {
    let output = String::from_utf8_lossy(output);
    STORAGE_ERRORS
        .iter()
        .find(|e| output.contains(*e))
        .map(|error| format!("its output says {error:?}"))
}

/// The one regular, non-empty file a recipe must leave in its output directory.
async fn single_output(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| format!("left an unreadable output directory: {e}"))?;
    let mut found = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|e| e.to_string())? {
        let kind = entry.file_type().await.map_err(|e| e.to_string())?;
        if !kind.is_file() {
            return Err(format!(
                "wrote {:?}, which is not a regular file (symlinks and directories are refused)",
                entry.file_name()
            ));
        }
        found.push(entry.path());
    }
    match found.as_slice() {
        [] => Err("exited 0 but wrote nothing to FORTNIGHT_OUTPUT_DIR".to_owned()),
        [one] => {
            let size = tokio::fs::metadata(one)
                .await
                .map_err(|e| e.to_string())?
                .len();
            if size == 0 {
                Err(format!(
                    "wrote an empty file {:?}",
                    one.file_name().unwrap_or_default()
                ))
            } else {
                Ok(one.clone())
            }
        }
        many => Err(format!(
            "wrote {} files to FORTNIGHT_OUTPUT_DIR; exactly one image is expected",
            many.len()
        )),
    }
}
