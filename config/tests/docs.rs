//! docs/configuration.md lists exactly the keys the schema has, section
//! by section: a key added to one and not the other fails here.

use config::Config;
use std::collections::BTreeSet;

/// The keys of each `## [section]` table of the page.
fn documented() -> Vec<(String, BTreeSet<String>)> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
    let mut out: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in page.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            out.push((h.trim().to_string(), BTreeSet::new()));
        } else if let Some(rest) = line.strip_prefix("| `") {
            let key = rest.split('`').next().unwrap().to_string();
            out.last_mut().expect("a key before any section").1.insert(key);
        }
    }
    out
}

/// The keys the schema serialises for each section (every field,
/// defaults and options included).
fn schema() -> Vec<(String, BTreeSet<String>)> {
    let text = "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"p\"\ntype = \"tap\"\n\
                [[bridge.arp]]\nip = \"10.0.0.2\"\nmac = \"02:00:00:00:00:02\"\n\
                [[route]]\nprefix = \"10.0.0.0/8\"\nvia = \"192.0.2.1\"\n";
    let cfg: Config = toml::from_str(text).unwrap();
    let v = serde_json::to_value(&cfg).unwrap();
    let keys = |x: &serde_json::Value| -> BTreeSet<String> { x.as_object().unwrap().keys().cloned().collect() };
    let mut bridge = keys(&v["bridge"][0]);
    bridge.remove("port");
    bridge.remove("arp");
    vec![
        ("[eal]".into(), keys(&v["eal"])),
        ("[pmd]".into(), keys(&v["pmd"])),
        ("[control]".into(), keys(&v["control"])),
        ("[[bridge]]".into(), bridge),
        ("[[bridge.port]]".into(), keys(&v["bridge"][0]["port"][0])),
        ("[[bridge.arp]]".into(), keys(&v["bridge"][0]["arp"][0])),
        ("[[route]]".into(), keys(&v["route"][0])),
    ]
}

#[test]
fn the_configuration_page_lists_every_key_of_the_schema() {
    let doc = documented();
    for (section, keys) in schema() {
        let Some((_, listed)) = doc.iter().find(|(s, _)| *s == section) else {
            panic!("docs/configuration.md has no `## {section}`");
        };
        assert_eq!(listed, &keys, "{section}: documented (left) vs schema (right)");
    }
}
