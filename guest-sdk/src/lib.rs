//! Write Latchkey workflow steps in Rust.
//!
//! A step is a WebAssembly component (`wasm32-wasip2`) that receives JSON, may call HTTP APIs
//! with stored credentials, and returns JSON. The step never sees a credential's value: it
//! gets an opaque [`Credential`] handle and places it in a request ([`Request::bearer`],
//! [`Request::header_secret`], [`Part::secret`], ...). The host puts the value in at send
//! time, after checking that the request matches the credential's binding (host, port,
//! scheme and injection location), and scrubs it out of the [`Response`].
//!
//! ```no_run
//! use latchkey_sdk::{credential, Request, Error};
//! use serde_json::{json, Value};
//!
//! fn run(input: Value) -> Result<Value, Error> {
//!     let channel = input["channel"].as_str().unwrap_or("#general");
//!     let token = credential("SLACK_TOKEN")?;
//!     let resp = Request::post("https://slack.com/api/chat.postMessage")
//!         .bearer(&token)
//!         .json(&json!({ "channel": channel, "text": "hi" }))?
//!         .send()?;
//!     if !resp.is_success() {
//!         return Err(Error::msg(format!("slack said {}", resp.status())));
//!     }
//!     Ok(resp.json::<Value>()?)
//! }
//!
//! latchkey_sdk::export_step!(run);
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component to register with Latchkey. The crate must
//! be a `cdylib`.
//!
//! A step has no network, environment variables, arguments or files of its own, and its stdout
//! and stderr go nowhere: [`Request::send`] is the only way out and [`log`] the way to tell the
//! operator something. A panic is logged (at error level) before the step traps.

#![deny(missing_docs)]

mod error;
mod http;
pub mod log;

pub use error::Error;
pub use http::{Method, Part, Request, Response, SignatureEncoding};

/// The code generated from `wit/0.2.0/` (`latchkey:workflow@0.2.0`). Private: authors use the wrappers in this crate, which
/// cannot be misused to forge handles.
// Generated FFI glue is unsafe by nature (the workspace denies `unsafe_code` for hand-written
// code), and not every WIT item has a doc comment; parts are reachable through `__private`.
#[allow(unsafe_code, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit/0.2.0",
        world: "workflow",
        // `export_step!` expands in the author's crate and must reach the export macro.
        pub_export_macro: true,
        export_macro_name: "__export_workflow",
    });
}

use bindings::latchkey::workflow::credentials as wit_credentials;

/// A handle to a stored credential, obtained with [`credential`].
///
/// It names a secret without containing it: the only thing a step can do with it is to place
/// it in a [`Request`]. The host looks the value up again at each send, so a secret rotated
/// while the step runs is used by its next request. Dropping the handle releases it.
pub struct Credential {
    // Kept so that `key()` needs no host call; the host's answer is the key it was asked for.
    key: String,
    raw: wit_credentials::Credential,
}

impl Credential {
    /// The key this handle was obtained for, e.g. `SLACK_TOKEN`.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn raw(&self) -> &wit_credentials::Credential {
        &self.raw
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // There is no value to leak; the key is all there is to show.
        f.debug_struct("Credential")
            .field("key", &self.key)
            .finish()
    }
}

/// Gets a handle to the credential stored under `key` (ASCII `A-Z`, `0-9`, `_`).
///
/// Fails with [`Error::MissingCredential`] if no such credential is available to this step
/// (the host does not say whether it exists elsewhere), [`Error::InvalidKey`] if `key` is not
/// a valid key, and [`Error::TooManyHandles`] if the step holds too many handles already.
/// Getting the same key twice gives two independent handles.
pub fn credential(key: &str) -> Result<Credential, Error> {
    let raw = wit_credentials::get(key)?;
    Ok(Credential {
        key: key.to_owned(),
        raw,
    })
}

/// Glue for [`export_step!`] and raw access for Latchkey's own hostile test guests.
/// Not part of the API: anything here may change without notice.
#[doc(hidden)]
pub mod __private {
    /// The generated interfaces, for test guests that must do what the safe API prevents
    /// (forging handles, using dropped ones).
    pub use crate::bindings::latchkey::workflow::{
        credentials as raw_credentials, http as raw_http, log as raw_log,
    };
    pub use crate::bindings::{
        __export_workflow, __export_world_workflow_cabi, __post_return_run, _export_run_cabi, Guest,
    };
    pub use serde_json;

    use serde_json::Value;

    /// The body of the generated `Guest::run`: JSON in, the step, JSON out.
    pub fn run_step<E: std::fmt::Display>(
        input: &str,
        step: impl FnOnce(Value) -> Result<Value, E>,
    ) -> Result<String, String> {
        install_panic_hook();
        let input: Value = serde_json::from_str(input)
            .map_err(|e| format!("step input is not valid JSON: {e}"))?;
        let output = step(input).map_err(|e| e.to_string())?;
        serde_json::to_string(&output).map_err(|e| format!("step output is not valid JSON: {e}"))
    }

    /// Routes panic messages to the host's log: a step's stderr goes nowhere, so without this
    /// the operator would see only a trap. Not on native targets, where the log import is a
    /// stub that panics (it would turn a failing unit test into an abort).
    fn install_panic_hook() {
        if !cfg!(target_arch = "wasm32") {
            return;
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let message = info.payload_as_str().unwrap_or("(no message)");
                let line = match info.location() {
                    Some(at) => format!("step panicked at {at}: {message}"),
                    None => format!("step panicked: {message}"),
                };
                crate::log::error(&line);
            }));
        });
    }
}

/// Exports a function as the step's entry point.
///
/// The function takes the step input and returns the step output, both as
/// [`serde_json::Value`]: `fn(Value) -> Result<Value, E>` where `E: Display` (normally
/// [`Error`]). Input that is not JSON fails the step before the function is called; an `Err`
/// fails the step with `E`'s `Display` text as the message shown to the operator.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```no_run
/// fn run(input: serde_json::Value) -> Result<serde_json::Value, latchkey_sdk::Error> {
///     Ok(input)
/// }
/// latchkey_sdk::export_step!(run);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_step {
    ($step:expr) => {
        const _: () = {
            struct LatchkeyStep;

            impl $crate::__private::Guest for LatchkeyStep {
                fn run(
                    input: ::std::string::String,
                ) -> ::std::result::Result<::std::string::String, ::std::string::String> {
                    $crate::__private::run_step(&input, $step)
                }
            }

            // Also embeds the component type (imports and exports) in the author's crate.
            // Braces keep rustfmt away from this argument syntax, which it cannot parse.
            $crate::__private::__export_workflow! {
                LatchkeyStep with_types_in $crate::__private
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::__private::run_step;
    use super::Error;
    use serde_json::{Value, json};

    #[test]
    fn run_step_round_trips_json() {
        let out = run_step(r#"{"a": [1, 2]}"#, |v| Ok::<_, Error>(json!({ "got": v })));
        assert_eq!(out.as_deref(), Ok(r#"{"got":{"a":[1,2]}}"#));
    }

    #[test]
    fn run_step_rejects_input_that_is_not_json() {
        let out = run_step("not json", |_| -> Result<Value, Error> {
            panic!("the step must not run")
        });
        assert!(
            matches!(&out, Err(m) if m.starts_with("step input is not valid JSON")),
            "{out:?}"
        );
    }

    #[test]
    fn run_step_reports_the_error_display() {
        let out = run_step("null", |_| Err::<Value, _>(Error::Denied("host x".into())));
        assert_eq!(out, Err("request denied: host x".to_owned()));
    }
}
