//! Does nothing: returns its input unchanged. The trivial step of the benchmarks
//! (`bench/`): its run is the SDK's glue and nothing else, so timing it measures what the
//! host adds around an instance.

fn run(input: serde_json::Value) -> Result<serde_json::Value, latchkey_sdk::Error> {
    Ok(input)
}

latchkey_sdk::export_step!(run);
