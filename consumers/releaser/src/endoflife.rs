//! A stream's end of life, the OSTree way: each arch's release ref gets one more commit, the
//! last release's tree and metadata plus `ostree.endoflife` (a sentence for the machine's
//! users) and `ostree.endoflife-rebase` (the successor's release ref for that arch), so that
//! `ostree admin upgrade` and rpm-ostree move every machine following the old ref to the
//! successor's by themselves. It is a fast-forward, the summary is regenerated, and the stream
//! gets no more two-week releases.
//!
//! The stream's configured `end_of_life` date (the releaser's clock, [`crate::deadlines`]) or
//! an operator's `fortnight.override.end-of-life` ends it. A signed stream's end-of-life
//! commits go through the signing request and reply of releases ([`crate::signing`]): the refs
//! move only on the signer's `SUCCESS`. What was done is recorded in
//! `<stream>/.endoflife.json` (the `fortnight.stream.end-of-life` body), so asking again (a
//! redelivery, another round of the clock, a second override) announces the same message under
//! the same id and commits nothing. The end-of-life commits are reproducible, so a run cut
//! short between moving the refs and the record makes the same commits when run again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gate::succession::Role;
use messages::{
    Arch, Cause, EndOfLifeArch, Message, Outgoing, Ref, SignCommit, SignRequested, Stream,
    StreamEndOfLife, Version, derived_id,
};
use ostree_cli::{ENDOFLIFE, OstreeError, Repo};
use settings::Settings;
use store::{Store, StoreError};

use crate::{NAME, NoTwoweek, twoweek_stream};

#[derive(Debug, thiserror::Error)]
pub enum EndOfLifeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ostree(#[from] OstreeError),
    #[error(transparent)]
    NoTwoweek(#[from] NoTwoweek),
    #[error(
        "{stream} cannot end yet: its successor {successor} has no release on {arch} ({rebase} is not in {repo}), so its machines would have nowhere to go; release {successor} first"
    )]
    SuccessorNotReleased {
        stream: Stream,
        successor: Stream,
        arch: Arch,
        rebase: Ref,
        repo: String,
    },
    #[error(
        "{stream} cannot end yet: two-week releases have not moved to its successor {successor}, so its machines would move to a pre-release; switch first (`fortnight switch {successor}`, or {successor}'s `switch_at`)"
    )]
    NotSwitched { stream: Stream, successor: Stream },
    #[error(
        "{stream} cannot end yet: the signatures of release {version} are still awaited (`fortnight status {stream}`); ask again once it is released or skipped"
    )]
    SigningBusy { stream: Stream, version: Version },
    #[error(
        "{stream}'s release refs point at releases, but the stream has no current release (`releases/latest`) to name its signing request after; restore the link"
    )]
    NoCurrentRelease { stream: Stream },
}

impl EndOfLifeError {
    /// Whether the stream cannot end as it is (rather than the store or `ostree` failing).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::NoTwoweek(_)
                | Self::SuccessorNotReleased { .. }
                | Self::NotSwitched { .. }
                | Self::SigningBusy { .. }
                | Self::NoCurrentRelease { .. }
        )
    }
}

/// Ending a stream that is not ready for it is refused: no retry helps until an operator
/// acts (switches to the successor, releases it). The store and `ostree` are classified as everywhere else.
impl From<EndOfLifeError> for bus::StepError {
    fn from(error: EndOfLifeError) -> Self {
        match error {
            EndOfLifeError::Store(error) => error.into(),
            EndOfLifeError::Ostree(error) => error.into(),
            EndOfLifeError::NoTwoweek(error) => error.into(),
            EndOfLifeError::SuccessorNotReleased { .. }
            | EndOfLifeError::NotSwitched { .. }
            | EndOfLifeError::SigningBusy { .. }
            | EndOfLifeError::NoCurrentRelease { .. } => {
                bus::StepError::permanent(error.to_string())
            }
        }
    }
}

/// The stream's end of life, once its release refs point at their end-of-life commits.
pub fn read(store: &Store, stream: &Stream) -> Result<Option<StreamEndOfLife>, StoreError> {
    store::read_json(&store.end_of_life_path(stream))
}

pub fn write(store: &Store, ended: &StreamEndOfLife) -> Result<(), StoreError> {
    store::write_json(&store.end_of_life_path(&ended.stream), ended)
}

/// "since <at>, by <operator>: <reason>" (or "by date"), for refusals and `fortnight status`.
pub fn describe(ended: &StreamEndOfLife) -> String {
    let at = ended.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match &ended.cause {
        Cause::Date => format!("since {at}, its configured date"),
        Cause::Operator { operator, reason } => {
            format!("since {at}, by {operator}: {reason}")
        }
    }
}

/// The announcement of an end of life; one id per stream, whoever ended it and however often.
pub fn announcement(ended: &StreamEndOfLife) -> Outgoing {
    Outgoing::new(
        derived_id(NAME, &[ended.stream.as_str(), StreamEndOfLife::TOPIC]),
        ended,
    )
}

/// What the machines of `stream` show their users (`ostree.endoflife`), moving to `rebase`.
fn sentence(stream: &Stream, rebase: Option<&Ref>) -> String {
    match rebase {
        Some(rebase) => format!(
            "Fedora Atomic Host {stream} has reached end of life; this machine moves to {rebase}"
        ),
        None => {
            format!("Fedora Atomic Host {stream} has reached end of life and gets no more updates")
        }
    }
}

/// Whether the machines of `stream` on `arch` can be moved to `rebase`, the successor's
/// release ref. `ostree admin upgrade` pulls the rebase ref from the remote the machine
/// already follows, so it must be in the same repository, with a release on it.
fn successor_released(repo: &Repo, rebase: &Ref) -> Result<bool, OstreeError> {
    Ok(repo.rev_parse(rebase)?.is_some())
}

/// The end of life of `stream`, made but not yet in place: every released arch's end-of-life
/// commit, checked to be a fast-forward to a successor that is ready: switched to, and
/// released. Moves nothing ([`promote`] does), so a signed stream has the commits signed
/// first. A ref already at its end-of-life commit (a run cut short) keeps it.
pub fn prepare(
    settings: &Settings,
    store: &Store,
    stream: &Stream,
    cause: Cause,
    now: DateTime<Utc>,
) -> Result<StreamEndOfLife, EndOfLifeError> {
    let (stream_settings, twoweek) = twoweek_stream(settings, stream)?;
    let successor = settings.successor(stream);
    // Until the switch the successor is a pre-release; its users signed up for that, the old
    // stream's did not.
    if let Some((next, _)) = successor
        && !matches!(
            gate::succession::two_week_role(settings, store, stream, now)?,
            Role::Retired { .. }
        )
    {
        return Err(EndOfLifeError::NotSwitched {
            stream: stream.clone(),
            successor: next.clone(),
        });
    }
    let repo = Repo::new(&stream_settings.ostree_repo);
    let mut arches = BTreeMap::new();
    for (arch, release_ref) in &twoweek.release_refs {
        let Some(head) = repo.rev_parse(release_ref)? else {
            tracing::info!(stream = %stream, arch = %arch, release_ref = %release_ref, "nothing was released on this arch; no end-of-life commit");
            continue;
        };
        let rebase = successor
            .and_then(|(_, s)| s.twoweek.as_ref())
            .and_then(|tw| tw.release_refs.get(arch));
        if let (Some(rebase), Some((successor, _))) = (rebase, successor)
            && !successor_released(&repo, rebase)?
        {
            return Err(EndOfLifeError::SuccessorNotReleased {
                stream: stream.clone(),
                successor: successor.clone(),
                arch: arch.clone(),
                rebase: rebase.clone(),
                repo: repo.path().display().to_string(),
            });
        }
        let message = sentence(stream, rebase);
        let commit = match repo.metadata_string(&head, ENDOFLIFE)? {
            Some(_) => head,
            None => repo.end_of_life_commit(&head, release_ref, &message, rebase)?,
        };
        arches.insert(
            arch.clone(),
            EndOfLifeArch {
                release_ref: release_ref.clone(),
                commit,
                rebase: rebase.cloned(),
                message,
            },
        );
    }
    let successor = successor.map(|(name, _)| name.clone());
    Ok(StreamEndOfLife {
        message: match &successor {
            Some(successor) => format!(
                "Fedora Atomic Host {stream} has reached end of life; its machines move to {successor}"
            ),
            None => sentence(stream, None),
        },
        stream: stream.clone(),
        successor,
        arches,
        at: now,
        cause,
    })
}

/// Moves every release ref of `ended` to its end-of-life commit (each a fast-forward, made by
/// [`prepare`]) and regenerates the summary. The caller holds the stream's lock.
pub fn promote(settings: &Settings, ended: &StreamEndOfLife) -> Result<(), EndOfLifeError> {
    let (stream_settings, _) = twoweek_stream(settings, &ended.stream)?;
    let repo = Repo::new(&stream_settings.ostree_repo);
    for (arch, at) in &ended.arches {
        repo.set_ref(&at.release_ref, &at.commit)?;
        tracing::info!(stream = %ended.stream, arch = %arch, release_ref = %at.release_ref, commit = %at.commit, rebase = ?at.rebase.as_ref().map(Ref::as_str), "release ref at its end-of-life commit");
    }
    repo.update_summary()?;
    tracing::warn!(stream = %ended.stream, successor = ?ended.successor.as_ref().map(Stream::as_str), arches = ended.arches.len(), "stream at its end of life");
    Ok(())
}

/// Whether `stream`'s end-of-life commits must be signed before its refs move: the stream is
/// signed and has released something.
pub fn needs_signatures(settings: &Settings, ended: &StreamEndOfLife) -> bool {
    !ended.arches.is_empty()
        && settings
            .stream(&ended.stream)
            .is_some_and(|s| s.signing.is_some())
}

/// The signing request for the end-of-life commits of `ended`, named after the stream's
/// current release (`version`, whose major picks the key) and with no files to sign. Its id
/// derives from the stream alone, so asking again sends the same request.
pub fn sign_request(
    store: &Store,
    ended: &StreamEndOfLife,
) -> Result<SignRequested, EndOfLifeError> {
    let stream = &ended.stream;
    let version =
        store
            .current_release(stream)?
            .ok_or_else(|| EndOfLifeError::NoCurrentRelease {
                stream: stream.clone(),
            })?;
    Ok(SignRequested {
        request_id: derived_id(NAME, &[stream.as_str(), "end-of-life", "sign"]),
        stream: stream.clone(),
        build_id: format!("{stream}-end-of-life"),
        artifacts: Vec::new(),
        commits: ended
            .arches
            .iter()
            .map(|(arch, at)| SignCommit {
                arch: arch.clone(),
                ostree_ref: at.release_ref.clone(),
                commit: at.commit.clone(),
            })
            .collect(),
        version,
    })
}

/// When the configured `end_of_life` of a two-week stream has come at `now`.
pub fn due(settings: &Settings, now: DateTime<Utc>) -> impl Iterator<Item = &Stream> {
    settings
        .streams
        .iter()
        .filter(move |(_, s)| s.twoweek.is_some() && s.end_of_life.is_some_and(|at| at <= now))
        .map(|(stream, _)| stream)
}

/// The next configured end of life after `now`, to wake the clock for it.
pub fn next(settings: &Settings, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    settings
        .streams
        .values()
        .filter(|s| s.twoweek.is_some())
        .filter_map(|s| s.end_of_life)
        .filter(|at| *at > now)
        .min()
}
