//! Filling a request-body template with credential values, only into named fields.
//!
//! The guest sends a body as parts: its own bytes and references to credentials. The host
//! must not paste values into the guest's bytes (a value could land in a key, in the middle
//! of a string, in a comment a lenient parser skips, or after a duplicate key that two
//! parsers resolve differently). Instead:
//!
//! 1. [`parse_template`] puts a fresh random placeholder token where each secret part is
//!    (tokens never occur in the guest's text), parses the result as JSON or as
//!    `application/x-www-form-urlencoded`, and finds where each token sits: it must be the
//!    entire string value (JSON) or the entire field value (form), exactly once. The
//!    template is re-serialised canonically (so the upstream receives the host's bytes,
//!    not the guest's) with the tokens still in it; no value has been seen yet.
//! 2. The host checks, for every secret part, that its credential's binding allows
//!    [`BodyTemplate::slots`]' location (`body:json:/pointer` or `body:form:name`).
//! 3. [`BodyTemplate::fill`] replaces each token in the serialised bytes by the value,
//!    JSON-string-escaped or form-encoded, into a zeroizing buffer sized up front (no
//!    reallocation leaves a copy behind). Values never enter a `serde_json::Value`.
//!
//! Re-serialisation is canonical: JSON keys come out sorted, duplicate keys keep the last
//! value, whitespace goes, and numbers are written as `serde_json` reads them (integers
//! beyond 64 bits and long decimals may lose precision). Form pairs are decoded then
//! re-encoded (`+` for space, UTF-8, lossy for invalid UTF-8).

use super::binding::InjectLocation;
use url::form_urlencoded;
use zeroize::Zeroizing;

/// One part of a body template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatePart<'a> {
    /// Bytes written by the guest.
    Text(&'a [u8]),
    /// The value of credential number `i` (an index chosen by the caller; the same index
    /// may appear more than once).
    Secret(usize),
}

/// The body encodings a credential may be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: `body:json:/pointer` locations.
    Json,
    /// `application/x-www-form-urlencoded`: `body:form:name` locations.
    Form,
}

impl BodyFormat {
    /// The Content-Type the host must send with a filled body (replacing any the guest set).
    pub fn content_type(self) -> &'static str {
        match self {
            BodyFormat::Json => "application/json",
            BodyFormat::Form => "application/x-www-form-urlencoded",
        }
    }

    /// The format a location belongs to, if it is a usable body location.
    pub fn of(location: &InjectLocation) -> Option<BodyFormat> {
        match location {
            InjectLocation::BodyJson(_) => Some(BodyFormat::Json),
            InjectLocation::BodyForm(_) => Some(BodyFormat::Form),
            _ => None,
        }
    }

    /// The format of a body whose credentials have these bindings' locations (one slice
    /// per credential used in the body): the format every credential allows. Refused if a
    /// credential allows no body location, if they share none (JSON and form credentials
    /// mixed), or if both remain possible and `content_type` (the guest's, if any) does
    /// not say which.
    pub fn choose(
        credential_locations: &[&[InjectLocation]],
        content_type: Option<&str>,
    ) -> Result<BodyFormat, BodyError> {
        let (mut json, mut form) = (true, true);
        for locs in credential_locations {
            let j = locs
                .iter()
                .any(|l| BodyFormat::of(l) == Some(BodyFormat::Json));
            let f = locs
                .iter()
                .any(|l| BodyFormat::of(l) == Some(BodyFormat::Form));
            if !j && !f {
                return Err(BodyError::NoBodyLocation);
            }
            json &= j;
            form &= f;
        }
        match (json, form) {
            (true, false) => Ok(BodyFormat::Json),
            (false, true) => Ok(BodyFormat::Form),
            (false, false) => Err(BodyError::MixedFormats),
            (true, true) => {
                let ct = content_type.map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
                match ct.as_deref() {
                    Some(c) if c == "application/json" || c.ends_with("+json") => {
                        Ok(BodyFormat::Json)
                    }
                    Some("application/x-www-form-urlencoded") => Ok(BodyFormat::Form),
                    _ => Err(BodyError::AmbiguousFormat),
                }
            }
        }
    }
}

/// Why a body template was refused. Never contains a value or a placeholder token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The template (with placeholders) is not valid JSON.
    #[error("the body template is not valid JSON: {0}")]
    NotJson(String),
    /// A credential sits somewhere other than an entire string / field value.
    #[error(
        "a credential in the body must be an entire JSON string value or an entire form field value, not part of a longer string, a key or a field name"
    )]
    NotWholeValue,
    /// A JSON key or form field name holds a control character. The names leading to a
    /// credential become its audit location (`body:json:/a/b`); CR, LF or ESC there would
    /// let a step print lines of its own on whoever reads the trail.
    #[error("a JSON key or form field name in the body contains a control character")]
    ControlInName,
    /// A credential's placeholder vanished (a duplicate key overrode it) or appeared twice.
    #[error("a credential in the body is overridden by a duplicate key or field")]
    Overridden,
    /// A credential used in the body allows no body location.
    #[error("a credential used in the body has no body:json: or body:form: location")]
    NoBodyLocation,
    /// JSON and form credentials in one body.
    #[error("credentials bound to JSON fields and to form fields cannot be mixed in one body")]
    MixedFormats,
    /// Both formats are possible and the guest did not say which.
    #[error(
        "the body's format is ambiguous: set Content-Type to application/json or application/x-www-form-urlencoded"
    )]
    AmbiguousFormat,
    /// A value for a JSON field is not UTF-8.
    #[error("a credential value is not UTF-8 and cannot be put into a JSON string")]
    NotUtf8,
    /// `fill` was given fewer values than the template references.
    #[error("no value given for credential number {0} (host bug)")]
    MissingValue(usize),
    /// The random source failed.
    #[error("random source failed")]
    Random,
}

/// Where one secret part of the template sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The part's credential index ([`TemplatePart::Secret`]).
    pub secret: usize,
    /// `BodyJson(pointer)` or `BodyForm(name)`: check it against the credential's binding.
    pub location: InjectLocation,
}

/// A parsed, canonicalised template: serialised bytes holding placeholder tokens, and
/// where each secret part sits. Holds no value.
#[derive(Debug)]
pub struct BodyTemplate {
    format: BodyFormat,
    serialised: Vec<u8>,
    /// One per secret part, in template order: its slot, and its token's offset in
    /// `serialised` (the token's first byte; for JSON inside the quotes).
    slots: Vec<(Slot, usize)>,
    token_len: usize,
}

/// Length of a placeholder: `lkph` and 32 hex digits (128 random bits).
const TOKEN_LEN: usize = 4 + 32;

/// `n` distinct placeholder tokens (ASCII letters and digits, so JSON and form encoding
/// leave them unchanged), none of which occurs in any of `guest_text`, nor overlaps
/// another. 128 random bits each: a collision is refused and retried, never expected.
pub fn placeholder_tokens(n: usize, guest_text: &[&[u8]]) -> Result<Vec<String>, BodyError> {
    let mut tokens: Vec<String> = Vec::with_capacity(n);
    let mut attempts = 0;
    while tokens.len() < n {
        attempts += 1;
        if attempts > n + 16 {
            return Err(BodyError::Random);
        }
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| BodyError::Random)?;
        let t = format!("lkph{}", hex::encode(raw));
        let occurs = guest_text
            .iter()
            .any(|g| g.windows(t.len()).any(|w| w == t.as_bytes()));
        if !occurs && !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    Ok(tokens)
}

/// Parses `parts` as a body of `format` with a placeholder in place of every secret part
/// (see the module documentation). The tokens are fresh for every call.
pub fn parse_template(
    parts: &[TemplatePart<'_>],
    format: BodyFormat,
) -> Result<BodyTemplate, BodyError> {
    let texts: Vec<&[u8]> = parts
        .iter()
        .filter_map(|p| match p {
            TemplatePart::Text(t) => Some(*t),
            TemplatePart::Secret(_) => None,
        })
        .collect();
    let secrets: Vec<usize> = parts
        .iter()
        .filter_map(|p| match p {
            TemplatePart::Secret(i) => Some(*i),
            TemplatePart::Text(_) => None,
        })
        .collect();
    let tokens = placeholder_tokens(secrets.len(), &texts)?;
    let mut joined = Vec::new();
    let mut next = tokens.iter();
    for p in parts {
        match p {
            TemplatePart::Text(t) => joined.extend_from_slice(t),
            TemplatePart::Secret(_) => {
                joined.extend_from_slice(next.next().map_or(&b""[..], |t| t.as_bytes()));
            }
        }
    }
    // Where each token sits (location per token), and the canonical serialisation.
    let (serialised, locations) = match format {
        BodyFormat::Json => json_template(&joined, &tokens)?,
        BodyFormat::Form => form_template(&joined, &tokens)?,
    };
    let mut slots = Vec::with_capacity(tokens.len());
    for ((token, location), secret) in tokens.iter().zip(locations).zip(secrets) {
        let location = location.ok_or(BodyError::Overridden)?;
        let offsets = find_all(&serialised, token.as_bytes());
        let [offset] = offsets.as_slice() else {
            return Err(BodyError::Overridden);
        };
        slots.push((Slot { secret, location }, *offset));
    }
    Ok(BodyTemplate {
        format,
        serialised,
        slots,
        token_len: TOKEN_LEN,
    })
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Which token (by index) `s` contains: `Ok(Some(i))` if `s` is exactly token `i`,
/// `Ok(None)` if it contains none, `Err` if it contains one but is not exactly it.
fn token_in(s: &str, tokens: &[String]) -> Result<Option<usize>, BodyError> {
    if let Some(i) = tokens.iter().position(|t| t == s) {
        return Ok(Some(i));
    }
    if tokens.iter().any(|t| s.contains(t.as_str())) {
        return Err(BodyError::NotWholeValue);
    }
    Ok(None)
}

type Located = (Vec<u8>, Vec<Option<InjectLocation>>);

fn json_template(joined: &[u8], tokens: &[String]) -> Result<Located, BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(joined).map_err(|e| BodyError::NotJson(e.to_string()))?;
    let mut found = vec![None; tokens.len()];
    walk_json(&value, &mut String::new(), tokens, &mut found)?;
    // Serialising a `Value` cannot fail.
    let serialised = serde_json::to_vec(&value).map_err(|e| BodyError::NotJson(e.to_string()))?;
    Ok((serialised, found))
}

fn walk_json(
    v: &serde_json::Value,
    pointer: &mut String,
    tokens: &[String],
    found: &mut [Option<InjectLocation>],
) -> Result<(), BodyError> {
    match v {
        serde_json::Value::String(s) => {
            if let Some(i) = token_in(s, tokens)? {
                if found[i].is_some() {
                    return Err(BodyError::Overridden);
                }
                found[i] = Some(InjectLocation::BodyJson(pointer.clone()));
            }
        }
        serde_json::Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&n.to_string());
                walk_json(item, pointer, tokens, found)?;
                pointer.truncate(len);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, item) in map {
                if token_in(k, tokens)?.is_some() {
                    return Err(BodyError::NotWholeValue);
                }
                if k.chars().any(char::is_control) {
                    return Err(BodyError::ControlInName);
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                walk_json(item, pointer, tokens, found)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

fn form_template(joined: &[u8], tokens: &[String]) -> Result<Located, BodyError> {
    let mut found = vec![None; tokens.len()];
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(joined) {
        if token_in(&name, tokens)?.is_some() {
            return Err(BodyError::NotWholeValue);
        }
        if name.chars().any(char::is_control) {
            return Err(BodyError::ControlInName);
        }
        if let Some(i) = token_in(&value, tokens)? {
            if found[i].is_some() {
                return Err(BodyError::Overridden);
            }
            found[i] = Some(InjectLocation::BodyForm(name.clone().into_owned()));
        }
        out.append_pair(&name, &value);
    }
    Ok((out.finish().into_bytes(), found))
}

impl BodyTemplate {
    /// The template's format; [`BodyFormat::content_type`] is what to send.
    #[cfg(any(test, feature = "testing"))]
    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// For every secret part, in template order: its credential index and where it sits.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().map(|(s, _)| s)
    }

    /// The body to send: the canonical serialisation with every placeholder replaced by
    /// `values[slot.secret]`, JSON-escaped (UTF-8 only) or form-encoded. The result is
    /// allocated once at its final size.
    pub fn fill(&self, values: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, BodyError> {
        let mut encoded_len = Vec::with_capacity(self.slots.len());
        for (slot, _) in &self.slots {
            let v = values
                .get(slot.secret)
                .ok_or(BodyError::MissingValue(slot.secret))?;
            encoded_len.push(match self.format {
                BodyFormat::Json => {
                    std::str::from_utf8(v).map_err(|_| BodyError::NotUtf8)?;
                    json_escaped_len(v)
                }
                BodyFormat::Form => form_encoded_len(v),
            });
        }
        let total = self.serialised.len() - self.slots.len() * self.token_len
            + encoded_len.iter().sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(total));
        let mut order: Vec<usize> = (0..self.slots.len()).collect();
        order.sort_by_key(|&i| self.slots[i].1);
        let mut at = 0;
        for i in order {
            let (slot, offset) = &self.slots[i];
            out.extend_from_slice(&self.serialised[at..*offset]);
            let v = values
                .get(slot.secret)
                .ok_or(BodyError::MissingValue(slot.secret))?;
            match self.format {
                BodyFormat::Json => json_escape_into(v, &mut out),
                BodyFormat::Form => {
                    for piece in form_urlencoded::byte_serialize(v) {
                        out.extend_from_slice(piece.as_bytes());
                    }
                }
            }
            at = offset + self.token_len;
        }
        out.extend_from_slice(&self.serialised[at..]);
        debug_assert_eq!(out.len(), total);
        Ok(out)
    }
}

fn json_escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => return None,
    })
}

fn json_escaped_len(v: &[u8]) -> usize {
    v.iter()
        .map(|&b| match json_escape(b) {
            Some(e) => e.len(),
            None if b < 0x20 => 6,
            None => 1,
        })
        .sum()
}

/// Escapes UTF-8 `v` as the inside of a JSON string (quotes, backslash, control
/// characters; everything else as is).
fn json_escape_into(v: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in v {
        match json_escape(b) {
            Some(e) => out.extend_from_slice(e),
            None if b < 0x20 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            None => out.push(b),
        }
    }
}

fn form_encoded_len(v: &[u8]) -> usize {
    form_urlencoded::byte_serialize(v).map(str::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplatePart::{Secret, Text};

    fn slots(parts: &[TemplatePart<'_>], f: BodyFormat) -> Result<Vec<Slot>, BodyError> {
        parse_template(parts, f).map(|t| t.slots().cloned().collect())
    }

    fn json(p: &str) -> InjectLocation {
        InjectLocation::BodyJson(p.into())
    }

    #[test]
    fn accepts_whole_json_string_values_and_reports_pointers() {
        let parts = [
            Text(br#"{"user":"bob","auth":{"password":""#),
            Secret(0),
            Text(br#"","a/b~":["x",""#),
            Secret(1),
            Text(br#""]}}"#),
        ];
        let s = slots(&parts, BodyFormat::Json).expect("parsed");
        assert_eq!(
            s,
            vec![
                Slot {
                    secret: 0,
                    location: json("/auth/password")
                },
                Slot {
                    secret: 1,
                    location: json("/auth/a~1b~0/1")
                },
            ]
        );
    }

    #[test]
    fn fills_json_canonically_with_escaping() {
        let t = parse_template(
            &[
                Text(b"{ \"z\": 1, \"password\" : \""),
                Secret(0),
                Text(b"\" }"),
            ],
            BodyFormat::Json,
        )
        .expect("parsed");
        let body = t.fill(&[b"p\"a\\ss\n\x01w\xc3\xa9"]).expect("filled");
        assert_eq!(
            body.as_slice(),
            "{\"password\":\"p\\\"a\\\\ss\\n\\u0001wé\",\"z\":1}".as_bytes()
        );
        let back: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
        assert_eq!(back["password"], "p\"a\\ss\n\u{1}wé");
        assert_eq!(t.format().content_type(), "application/json");
    }

    #[test]
    fn rejects_non_utf8_values_for_json() {
        let t = parse_template(
            &[Text(b"{\"k\":\""), Secret(0), Text(b"\"}")],
            BodyFormat::Json,
        )
        .expect("parsed");
        assert_eq!(t.fill(&[b"\xff\xfe"]), Err(BodyError::NotUtf8));
    }

    #[test]
    fn rejects_json_placeholders_not_whole_values() {
        let cases: Vec<Vec<TemplatePart<'_>>> = vec![
            // Inside a longer string.
            vec![Text(b"{\"k\":\"Bearer "), Secret(0), Text(b"\"}")],
            vec![Text(b"{\"k\":\""), Secret(0), Text(b"x\"}")],
            // Twice in one string.
            vec![Text(b"{\"k\":\""), Secret(0), Secret(0), Text(b"\"}")],
            // In a key.
            vec![Text(b"{\""), Secret(0), Text(b"\":\"v\"}")],
        ];
        for parts in cases {
            assert_eq!(
                slots(&parts, BodyFormat::Json),
                Err(BodyError::NotWholeValue),
                "{parts:?}"
            );
        }
        // Outside any string: not JSON at all.
        assert!(matches!(
            slots(&[Text(b"{\"k\":"), Secret(0), Text(b"}")], BodyFormat::Json),
            Err(BodyError::NotJson(_))
        ));
        // In a comment-like tail a lenient parser would skip.
        assert!(matches!(
            slots(&[Text(b"{}//"), Secret(0)], BodyFormat::Json),
            Err(BodyError::NotJson(_))
        ));
    }

    #[test]
    fn rejects_json_placeholder_overridden_by_duplicate_key() {
        let parts = [Text(b"{\"k\":\""), Secret(0), Text(b"\",\"k\":\"guest\"}")];
        assert_eq!(slots(&parts, BodyFormat::Json), Err(BodyError::Overridden));
    }

    #[test]
    fn accepts_the_same_credential_in_two_fields() {
        let parts = [
            Text(b"{\"a\":\""),
            Secret(3),
            Text(b"\",\"b\":[\""),
            Secret(3),
            Text(b"\"]}"),
        ];
        let t = parse_template(&parts, BodyFormat::Json).expect("parsed");
        let locs: Vec<_> = t.slots().map(|s| (s.secret, s.location.clone())).collect();
        assert_eq!(locs, vec![(3, json("/a")), (3, json("/b/0"))]);
        let body = t.fill(&[b"", b"", b"", b"v3"]).expect("filled");
        assert_eq!(body.as_slice(), br#"{"a":"v3","b":["v3"]}"#);
        assert_eq!(t.fill(&[b"x"]), Err(BodyError::MissingValue(3)));
    }

    #[test]
    fn accepts_whole_form_values_and_fills_encoded() {
        let parts = [
            Text(b"user=bob+smith&password="),
            Secret(0),
            Text(b"&x=%41"),
        ];
        let t = parse_template(&parts, BodyFormat::Form).expect("parsed");
        let s: Vec<_> = t.slots().cloned().collect();
        assert_eq!(
            s,
            vec![Slot {
                secret: 0,
                location: InjectLocation::BodyForm("password".into())
            }]
        );
        let body = t.fill(&[b"a&b=c +\xff"]).expect("filled");
        assert_eq!(
            body.as_slice(),
            b"user=bob+smith&password=a%26b%3Dc+%2B%FF&x=A"
        );
        assert_eq!(
            t.format().content_type(),
            "application/x-www-form-urlencoded"
        );
    }

    #[test]
    fn rejects_form_placeholders_not_whole_values() {
        for parts in [
            vec![Text(b"password=x"), Secret(0)],
            vec![Text(b"password="), Secret(0), Text(b"x")],
            vec![Text(b"password="), Secret(0), Secret(0)],
            vec![Secret(0), Text(b"=v")],
            vec![Text(b"a"), Secret(0), Text(b"=v")],
        ] {
            assert_eq!(
                slots(&parts, BodyFormat::Form),
                Err(BodyError::NotWholeValue),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn rejects_form_value_smuggling_another_field() {
        // The value is encoded, so it cannot add `&admin=1`.
        let t = parse_template(&[Text(b"p="), Secret(0)], BodyFormat::Form).expect("parsed");
        let body = t.fill(&[b"x&admin=1"]).expect("filled");
        let pairs: Vec<_> = form_urlencoded::parse(&body).collect();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].1, "x&admin=1");
    }

    #[test]
    fn placeholder_tokens_avoid_guest_text_and_each_other() {
        let t = placeholder_tokens(50, &[b"lkph", b"anything"]).expect("tokens");
        assert_eq!(t.len(), 50);
        for (i, a) in t.iter().enumerate() {
            assert_eq!(a.len(), TOKEN_LEN);
            assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(t[i + 1..].iter().all(|b| b != a));
        }
    }

    #[test]
    fn choose_refuses_mixed_and_ambiguous_formats() {
        let j = [json("/p")];
        let f = [InjectLocation::BodyForm("p".into())];
        let both = [json("/p"), InjectLocation::BodyForm("p".into())];
        let none = [InjectLocation::BasicAuth];
        assert_eq!(BodyFormat::choose(&[&j, &j], None), Ok(BodyFormat::Json));
        assert_eq!(BodyFormat::choose(&[&f, &both], None), Ok(BodyFormat::Form));
        assert_eq!(
            BodyFormat::choose(&[&j, &f], None),
            Err(BodyError::MixedFormats)
        );
        assert_eq!(
            BodyFormat::choose(&[&none], None),
            Err(BodyError::NoBodyLocation)
        );
        assert_eq!(
            BodyFormat::choose(&[&both], None),
            Err(BodyError::AmbiguousFormat)
        );
        assert_eq!(
            BodyFormat::choose(&[&both], Some("application/json; charset=utf-8")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(
            BodyFormat::choose(&[&both], Some("application/x-www-form-urlencoded")),
            Ok(BodyFormat::Form)
        );
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        for (parts, format) in [
            (
                vec![Text(b"{\"a\\r\\nb\":{\"k\":\""), Secret(0), Text(b"\"}}")],
                BodyFormat::Json,
            ),
            (
                vec![
                    Text(b"{\"\\u001b]0;t\\u0007\":1,\"k\":\""),
                    Secret(0),
                    Text(b"\"}"),
                ],
                BodyFormat::Json,
            ),
            (vec![Text(b"a%0Db="), Secret(0)], BodyFormat::Form),
            (vec![Text(b"x%1B=1&k="), Secret(0)], BodyFormat::Form),
        ] {
            assert_eq!(
                slots(&parts, format),
                Err(BodyError::ControlInName),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn errors_never_contain_tokens() {
        let e = slots(&[Text(b"{\"k\":"), Secret(0), Text(b"}")], BodyFormat::Json)
            .expect_err("not json");
        assert!(!e.to_string().contains("lkph"), "{e}");
    }
}
