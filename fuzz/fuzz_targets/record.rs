//! Record decoding: arbitrary bytes stored as a record must give an error or metadata,
//! never a panic, and never open.
#![no_main]

use latchkey_host::store::{Backend, MasterKey, MemoryBackend, SecretStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let backend = MemoryBackend::default();
    let _ = backend.put("secrets", b"platform\0KEY", data);
    // 64 hex characters: `from_bytes` takes hex, or exactly 32 raw bytes that are not
    // UTF-8 ([7u8; 64] is neither, so the target used to return here every time).
    let Ok(master) = MasterKey::from_bytes(&[b'7'; 64]) else {
        unreachable!("64 hex characters are a valid master key");
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
