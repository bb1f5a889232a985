//! Where the string values of a JSON text sit, for the scrubber's joined view: a value an
//! upstream cuts over several string values is found in their concatenation.
//!
//! A lexer, not a parser: it finds string literals (`"…"`, backslash escapes skipped) and
//! keeps those not followed by `:` (those are keys), in document order. Anything that starts
//! like JSON (`{` or `[` after whitespace) is lexed, so JSON lines and truncated documents
//! are covered; text that does not start like JSON has no string values.

/// The contents (between the quotes, escapes undecoded) of the string values of `data`, in
/// document order. Empty unless `data` starts like a JSON object or array and holds at
/// least two: one string alone is scanned with the rest of the data.
pub(crate) fn string_values(data: &[u8]) -> Vec<(usize, usize)> {
    let first = data.iter().position(|b| !b.is_ascii_whitespace());
    if !matches!(first.map(|i| data[i]), Some(b'{' | b'[')) {
        return Vec::new();
    }
    let mut values = Vec::new();
    let mut i = 0;
    while let Some(open) = data[i..].iter().position(|&b| b == b'"').map(|p| i + p) {
        let mut j = open + 1;
        while j < data.len() && data[j] != b'"' {
            j += if data[j] == b'\\' { 2 } else { 1 };
        }
        let close = j.min(data.len());
        let next = data[(close + 1).min(data.len())..]
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        if next != Some(&b':') {
            values.push((open + 1, close));
        }
        i = close + 1;
        if i >= data.len() {
            break;
        }
    }
    if values.len() < 2 {
        values.clear();
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(data: &str) -> Vec<&str> {
        string_values(data.as_bytes())
            .into_iter()
            .map(|(s, e)| &data[s..e])
            .collect()
    }

    #[test]
    fn string_values_in_document_order_keys_left_out() {
        assert_eq!(
            texts(r#" {"a": "x\"y", "n": 1, "b" : ["p", {"q": "r\\"}], "c":"s"}"#),
            vec![r#"x\"y"#, "p", r"r\\", "s"]
        );
        // Not JSON, or a single string value: nothing to join.
        assert!(texts(r#"token "a" "b""#).is_empty());
        assert!(texts(r#"{"a": "b"}"#).is_empty());
        // A truncated document still gives what it has.
        assert_eq!(texts(r#"["ab", "cd", "e"#), vec!["ab", "cd", "e"]);
    }
}
