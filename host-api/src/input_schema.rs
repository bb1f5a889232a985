//! A run's declared input: the JSON Schema of a workflow's `[input]` table or of a
//! component's registration. It is checked when it is declared (a schema that is not one,
//! or that no object can satisfy the type of, is refused then) and applied before a run of
//! a registered workflow or component starts, so that a caller — an agent through MCP as
//! much as `POST /v1/runs` — learns what was wrong with its input before any step runs.
//!
//! References are resolved inside the schema only: `offline()` refuses any `$ref` to
//! another document, so declaring a schema never makes the host fetch anything. Patterns
//! use the `regex` engine (linear time, a bounded compiled size) rather than a backtracking
//! one, so that no input can make a check run for long: a pattern with look-around or
//! back-references is refused when the schema is declared.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many of an input's errors a refusal lists, and how long each may be: an input can
/// be megabytes, and the validator's messages quote the values they refuse.
const SHOWN_ERRORS: usize = 3;
const SHOWN_CHARS: usize = 200;

/// Validators built for runs, by their schema's JSON text: a registered target's schema is
/// compiled once per process rather than at every run (an MCP tool call, say). At most
/// [`BUILT_MAX`] of them; the map starts again when full. Schemas are an admin's, bounded
/// by what a registration takes.
static BUILT: std::sync::LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
    std::sync::LazyLock::new(Default::default);
const BUILT_MAX: usize = 256;

fn built(schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
    let lock = || BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let key = schema.to_string();
    if let Some(v) = lock().get(&key) {
        return Ok(v.clone());
    }
    let validator = Arc::new(compile(schema)?);
    let mut map = lock();
    if map.len() >= BUILT_MAX {
        map.clear();
    }
    map.insert(key, validator.clone());
    Ok(validator)
}

fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .offline()
        .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(1 << 20))
        .build(schema)
        .map_err(|e| shorten(&e.to_string()))
}

/// Checks a declared schema: a JSON object, a valid JSON Schema with no reference outside
/// itself, whose `type` (if it names one) admits an object — a run's input, and an MCP
/// tool's arguments, are JSON objects. The validator built is kept for the runs: a
/// registered workflow's manifest is parsed (and so its schema checked) at every run.
pub(crate) fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(object) = schema.as_object() else {
        return Err("a JSON Schema is a JSON object".into());
    };
    match object.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(Value::Array(ts)) if ts.iter().any(|t| t == "object") => {}
        Some(_) => {
            return Err(
                "a run's input is a JSON object, so the schema's \"type\" must be \"object\" (or be left out)"
                    .into(),
            );
        }
    }
    built(schema).map(drop)
}

/// Checks a run's input (JSON text) against a declared schema; the error lists what was
/// wrong and where (a JSON pointer into the input).
pub(crate) fn check_input(schema: &Value, input: &str) -> Result<(), String> {
    let validator = built(schema).map_err(|e| format!("the declared schema is invalid: {e}"))?;
    let instance: Value =
        serde_json::from_str(input).map_err(|e| format!("the input is not JSON: {e}"))?;
    let mut errors = validator.iter_errors(&instance);
    let mut shown = Vec::new();
    let mut more = 0usize;
    for e in errors.by_ref() {
        if shown.len() < SHOWN_ERRORS {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            shown.push(format!("at {}: {}", shorten(&at), shorten(&e.to_string())));
        } else {
            more += 1;
        }
    }
    if shown.is_empty() {
        return Ok(());
    }
    let mut text = format!(
        "the input does not match the declared input schema: {}",
        shown.join("; ")
    );
    if more > 0 {
        text.push_str(&format!(" (and {more} more)"));
    }
    Err(text)
}

/// At most [`SHOWN_CHARS`] characters of `s`, marked where cut; control characters shown
/// as spaces (the text reaches terminals and logs).
fn shorten(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {"channel": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
            "required": ["channel"],
        })
    }

    #[test]
    fn a_schema_must_be_one_and_admit_an_object() {
        assert!(check_schema(&schema()).is_ok());
        assert!(check_schema(&json!({})).is_ok());
        assert!(check_schema(&json!({"type": ["object", "null"]})).is_ok());
        let refused = [
            (json!("object"), "JSON object"),
            (json!({"type": "string"}), "\"type\" must be \"object\""),
            (json!({"type": 5}), ""),
            (json!({"properties": {"a": {"minimum": "one"}}}), ""),
            (json!({"properties": {"a": {"pattern": "("}}}), ""),
            // Back-references need a backtracking engine: refused, never run.
            (json!({"properties": {"a": {"pattern": "^(a+)\\1$"}}}), ""),
        ];
        for (s, says) in refused {
            let e = check_schema(&s).expect_err(&s.to_string());
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn a_reference_to_another_document_is_never_fetched() {
        for r in [
            "http://127.0.0.1:9/schema.json",
            "https://example.com/s.json",
            "file:///etc/passwd",
        ] {
            let e = check_schema(&json!({"$ref": r})).expect_err(r);
            assert!(!e.is_empty(), "{r}");
        }
        // A reference inside the schema is fine.
        let inner = json!({"$defs": {"c": {"type": "string"}}, "properties": {"channel": {"$ref": "#/$defs/c"}}});
        assert!(check_schema(&inner).is_ok());
        assert!(check_input(&inner, r#"{"channel": 5}"#).is_err());
    }

    #[test]
    fn an_input_is_refused_saying_where_and_what() {
        assert!(check_input(&schema(), r##"{"channel": "#general", "count": 2}"##).is_ok());
        let e = check_input(&schema(), r#"{"channel": 5, "count": 0}"#).unwrap_err();
        assert!(e.contains("at /channel") && e.contains("\"string\""), "{e}");
        assert!(e.contains("at /count"), "{e}");
        let e = check_input(&schema(), "{}").unwrap_err();
        assert!(e.contains("at /:") && e.contains("channel"), "{e}");
        assert!(
            check_input(&schema(), "not json")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    /// A reference that leads back to itself without descending into the input would
    /// recurse for ever: refused or answered, never a stack overflow of the host.
    #[test]
    fn a_schema_that_refers_to_itself_neither_hangs_nor_overflows() {
        for schema in [
            json!({"$ref": "#"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "properties": {"x": {"$ref": "#/$defs/a"}}}),
            json!({"properties": {"next": {"$ref": "#"}}, "required": ["next"]}),
        ] {
            if check_schema(&schema).is_ok() {
                let _ = check_input(&schema, r#"{"x": 1, "next": {"next": {}}}"#);
            }
        }
    }

    /// Keywords whose naive check is quadratic or unbounded in the input: each answers
    /// within the test's time on an input of the size the API takes (a megabyte).
    #[test]
    fn costly_keywords_stay_cheap_on_a_large_input() {
        let items: Vec<Value> = (0..50_000).map(|i| json!({"n": i, "s": "x"})).collect();
        let schema = json!({"properties": {"a": {"uniqueItems": true}}});
        assert!(check_input(&schema, &json!({"a": items}).to_string()).is_ok());
        let schema = json!({"properties": {"a": {"multipleOf": 1e-300}}});
        let _ = check_input(&schema, r#"{"a": 1e300}"#);
        let schema = json!({"properties": {"a": {"pattern": "^(a|a)*$"}}});
        let long = format!("{{\"a\": \"{}b\"}}", "a".repeat(100_000));
        assert!(check_input(&schema, &long).is_err());
    }

    #[test]
    fn a_schema_is_compiled_once_for_its_runs() {
        let (a, b) = (built(&schema()).unwrap(), built(&schema()).unwrap());
        assert!(Arc::ptr_eq(&a, &b));
    }

    /// Not a test: what a run's check costs with and without the built validators
    /// (`cargo test --release --workspace --lib -- --ignored --nocapture cost_of_a_check`).
    #[test]
    #[ignore]
    fn cost_of_a_check() {
        let input = r##"{"channel": "#general", "count": 2}"##;
        let n = 20_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            check_input(&schema(), input).unwrap();
        }
        let cached = t.elapsed() / n;
        let t = std::time::Instant::now();
        for _ in 0..n {
            compile(&schema()).unwrap();
        }
        let compiled = t.elapsed() / n;
        eprintln!("check with a built validator {cached:?}; compiling the schema {compiled:?}");
    }

    #[test]
    fn a_refusal_stays_short_whatever_the_input() {
        let huge = "x".repeat(10 << 10);
        let many: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), json!(huge.clone())))
            .collect();
        let schema = json!({"additionalProperties": {"type": "integer"}});
        let e = check_input(&schema, &Value::Object(many).to_string()).unwrap_err();
        assert!(e.len() < 2_000, "{} bytes", e.len());
        assert!(e.contains("(and 97 more)"), "{e}");
    }
}
