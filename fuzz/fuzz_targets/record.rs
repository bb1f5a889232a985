//! Record decoding: arbitrary bytes stored as a record must give an error or metadata,
//! never a panic, and never open.
#![no_main]

use latchkey_host::store::{Backend, MasterKey, MemoryBackend, SecretStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let backend = MemoryBackend::default();
    let _ = backend.put("secrets", b"platform\0KEY", data);
    let Ok(master) = MasterKey::from_bytes(&[7u8; 64]) else {
        return;
    };
    let Ok(store) = SecretStore::init_with(Box::new(backend), "fuzz", &master) else {
        return;
    };
    let _ = store.list(None);
    if let Ok(report) = store.verify_all() {
        // No sealed value made without the data key can authenticate.
        assert!(report.iter().all(|(_, r)| r.is_err()));
    }
});
