//! The `_method` field: frameworks take a request's method from it instead of the request
//! line. Rails (`Rack::MethodOverride`) reads it from a form body, multipart included;
//! Laravel and Symfony also from a JSON body and from the query. A `POST` a binding allows
//! then acts as the `DELETE` it does not, so a credential whose binding names methods is
//! not sent with one (the headers that do the same are host-managed: [`super::host_managed`]).

/// The field's name, exactly as the frameworks read it.
pub const FIELD: &str = "_method";

/// Whether a request carries a method override: one of `query_names` (the URL's query and
/// the step's query parameters, decoded) is `_method`, or `body` has a `_method` field read
/// as a form, as a JSON object (top level) or as a multipart part. Read whatever the
/// Content-Type says: frameworks differ in what they trust it for.
pub fn overrides_method<'a>(query_names: impl IntoIterator<Item = &'a str>, body: &[u8]) -> bool {
    query_names.into_iter().any(|n| n == FIELD)
        || url::form_urlencoded::parse(body).any(|(name, _)| name == FIELD)
        || serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
            .is_ok_and(|o| o.contains_key(FIELD))
        || multipart_field(body)
}

/// A multipart part named `_method`: `name="_method"` (or unquoted) in its
/// Content-Disposition, in any case.
fn multipart_field(body: &[u8]) -> bool {
    const NAME: &[u8] = b"name=";
    body.windows(NAME.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(NAME))
        .any(|(i, _)| {
            let rest = &body[i + NAME.len()..];
            let rest = rest.strip_prefix(b"\"").unwrap_or(rest);
            rest.starts_with(FIELD.as_bytes())
                && matches!(
                    rest.get(FIELD.len()),
                    None | Some(b'"' | b';' | b'\r' | b'\n' | b' ')
                )
        })
}

#[cfg(test)]
mod tests {
    use super::overrides_method;

    #[test]
    fn accepts_requests_without_an_override() {
        for body in [
            &b""[..],
            b"a=1&http_method=DELETE",
            b"x_method=1&_methods=2",
            br#"{"http_method":"DELETE","nested":{"_method":"DELETE"}}"#,
            br#"["_method"]"#,
            b"--b\r\nContent-Disposition: form-data; name=\"_method_x\"\r\n\r\nDELETE",
        ] {
            assert!(
                !overrides_method(["a", "method"], body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn rejects_an_override_in_the_query_or_any_body_format() {
        assert!(overrides_method(["a", "_method"], b""));
        for body in [
            &b"a=1&_method=DELETE"[..],
            b"%5Fmethod=DELETE",
            br#"{"_method":"DELETE"}"#,
            br#"{"\u005fmethod":"DELETE"}"#,
            b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--",
            b"--b\r\ncontent-disposition: form-data; NAME=_method\r\n\r\nDELETE",
        ] {
            assert!(
                overrides_method([], body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
