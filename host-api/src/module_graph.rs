//! The crate's files form no import circle: a file that names `crate::a::b` or `super::x`
//! depends on the file that defines that module, and no file may depend on itself through
//! others. Circles are how a layer starts to know the one above it (the WIT hosts knew the
//! sandbox that holds them; the workflow runner knew the façade that calls it); each was
//! broken by moving what both sides needed into a module of its own.
//!
//! Test code (`#[cfg(test)]` and below) and comments are not dependencies, and a module's
//! own children, named by a relative path (`mod run; pub use run::X;`), are part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every `.rs` file under `dir`, by module path (`src/http/mod.rs` → `["http"]`).
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            let mut p = prefix.to_vec();
            p.push(name);
            modules(&path, &p, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.insert(module, code.join("\n"));
        }
    }
}

/// The paths named after each `anchor` (`crate::` or `super::`): `a::b::C`, and for a
/// group `a::{b, c::D}` each of `a::b`, `a::c::D`.
fn paths_after(code: &str, anchor: &str) -> Vec<Module> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (i, _) in code.match_indices(anchor) {
        if code[..i].ends_with(ident) {
            continue;
        }
        let rest = &code[i + anchor.len()..];
        let mut path = Vec::new();
        let mut s = rest;
        loop {
            let end = s.find(|c: char| !ident(c)).unwrap_or(s.len());
            if end == 0 {
                break;
            }
            path.push(s[..end].to_owned());
            s = &s[end..];
            if let Some(next) = s.strip_prefix("::") {
                s = next;
            } else {
                break;
            }
        }
        if let Some(group) = s.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let mut p = path.clone();
                p.extend(
                    item.split("::")
                        .map(|x| x.trim().trim_start_matches('{').to_owned())
                        .filter(|x| !x.is_empty() && x.chars().all(ident)),
                );
                found.push(p);
            }
        }
        found.push(path);
    }
    found
}

/// The file `path` names: the longest prefix of it that is a module.
fn resolve(path: &[String], known: &BTreeMap<Module, String>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains_key(p))
}

fn graph(known: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (module, code) in known {
        let mut to = BTreeSet::new();
        for path in paths_after(code, "crate::") {
            to.extend(resolve(&path, known));
        }
        // `super::` in `a/b.rs` (module a::b) is module `a`.
        let parent = &module[..module.len().saturating_sub(1)];
        for path in paths_after(code, "super::") {
            let full: Module = parent.iter().cloned().chain(path).collect();
            to.extend(resolve(&full, known));
        }
        to.remove(module);
        to.remove(&Module::new());
        edges.insert(module.clone(), to);
    }
    edges
}

/// The strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in &self.edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_file_of_the_crate_depends_on_itself() {
    let mut known = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut known,
    );
    assert!(known.len() > 50, "found only {} files", known.len());
    let edges = graph(&known);
    // The analysis sees real dependencies: the sandbox uses the HTTP host, which uses the
    // policy.
    let http = vec!["http".to_owned()];
    assert!(edges[&vec!["sandbox".to_owned()]].contains(&http));
    assert!(edges[&http].contains(&vec!["run_state".to_owned()]));
    let found = circles(&edges);
    let shown: Vec<Vec<String>> = found
        .iter()
        .map(|c| c.iter().map(|m| m.join("/")).collect())
        .collect();
    assert!(shown.is_empty(), "import circles: {shown:?}");
}

#[test]
fn a_circle_is_found() {
    let known: BTreeMap<Module, String> = [
        (vec!["a".to_owned()], "use crate::b::{X, c::Y};".to_owned()),
        (vec!["b".to_owned()], "fn f() { super::a::g() }".to_owned()),
        (vec!["b".to_owned(), "c".to_owned()], String::new()),
    ]
    .into_iter()
    .collect();
    let edges = graph(&known);
    assert_eq!(circles(&edges).len(), 1, "{edges:?}");
}

/// The arrows `docs/ARCHITECTURE.md` says must never exist, where a search can check them.
#[test]
fn the_documented_arrows_do_not_exist() {
    let mut known = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut known,
    );
    let never: [(&str, &[&str]); 3] = [
        // Pure rules, testable as functions.
        (
            "policy",
            &[
                "wasmtime::",
                "tokio::",
                "reqwest::",
                "crate::store",
                "crate::audit",
            ],
        ),
        // The store holds sealed records; it neither runs guests nor sends requests.
        (
            "store",
            &[
                "wasmtime::",
                "crate::http",
                "crate::sandbox",
                "crate::cache",
            ],
        ),
        ("oauth", &["wasmtime::", "crate::sandbox"]),
    ];
    // Where a plaintext value may be read (`tokens` has its own `Token::expose`: the
    // bearer token handed to its owner once).
    let may_expose = [
        "http/host",
        "http/sign",
        "http/injected",
        "signer",
        "oauth",
        "store",
        "transit",
        "secret",
        "tokens",
    ];
    let mut checked = 0;
    for (module, code) in &known {
        let name = module.join("/");
        for (top, forbidden) in never {
            if module.first().is_some_and(|m| m == top) {
                checked += 1;
                for f in forbidden {
                    assert!(!code.contains(f), "{name} names {f}");
                }
            }
        }
        if code.contains(".expose()") {
            assert!(
                may_expose
                    .iter()
                    .any(|m| name == *m || name.starts_with(&format!("{m}/"))),
                "{name} reads a plaintext value"
            );
        }
    }
    assert!(checked > 20, "checked only {checked} files");
}
