//! The signer: answers `fortnight.sign.requested` the way Fedora's robosignatory does, for
//! deployments without robosignatory (and for tests and the demo). For each request it
//! 1. picks the stream's key for the version's major version (`streams.<s>.signing.keys`);
//! 2. checks every artifact's sha256, refusing a path outside the store;
//! 3. writes a detached, armored `<file>.asc` next to each artifact. Detached rather than
//!    clear-signed in place: the CHECKSUM keeps exactly the bytes the releaser wrote (a
//!    replayed release rewrites the same bytes, so the signature stays good), `sha256sum -c`
//!    reads it as is, and the signature is one more file, as Fedora CoreOS's `.sig` files are;
//! 4. signs each commit in the stream's OSTree repository (`ostree gpg-sign`), so that a client
//!    with the public key pulls with `gpg-verify=true`;
//! 5. publishes the public key as `<store>/.keys/<fingerprint>.asc`;
//! 6. answers `fortnight.sign.finished`: the request plus `SUCCESS` or `FAILURE` and
//!    `failure-message`.
//!
//! The reply is recorded under the request id before it is sent, so a replayed request is
//! answered again with the same message and nothing is signed twice. A request the signer
//! cannot fulfil (no key, a bad checksum, a path outside the store, gpg or ostree refusing)
//! gets a `FAILURE` reply, so the requester stops waiting; only a body that is not a request
//! at all is dead-lettered, and a store that cannot be written is retried.

mod gpg;
#[cfg(test)]
mod step_tests;

use std::path::Path;
use std::sync::Arc;

use bus::{BlockingStep, Outputs, StepError};
use messages::{Incoming, Message, Outgoing, SignFinished, SignRequested, SignStatus, derived_id};
use ostree_cli::{OstreeError, Repo};
use settings::{Settings, SigningSettings};
use store::{Store, StoreError};

pub use gpg::{Gpg, GpgError};

pub const NAME: &str = "signer";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gpg(#[from] GpgError),
    #[error(transparent)]
    Ostree(#[from] OstreeError),
}

/// The signer step.
#[derive(Debug, Clone)]
pub struct Signer {
    settings: Arc<Settings>,
    store: Store,
}

bus::input! {
    /// What the signer reads: requests for signatures.
    pub enum SignerInput {
        Request(SignRequested),
    }
}

impl Signer {
    pub fn new(settings: Arc<Settings>) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self { settings, store })
    }

    /// The stream's signing settings and the key for the request's version.
    fn key<'a>(
        &'a self,
        request: &SignRequested,
    ) -> Result<(&'a SigningSettings, &'a Path, &'a str), SignError> {
        let stream = self
            .settings
            .require_stream(&request.stream)
            .map_err(|unknown| SignError::Refused(unknown.to_string()))?;
        let signing = stream.signing.as_ref().ok_or_else(|| {
            SignError::Refused(format!(
                "stream {} has no [streams.{}.signing]; this signer does not sign it",
                request.stream, request.stream
            ))
        })?;
        let key = signing.key_for(&request.version).ok_or_else(|| {
            SignError::Refused(format!(
                "no key for major version {:?} of {} {} (streams.{}.signing.keys)",
                SigningSettings::major(&request.version),
                request.stream,
                request.version,
                request.stream
            ))
        })?;
        Ok((signing, stream.ostree_repo.as_path(), key))
    }

    /// Checks every artifact, then signs them and the commits.
    fn sign(&self, request: &SignRequested) -> Result<(), SignError> {
        let (signing, repo, key) = self.key(request)?;
        let mut files = Vec::with_capacity(request.artifacts.len());
        for artifact in &request.artifacts {
            let expected = artifact.sha256().ok_or_else(|| {
                SignError::Refused(format!(
                    "{}: checksum {:?} is not sha256:<hex>",
                    artifact.file, artifact.checksum
                ))
            })?;
            let path = self.store.resolve(&artifact.file).map_err(|error| {
                SignError::Refused(format!(
                    "{:?} is not a path in the store: {error}",
                    artifact.file
                ))
            })?;
            let actual = store::hash_file(&path)?.sha256;
            if actual != expected {
                return Err(SignError::Refused(format!(
                    "{}: sha256 is {actual}, the request says {expected}; the file changed since it was requested",
                    artifact.file
                )));
            }
            files.push(path);
        }
        let gpg = Gpg::new(&signing.gnupg_home);
        for path in &files {
            let signature = gpg.detach_sign(key, path)?;
            let mut name = path.clone().into_os_string();
            name.push(".asc");
            store::write_atomic(Path::new(&name), &signature)?;
        }
        let repo = Repo::new(repo);
        let env = gpg.env();
        let env: Vec<_> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        for commit in &request.commits {
            repo.gpg_sign(&commit.commit, key, &signing.gnupg_home, &env)?;
            tracing::info!(stream = %request.stream, arch = %commit.arch, commit = %commit.commit, key = key, "commit signed");
        }
        let public = gpg.export(key)?;
        store::create_dir_all(&self.store.keys_dir())?;
        store::write_atomic(&self.store.keys_dir().join(format!("{key}.asc")), &public)?;
        Ok(())
    }

    /// The reply on the deployment's reply topic (`signing_topics.finished`), with an id
    /// derived from the request, so answering again sends the same message.
    fn reply(&self, request: &SignRequested, finished: &SignFinished) -> Outgoing {
        let id = derived_id(
            NAME,
            &[&request.request_id.to_string(), SignFinished::TOPIC],
        );
        let mut reply = Outgoing::new(id, finished);
        reply
            .topic
            .clone_from(&self.settings.signing_topics.finished);
        reply
    }

    fn answer(&self, request: SignRequested) -> Result<Outputs, StepError> {
        let record = self
            .store
            .signed_record_path(&request.stream, &request.request_id);
        if let Some(finished) = store::read_json::<SignFinished>(&record)? {
            tracing::info!(request_id = %request.request_id, status = ?finished.status, "request answered before; answering again without signing");
            return Ok(vec![self.reply(&request, &finished)]);
        }
        let (status, failure_message) = match self.sign(&request) {
            Ok(()) => {
                tracing::info!(request_id = %request.request_id, stream = %request.stream, version = %request.version, artifacts = request.artifacts.len(), commits = request.commits.len(), "signed");
                (SignStatus::Success, None)
            }
            // A full disk may pass by itself: try again. Anything else is answered with
            // FAILURE, so the requester stops waiting.
            Err(SignError::Store(error)) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                tracing::warn!(request_id = %request.request_id, stream = %request.stream, version = %request.version, error = %error, "signing refused");
                (SignStatus::Failure, Some(error.to_string()))
            }
        };
        let finished = SignFinished {
            request: request.clone(),
            status,
            failure_message,
        };
        record
            .parent()
            .map_or(Ok(()), store::create_dir_all)
            .and_then(|()| store::write_json(&record, &finished))
            .map_err(|error| {
                StepError::from(error).context(format!(
                    "cannot record the answer to request {}",
                    request.request_id
                ))
            })?;
        Ok(vec![self.reply(&request, &finished)])
    }
}

impl BlockingStep for Signer {
    const NAME: &'static str = NAME;
    type Input = SignerInput;

    /// gpg, ostree and hashing block: the runtime runs this on the blocking pool.
    fn handle(&self, input: SignerInput, _message: &Incoming) -> Result<Outputs, StepError> {
        let SignerInput::Request(request) = input;
        self.answer(request)
    }
}
