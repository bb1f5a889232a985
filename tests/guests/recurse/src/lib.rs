//! Recurses without bound for the stack overflow test. Input is ignored; never returns.

use std::hint::black_box;

use serde_json::{Value, json};

/// Each frame keeps a buffer on the stack and does work after the call, so neither tail-call
/// optimisation nor inlining can flatten the recursion.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    // Never true, but the compiler cannot know: no "cannot return without recursing" lint.
    if black_box(depth) == u64::MAX {
        return depth;
    }
    dive(depth + 1).wrapping_add(black_box(frame)[7])
}

fn run(_input: Value) -> Result<Value, latchkey_sdk::Error> {
    Ok(json!({ "depth": dive(0) }))
}

latchkey_sdk::export_step!(run);
