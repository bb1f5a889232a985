//! Recurses without bound for the stack overflow test; never returns. Input
//! `{"stack": "shadow"}` (default) or `{"stack": "native"}`.
//!
//! Rust on wasm has two stacks. Locals whose address is taken live on a "shadow" stack in
//! linear memory (1 MiB, below the data); overflowing it is an out-of-bounds memory access.
//! Everything else lives on the engine's own call stack; overflowing that is "call stack
//! exhausted". Both must end in a trap.

use std::hint::black_box;

use serde_json::{Value, json};

/// Keeps a buffer on the shadow stack in every frame and does work after the call, so neither
/// tail-call optimisation nor inlining can flatten the recursion.
#[inline(never)]
fn shadow(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    // Never true, but the compiler cannot know: no "cannot return without recursing" lint.
    if black_box(depth) == u64::MAX {
        return depth;
    }
    shadow(depth + 1).wrapping_add(black_box(frame)[7])
}

/// Scalars only, so frames stay off the shadow stack. Rotating the result is not an
/// accumulator LLVM can turn into a loop.
#[inline(never)]
fn native(depth: u64, limit: u64) -> u64 {
    if depth == limit {
        return depth;
    }
    native(depth + 1, limit).rotate_left((depth & 31) as u32) ^ depth
}

fn run(input: Value) -> Result<Value, latchkey_sdk::Error> {
    let depth = match input["stack"].as_str().unwrap_or("shadow") {
        "native" => native(0, black_box(u64::MAX)),
        _ => shadow(0),
    };
    Ok(json!({ "depth": depth }))
}

latchkey_sdk::export_step!(run);
