//! The values a run has injected, each with the binding it was sent under, and the
//! matchers that scrub them out of what comes back.
//!
//! A response can only hold a value that was sent to where it came from, so a value is
//! scrubbed only from responses of destinations inside its binding. Scrubbing every value
//! from every response would turn the scrubber into a guess checker: a guest could fetch a
//! list of candidates from any host and see which one comes back redacted.
//! The step's output and log lines are scrubbed of every value the run injected: the guest
//! never sees them again (the next step of a workflow sees the output; the strength floor
//! at `secret set` keeps that from being a useful oracle).

use super::matchers::Matchers;
use super::scrub::{Matcher, ScrubError};
use crate::policy::{Binding, Destination};
use crate::secret::SecretValue;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

struct Entry {
    digest: [u8; 32],
    /// The digest of the credential's identity (`scope/key@version`) and the value: what a
    /// shared matcher is keyed by, so that runs share one only for the same credential.
    identity: [u8; 32],
    binding: Binding,
    value: Zeroizing<Vec<u8>>,
    /// Sent for one request only (a signature, a minted token): a matcher covering it is
    /// never kept for other runs, where it would only push out the ones worth keeping.
    once: bool,
}

/// What a run injected, and matchers built for the destinations it has seen.
#[derive(Default)]
pub(crate) struct Injected {
    /// Each credential injected, as `scope/key@version`.
    ids: Vec<String>,
    entries: Vec<Entry>,
    /// Matchers by the set of entries they cover (indexes, ascending).
    matchers: Vec<(Vec<usize>, Arc<Matcher>)>,
    /// The runtime's matchers, shared by its runs (none: this run builds its own).
    shared: Option<Arc<Matchers>>,
}

impl Injected {
    /// An empty record whose matchers come from (and go to) the runtime's `shared` ones.
    pub fn sharing(shared: Arc<Matchers>) -> Self {
        Injected {
            shared: Some(shared),
            ..Injected::default()
        }
    }

    /// How many credentials (scope, key and version) the run will have injected once
    /// `ids` are. Counted by identity, not by value: counting distinct values would tell a
    /// guest whether two keys hold the same value.
    pub fn count_after<'i>(&self, ids: impl IntoIterator<Item = &'i str>) -> usize {
        let mut all: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        for id in ids {
            if !all.contains(&id) {
                all.push(id);
            }
        }
        all.len()
    }

    /// Notes that `value`, the credential `id`, was injected under `binding`.
    pub fn note(&mut self, id: &str, value: &SecretValue, binding: &Binding) {
        self.add(id, value, binding, false);
    }

    /// Notes a value the credential `id` (`scope/key@version`) had before a rotation, sent
    /// under `binding`: scrubbed like an injected value from the responses of that
    /// binding's destinations, but never counted as injected (it was not, by this run).
    pub fn note_retired(&mut self, id: &str, value: &SecretValue, binding: &Binding) {
        self.push(id, value, binding, false);
    }

    /// [`Self::note`] for a value the host computed for one request (a signature, a JWT, a
    /// SigV4 authorization), which no later request will carry.
    pub fn note_once(&mut self, id: &str, value: &SecretValue, binding: &Binding) {
        self.add(id, value, binding, true);
    }

    fn add(&mut self, id: &str, value: &SecretValue, binding: &Binding, once: bool) {
        if !self.ids.iter().any(|i| i == id) {
            self.ids.push(id.to_owned());
        }
        self.push(id, value, binding, once);
    }

    fn push(&mut self, id: &str, value: &SecretValue, binding: &Binding, once: bool) {
        let d = digest(value.expose());
        if self
            .entries
            .iter()
            .any(|e| e.digest == d && e.binding == *binding)
        {
            return;
        }
        let mut who = Zeroizing::new(Vec::with_capacity(id.len() + 1 + value.expose().len()));
        who.extend_from_slice(id.as_bytes());
        who.push(0);
        who.extend_from_slice(value.expose());
        self.entries.push(Entry {
            digest: d,
            identity: digest(&who),
            binding: binding.clone(),
            value: Zeroizing::new(value.expose().to_vec()),
            once,
        });
    }

    /// The matcher for responses from `dest`: every value whose binding allows `dest`.
    /// `None` when no value applies (nothing to scrub, and content coding does not matter).
    pub fn for_destination(
        &mut self,
        dest: Destination<'_>,
    ) -> Result<Option<Arc<Matcher>>, ScrubError> {
        let covered: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.binding.allows_destination(dest))
            .map(|(i, _)| i)
            .collect();
        self.matcher(covered)
    }

    /// The matcher for text that goes nowhere near an upstream again (output, logs):
    /// every value the run injected.
    pub fn everywhere(&mut self) -> Result<Option<Arc<Matcher>>, ScrubError> {
        self.matcher((0..self.entries.len()).collect())
    }

    fn matcher(&mut self, covered: Vec<usize>) -> Result<Option<Arc<Matcher>>, ScrubError> {
        if covered.is_empty() {
            return Ok(None);
        }
        if let Some((_, m)) = self.matchers.iter().find(|(c, _)| *c == covered) {
            return Ok(Some(m.clone()));
        }
        let build = || Matcher::new(covered.iter().map(|&i| self.entries[i].value.as_slice()));
        let once = covered.iter().any(|&i| self.entries[i].once);
        let m = match &self.shared {
            Some(shared) if !once => {
                let key = covered.iter().map(|&i| self.entries[i].identity).collect();
                let bytes = covered.iter().map(|&i| self.entries[i].value.len()).sum();
                shared.get_or_build(key, bytes, build)?
            }
            _ => Arc::new(build()?),
        };
        self.matchers.push((covered, m.clone()));
        Ok(Some(m))
    }

    /// `text` scrubbed of every injected value, for output and logs, by `deadline`. Fails
    /// closed: text that could not be checked in time is not returned.
    pub fn scrub_text(&mut self, text: &str, deadline: Instant) -> Result<String, ScrubError> {
        let Some(matcher) = self.everywhere()? else {
            return Ok(text.to_owned());
        };
        let clean = matcher.scrub(text.as_bytes(), Some(deadline))?;
        Ok(String::from_utf8_lossy(&clean).into_owned())
    }
}

/// What replaces text that could not be checked for credential values.
pub(crate) const WITHHELD: &str = "[withheld: could not be checked for credential values]";

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{HostPattern, InjectLocation};

    fn binding() -> Binding {
        Binding::new(
            vec![HostPattern::parse("api.example.com").expect("host")],
            vec![InjectLocation::parse("header:authorization").expect("location")],
            false,
        )
        .expect("binding")
    }

    fn value(v: &str) -> SecretValue {
        SecretValue::new(v.as_bytes().to_vec()).expect("value")
    }

    #[test]
    fn runs_share_a_matcher_only_for_the_same_credential_and_value() {
        let shared = Arc::new(Matchers::default());
        let run = |id: &str, v: &str| {
            let mut injected = Injected::sharing(shared.clone());
            injected.note(id, &value(v), &binding());
            injected.everywhere().expect("matcher").expect("some")
        };
        let a = run("workspace:acme/TOKEN@1", "same-value-0123456789abcdef");
        let again = run("workspace:acme/TOKEN@1", "same-value-0123456789abcdef");
        assert!(
            Arc::ptr_eq(&a, &again),
            "one credential, two runs: one matcher"
        );
        // Another credential with the same value gets its own (no timing tells the two
        // apart), and so does the next version of the first.
        let other = run("workspace:acme/OTHER@1", "same-value-0123456789abcdef");
        let rotated = run("workspace:acme/TOKEN@2", "same-value-0123456789abcdef");
        assert!(!Arc::ptr_eq(&a, &other) && !Arc::ptr_eq(&a, &rotated));
        assert_eq!(shared.len(), 3);
        // A value noted for one request only is never kept.
        let mut once = Injected::sharing(shared.clone());
        once.note_once(
            "workspace:acme/SIG@1",
            &value("signature-0123456789abcdef"),
            &binding(),
        );
        once.everywhere().expect("matcher").expect("some");
        assert_eq!(shared.len(), 3);
    }
}
