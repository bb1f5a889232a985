//! Never returns: a busy loop for the CPU deadline test. Input is ignored.

use serde_json::Value;

fn run(_input: Value) -> Result<Value, latchkey_sdk::Error> {
    let mut n = 0u64;
    loop {
        // `black_box` keeps the optimiser from proving the loop has no effect.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

latchkey_sdk::export_step!(run);
