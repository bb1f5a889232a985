//! Key, scope and injection-location parsing never panic, and round-trip when accepted.
#![no_main]

use latchkey_host::policy::InjectLocation;
use latchkey_host::secret::CredentialKey;
use latchkey_host::store::Scope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = CredentialKey::new(text) {
        assert_eq!(k.as_str(), text);
    }
    if let Ok(s) = Scope::parse(text) {
        assert_eq!(Scope::parse(&s.to_string()).ok(), Some(s));
    }
    if let Ok(l) = InjectLocation::parse(text) {
        assert_eq!(InjectLocation::parse(&l.to_string()).ok(), Some(l));
    }
});
