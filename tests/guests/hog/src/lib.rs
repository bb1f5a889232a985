//! Allocates memory for the memory limit test. Input `{"mib": N}` → `{"mib": <got>,
//! "requested": N, "error": string|null}`.
//!
//! Allocates in 1 MiB chunks and writes to every page so the memory is really used. It uses
//! `try_reserve`, so a refused `memory.grow` ends the loop with an answer instead of an abort;
//! whether the host then traps or lets the step return is the host's choice.

use serde_json::{Value, json};

const MIB: usize = 1 << 20;

fn run(input: Value) -> Result<Value, latchkey_sdk::Error> {
    let requested = input["mib"].as_u64().unwrap_or(64);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut error = None;
    for i in 0..requested {
        let mut chunk = Vec::new();
        if let Err(e) = chunks
            .try_reserve(1)
            .and_then(|()| chunk.try_reserve_exact(MIB))
        {
            error = Some(e.to_string());
            break;
        }
        chunk.resize(MIB, 0);
        for page in chunk.chunks_mut(4096) {
            // Truncation is fine: any non-zero byte will do.
            page[0] = (i as u8) | 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    Ok(json!({ "mib": chunks.len(), "requested": requested, "error": error }))
}

latchkey_sdk::export_step!(run);
