//! The config's tests: the shipped example, and every kind of error naming what is at fault.

use super::*;

#[test]
fn the_shipped_example_is_valid_and_ordered() {
    let config = PipelineConfig::parse(DEFAULT_PIPELINE).expect("host/pipeline.toml parses");
    let specs = config.stage_specs().unwrap();
    let pos = |name: &str| specs.iter().position(|s| s.name == name).unwrap();
    for s in &specs {
        for producer in (0..specs.len()).filter(|&p| s.inputs.contains(&specs[p].output)) {
            assert!(
                producer < pos(&s.name),
                "{} runs before its producer",
                s.name
            );
        }
    }
    assert!(specs.iter().any(|s| s.plugin == "sales-cleaner"));
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (text, key) in [
        ("[runtime]\nbatch_sise = 3\n", "batch_sise"),
        ("[[source]]\nkind = \"simulator\"\nrat = 5\n", "rat"),
        (
            "[[stage]]\nname=\"a\"\nplugin=\"p\"\ninput=\"x\"\noutput=\"y\"\nmemory=\"1MiB\"\n",
            "memory",
        ),
        ("colour = 1\n", "colour"),
    ] {
        let err = PipelineConfig::parse(text).unwrap_err().to_string();
        assert!(err.contains(key), "{text:?}: {err}");
    }
}

#[test]
fn every_config_error_names_the_key_or_stage_at_fault() {
    let source = "[[source]]\nkind = \"ndjson\"\npath = \"-\"\ntopic = \"t\"\n";
    let stage = |name: &str, input: &str, output: &str, extra: &str| {
        format!("[[stage]]\nname = \"{name}\"\nplugin = \"p\"\ninput = {input}\noutput = \"{output}\"\n{extra}")
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("[runtime\nbatch_size = 3\n".into(), vec!["line 1"]),
        (
            "[runtime]\nbatch_size = \"big\"\n".into(),
            vec!["batch_size", "line 2"],
        ),
        ("[runtime]\nbatch_size = -1\n".into(), vec!["batch_size"]),
        (
            "[runtime]\non_bad_state = \"maybe\"\n".into(),
            vec!["on_bad_state", "start-empty"],
        ),
        ("[runtime]\nfile_outputs = 1\n".into(), vec!["file_outputs"]),
        ("[plugin_defaults]\ndeadline = 5\n".into(), vec!["deadline"]),
        (
            "[[source]]\nkind = \"carrier-pigeon\"\n".into(),
            vec!["carrier-pigeon"],
        ),
        (
            source.to_string() + "[[stage]]\nname = \"a\"\nplugin = \"p\"\ninput = \"t\"\n",
            vec!["output"],
        ),
        (
            source.to_string() + &stage("a", "[]", "o", ""),
            vec!["input"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "plugin_x = 1\n"),
            vec!["plugin_x"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "params = { w = [1] }\n"),
            vec!["\"a\"", "params.w"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "memory_limit = \"lots\"\n"),
            vec!["\"a\"", "memory_limit"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "deadline = \"soon\"\n"),
            vec!["\"a\"", "deadline"],
        ),
        (
            source.to_string() + &stage("a", "\"nowhere\"", "o", ""),
            vec!["\"a\"", "\"nowhere\"", "no source or stage"],
        ),
        (
            source.to_string() + &stage("a", "\"y\"", "x", "") + &stage("b", "\"x\"", "y", ""),
            vec!["\"a\"", "\"b\"", "cycle"],
        ),
        (
            source.to_string() + &stage("a", "\"a-out\"", "a-out", ""),
            vec!["\"a\"", "cycle"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "") + &stage("a", "\"t\"", "p", ""),
            vec!["two stages", "\"a\""],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "o", "") + &stage("b", "\"t\"", "o", ""),
            vec!["\"o\"", "\"b\"", "another producer"],
        ),
        (
            source.to_string() + &stage("a", "\"t\"", "t", ""),
            vec!["\"t\"", "\"a\"", "another producer"],
        ),
    ];
    for (text, parts) in cases {
        let err = PipelineConfig::parse(&text).expect_err(&text).to_string();
        for part in parts {
            assert!(err.contains(part), "{text}\n-> {err}\n(should name {part})");
        }
    }
}

#[test]
fn wiring_errors_are_explained() {
    let text = r#"
        [[source]]
        kind = "ndjson"
        path = "-"
        topic = "retail-sales-transactions"
        [[stage]]
        name = "agg"
        plugin = "revenue-aggregator"
        input = "sales"
        output = "sales_1m"
    "#;
    let err = PipelineConfig::parse(text).unwrap_err().to_string();
    assert!(err.contains("\"agg\" reads stream \"sales\""), "{err}");
}

#[test]
fn a_stage_can_read_several_streams_and_runs_after_all_their_producers() {
    let text = r#"
        [[source]]
        kind = "ndjson"
        path = "-"
        topic = "t"
        [[stage]]
        name = "both"
        plugin = "p"
        input = ["a", "b"]
        output = "o"
        [[stage]]
        name = "to-b"
        plugin = "p"
        input = "t"
        output = "b"
        [[stage]]
        name = "to-a"
        plugin = "p"
        input = "t"
        output = "a"
    "#;
    let specs = PipelineConfig::parse(text).unwrap().stage_specs().unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["to-b", "to-a", "both"]);
    assert_eq!(specs[2].inputs, ["a", "b"]);
    let empty = text.replace(r#"input = ["a", "b"]"#, "input = []");
    let err = PipelineConfig::parse(&empty).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let unfed = text.replace(r#"input = ["a", "b"]"#, r#"input = ["a", "c"]"#);
    let err = PipelineConfig::parse(&unfed).unwrap_err().to_string();
    assert!(err.contains("reads stream \"c\""), "{err}");
}

#[test]
fn stages_without_input_can_be_pruned() {
    let mut config = PipelineConfig::parse(DEFAULT_PIPELINE).unwrap();
    config.sources = vec![SourceConfig::Ndjson(crate::sources::NdjsonConfig {
        name: "in".into(),
        path: "-".into(),
        topic: "retail-inventory-updates".into(),
    })];
    let dropped = config.prune_unfed_stages();
    assert!(
        dropped.contains(&"clean-sales".to_string()) && dropped.contains(&"forecast".to_string())
    );
    let names: Vec<String> = config
        .stage_specs()
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        vec![
            "clean-inventory",
            "inventory-per-minute",
            "low-stock",
            "shrinkage"
        ]
    );
}

#[test]
fn limits_and_params_are_parsed() {
    let text = r#"
        [plugin_defaults]
        deadline = "250ms"
        [[source]]
        kind = "ndjson"
        path = "-"
        topic = "t"
        [[stage]]
        name = "a"
        plugin = "p"
        input = "t"
        output = "o"
        memory_limit = "8MiB"
        allowed_lateness = "2m"
        params = { threshold = 0.5, window = "1m", on = true }
    "#;
    let specs = PipelineConfig::parse(text).unwrap().stage_specs().unwrap();
    let s = &specs[0];
    assert_eq!(s.limits.memory_bytes, 8 << 20);
    assert_eq!(s.limits.deadline, Duration::from_millis(250));
    assert_eq!(s.allowed_lateness_ms, 120_000);
    assert!(s.params.contains(&("threshold".into(), "0.5".into())));
    assert!(s.params.contains(&("window".into(), "1m".into())));
    assert!(parse_size("12 parsecs").is_err());
}
