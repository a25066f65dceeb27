//! The architecture invariants of ARCHITECTURE.md, checked from `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};

use cargo_metadata::{DependencyKind, MetadataCommand};

fn workspace() -> cargo_metadata::Metadata {
    MetadataCommand::new()
        .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .exec()
        .expect("cargo metadata")
}

/// Normal (non-dev) direct dependencies of each workspace package.
fn direct_deps(meta: &cargo_metadata::Metadata) -> BTreeMap<String, (String, BTreeSet<String>)> {
    meta.workspace_packages()
        .into_iter()
        .map(|p| {
            let deps =
                p.dependencies.iter().filter(|d| d.kind == DependencyKind::Normal).map(|d| d.name.clone()).collect();
            (p.name.to_string(), (p.manifest_path.to_string(), deps))
        })
        .collect()
}

#[test]
fn services_never_depend_on_each_other() {
    let meta = workspace();
    let deps = direct_deps(&meta);
    let services: BTreeSet<String> =
        deps.iter().filter(|(_, (path, _))| path.contains("/services/")).map(|(n, _)| n.clone()).collect();
    assert!(services.len() >= 6, "{services:?}");
    for (name, (_, d)) in &deps {
        // The all-in-one binary exists to run every service in one process.
        if name == "sentinel" {
            continue;
        }
        let bad: Vec<_> = d.intersection(&services).collect();
        assert!(bad.is_empty(), "{name} depends on service(s) {bad:?}");
    }
}

#[test]
fn the_domain_crate_has_no_io_dependency() {
    let meta = workspace();
    let resolve = meta.resolve.as_ref().expect("resolve");
    let id = meta
        .workspace_packages()
        .into_iter()
        .find(|p| p.name.as_str() == "sentinel-domain")
        .expect("domain")
        .id
        .clone();
    // Walk the whole dependency closure, not just direct dependencies.
    let nodes: BTreeMap<_, _> = resolve.nodes.iter().map(|n| (n.id.clone(), n)).collect();
    let mut seen = BTreeSet::new();
    let mut stack = vec![id];
    while let Some(next) = stack.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        for dep in &nodes[&next].deps {
            if dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal) {
                stack.push(dep.pkg.clone());
            }
        }
    }
    let names: BTreeSet<String> =
        meta.packages.iter().filter(|p| seen.contains(&p.id)).map(|p| p.name.to_string()).collect();
    for io in ["tokio", "mio", "redis", "sea-orm", "sqlx-core", "actix-web", "reqwest", "hyper", "deadpool-redis"] {
        assert!(!names.contains(io), "sentinel-domain pulls in {io}");
    }
}

#[test]
fn each_outside_technology_has_one_owning_crate() {
    let meta = workspace();
    let deps = direct_deps(&meta);
    let owners: &[(&str, &[&str])] = &[
        ("redis", &["sentinel-bus"]),
        ("deadpool-redis", &["sentinel-bus"]),
        ("sea-orm", &["sentinel-db", "sentinel-testkit"]),
        ("sea-orm-migration", &["sentinel-migrations"]),
        // The API is the gateway's; the ops endpoints every service shares live in sentinel-telemetry.
        ("actix-web", &["api-gateway", "sentinel-telemetry"]),
        ("opentelemetry", &["sentinel-telemetry"]),
        ("opentelemetry-otlp", &["sentinel-telemetry"]),
        ("tracing-opentelemetry", &["sentinel-telemetry"]),
        ("config", &["sentinel-config"]),
        // Process control (signals, the child subreaper) for ansible runs.
        ("nix", &["sentinel-ansible"]),
        // Backups: object storage, the artifact codec, and age with the rest of encryption.
        ("object_store", &["sentinel-storage"]),
        ("zstd", &["sentinel-archive"]),
        ("flate2", &["sentinel-archive"]),
        ("zip", &["sentinel-archive"]),
        ("tar", &["sentinel-archive"]),
        ("age", &["sentinel-secrets"]),
        // Monitoring: target names resolved through a configured DNS server, and the system's trust roots.
        ("hickory-resolver", &["monitor-worker"]),
        ("rustls-native-certs", &["monitor-worker"]),
        // Notifications: email over SMTP.
        ("lettre", &["monitor-worker"]),
        // URL parsing is pure: the domain validates targets with it.
        ("url", &["sentinel-domain"]),
    ];
    for (tech, allowed) in owners {
        let users: Vec<&String> = deps.iter().filter(|(_, (_, d))| d.contains(*tech)).map(|(n, _)| n).collect();
        for user in users {
            assert!(allowed.contains(&user.as_str()), "{user} depends on {tech}, owned by {allowed:?}");
        }
    }
}
