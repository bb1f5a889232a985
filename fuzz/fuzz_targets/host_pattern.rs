//! The binding decision: parse a pattern and a URL from the input, decide, never panic; and
//! a match implies the URL's host is the pattern's (or one label under a wildcard).
#![no_main]

use latchkey_host::policy::HostPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((pattern, url)) = text.split_once('\n') else {
        return;
    };
    let Ok(p) = HostPattern::parse(pattern) else {
        return;
    };
    let Ok(u) = url::Url::parse(url) else { return };
    let (Some(host), Some(port)) = (u.host(), u.port_or_known_default()) else {
        return;
    };
    if p.matches(&host, port, u.scheme()) {
        let shown = p.to_string();
        let name = shown
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok() || *port == "*")
            .map_or(shown.as_str(), |(h, _)| h);
        let host = host.to_string().to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        match name.strip_prefix("*.") {
            Some(suffix) => assert!(host.split_once('.').is_some_and(|(_, rest)| rest == suffix)),
            None => assert_eq!(host, name),
        }
    }
});
