//! Golden tests of the injector on the binder example and realistic third-party manifests
//! (`tests/fixtures/inject/*.in.*` → `*.out.*`): the output is exactly the reviewed golden file,
//! injecting it again changes nothing, documents that are not injected come out byte for byte,
//! and an injected document differs from its input only by the sidecar, its volume and the AMQP
//! URL variable (checked by undoing exactly those and comparing with the input). The schemas
//! are checked by manifests/tests/test_inject.py (kubernetes-validate, strict, every version
//! manifests/test.sh uses), and the sidecar against the kustomize component's own render.
//!
//! `DWELL_UPDATE_GOLDEN=1 cargo test -p dwell-aggregator --test inject_golden` rewrites the
//! golden files after an intended change (review the diff).
use std::path::PathBuf;

use dwell_aggregator::inject::node::{self, Node};
use dwell_aggregator::inject::stream::{Report, inject_stream};
use dwell_aggregator::inject::workload::template_path;
use dwell_aggregator::inject::{InjectSettings, Selection};
use serde_json::Value;

/// Every fixture, with the selection it is injected with and how many templates get the sidecar.
const FIXTURES: [(&str, Selection, usize); 6] = [
    ("binder.in.yaml", Selection::Annotated, 1),
    ("binder-tap.in.yaml", Selection::Annotated, 1),
    ("shop.in.yaml", Selection::Annotated, 1),
    ("statefulset.in.yaml", Selection::Annotated, 1),
    ("cronjob.in.yaml", Selection::Annotated, 1),
    ("list.in.json", Selection::All, 2),
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inject")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn golden_name(input: &str) -> String {
    input.replace(".in.", ".out.")
}

fn run(input: &str, selection: Selection) -> (String, Report) {
    inject_stream(input, &InjectSettings::default(), selection).expect("injects")
}

/// The documents of a stream as JSON values, read the way the injector reads them.
fn documents(text: &str) -> Vec<Value> {
    let nodes = if text.trim_start().starts_with('{') {
        serde_json::Deserializer::from_str(text)
            .into_iter::<Node>()
            .map(|n| n.expect("json"))
            .collect()
    } else {
        node::from_yaml_stream(text).expect("yaml")
    };
    nodes
        .iter()
        .map(|n| serde_json::to_value(n).expect("json value"))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn output_is_the_reviewed_golden_file() {
    let update = std::env::var_os("DWELL_UPDATE_GOLDEN").is_some();
    for (name, selection, injected) in FIXTURES {
        let (out, report) = run(&read(name), selection);
        assert_eq!(report.injected(), injected, "{name}: {report:?}");
        let golden = fixture(&golden_name(name));
        if update {
            std::fs::write(&golden, &out).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            out == want,
            "{name}: output differs from {} (DWELL_UPDATE_GOLDEN=1 rewrites it)\n{out}",
            golden.display()
        );
    }
}

#[test]
fn injecting_twice_changes_nothing() {
    for (name, selection, _) in FIXTURES {
        let (once, _) = run(&read(name), selection);
        let (twice, report) = run(&once, selection);
        assert_eq!(twice, once, "{name}");
        assert_eq!(report.injected(), 0, "{name}");
        assert!(
            report.templates.iter().all(|t| t.2.is_err()),
            "{name}: {report:?}"
        );
    }
}

#[test]
fn documents_not_injected_come_out_byte_for_byte() {
    for (name, selection, _) in FIXTURES.iter().filter(|f| f.0.ends_with(".yaml")) {
        let input = read(name);
        let (out, report) = run(&input, *selection);
        let injected: Vec<usize> = report
            .templates
            .iter()
            .filter(|t| t.2.is_ok())
            .map(|t| t.0)
            .collect();
        // Documents are numbered as the separators split them (a leading `---` opens the first).
        let body = input.strip_prefix("---\n").unwrap_or(&input);
        for (i, doc) in body.split("\n---\n").enumerate() {
            if !injected.contains(&(i + 1)) {
                assert!(out.contains(doc), "{name}: document {} changed", i + 1);
            }
        }
    }
}

#[test]
fn injected_documents_differ_only_where_they_should() {
    for (name, selection, _) in FIXTURES {
        let input = read(name);
        let (out, _) = run(&input, selection);
        let (before, after) = (documents(&input), documents(&out));
        assert_eq!(before.len(), after.len(), "{name}");
        let mut sidecars = 0;
        for (b, a) in before.iter().zip(&after) {
            let mut undone = a.clone();
            sidecars += undo(&mut undone, b);
            assert_eq!(&undone, b, "{name}: more changed than the injection");
        }
        assert!(sidecars > 0, "{name}: nothing was injected");
    }
}

/// Removes what injection adds to `out` (and restores the AMQP variable from `input`); returns
/// how many sidecars it removed.
fn undo(out: &mut Value, input: &Value) -> usize {
    if let (Some(items), Some(orig)) = (
        out.get_mut("items").and_then(Value::as_array_mut),
        input.get("items").and_then(Value::as_array),
    ) {
        return items.iter_mut().zip(orig).map(|(o, i)| undo(o, i)).sum();
    }
    let api_version = input["apiVersion"].as_str().unwrap_or("");
    let kind = input["kind"].as_str().unwrap_or("");
    let Some(path) = template_path(api_version, kind) else {
        return 0;
    };
    let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
    let (Some(template), Some(orig)) = (out.pointer_mut(&pointer), input.pointer(&pointer)) else {
        return 0;
    };
    let mut removed = 0;
    for (list, names) in [
        ("initContainers", &["dwell-sidecar"][..]),
        ("volumes", &["dwell-podinfo", "dwell-ingest-token"][..]),
    ] {
        if let Some(items) = template["spec"].get_mut(list).and_then(Value::as_array_mut) {
            let before = items.len();
            items.retain(|c| !names.contains(&c["name"].as_str().unwrap_or("")));
            if list == "initContainers" {
                removed += before - items.len();
            }
            if items.is_empty() && orig["spec"].get(list).is_none() {
                template["spec"].as_object_mut().map(|s| s.remove(list));
            }
        }
    }
    if let Some(var) = orig
        .pointer("/metadata/annotations/dwell.io~1amqp-url-env")
        .and_then(Value::as_str)
    {
        for list in ["initContainers", "containers"] {
            let originals = orig["spec"][list].as_array().cloned().unwrap_or_default();
            let containers = template.get_mut("spec").and_then(|s| s.get_mut(list));
            let Some(containers) = containers.and_then(Value::as_array_mut) else {
                continue;
            };
            for (c, o) in containers.iter_mut().zip(&originals) {
                let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) else {
                    continue;
                };
                for (e, oe) in env
                    .iter_mut()
                    .zip(o["env"].as_array().into_iter().flatten())
                {
                    if e["name"] == var {
                        assert_ne!(e, oe, "{var} was not pointed at the tap");
                        *e = oe.clone();
                    }
                }
            }
        }
    }
    removed
}
