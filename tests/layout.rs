//! The host's layout holds: no source file over 500 lines, and the top-level modules of
//! `host/src/` depend on each other without a cycle, in the direction the architecture reads
//! (sources -> plugin chain -> sinks, wired by the runtime; the tools beside it). Needs nothing
//! built or running.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of `host/src/` -> the top-level modules its code names (`crate::x`),
/// comments left out. `main.rs` (the binary) and `lib.rs` (the module list) are not modules.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let deps = graph.entry(top.clone()).or_default();
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A path `from -> ... -> to` in the graph, if there is one.
fn path(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(route) = stack.pop() {
        let last = route.last().unwrap().clone();
        if last == to && route.len() > 1 {
            return Some(route);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(&last).into_iter().flatten() {
            let mut longer = route.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

#[test]
fn no_host_source_file_is_over_500_lines() {
    let mut files = Vec::new();
    rust_files(&common::repo().join("host/src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{} ({n} lines)", f.display()))
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn host_modules_have_no_import_cycle_and_point_the_way_the_pipeline_reads() {
    let graph = module_graph(&common::repo().join("host/src"));
    for module in graph.keys() {
        if let Some(cycle) = path(&graph, module, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    let forbidden = [
        ("sources", "runtime", "sources do not know the runner"),
        (
            "pipeline",
            "sinks",
            "the chain returns its outputs; the runner writes them",
        ),
        (
            "runtime",
            "sim",
            "host run depends on a Source, not on the simulator",
        ),
        ("runtime", "tools", "the tools are beside the runtime"),
        ("sinks", "runtime", "sinks do not know the runner"),
    ];
    for (from, to, why) in forbidden {
        assert!(
            !graph.get(from).is_some_and(|d| d.contains(to)),
            "{from} imports {to}: {why}"
        );
    }
    // The graph this checks is not empty by accident.
    assert!(graph["runtime"].contains("sources") && graph["runtime"].contains("pipeline"));
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(path(&graph, "a", "a").unwrap(), ["a", "b", "c", "a"]);
    assert!(path(&graph, "d", "d").is_none());
}
