//! Planner benchmark: prints the median time of `plan(desired, actual)` for 100, 1,000 and
//! 10,000 containers (target: 10,000 in under 50 ms), with nothing to do and with 10% of the
//! containers recreated and 10% updated in place, plus the time to build the desired state
//! (canonicalisation and hashing). Run with `cargo bench -p agent --bench plan`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent::manifest::Manifest;
use agent::plan::{
    self, Actual, ActualContainer, ActualNetwork, Desired, FileInput, FileState, Resolutions,
};
use agent::store::ContainerState;
use serde_json::json;

fn manifests(n: usize, variant: usize) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = Vec::with_capacity(n + 20);
    let doc = |v: serde_json::Value| -> Manifest {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("bench manifest: {e}"))
    };
    for v in 0..10 {
        out.push(doc(json!({"kind": "Volume", "apiVersion": "agent/v1",
            "metadata": {"name": format!("vol{v}")}, "spec": {"reclaim": "retain"}})));
    }
    for k in 0..4 {
        out.push(doc(json!({"kind": "Network", "apiVersion": "agent/v1",
            "metadata": {"name": format!("net{k}")}, "spec": {"subnet": format!("10.{}.0.0/16", 100 + k)}})));
    }
    for i in 0..n {
        // 10% recreated (env), 10% updated in place (memory) in the changed variant.
        let level = if variant == 1 && i % 10 == 3 {
            "debug"
        } else {
            "info"
        };
        let memory = if variant == 1 && i % 10 == 7 {
            "512Mi"
        } else {
            "256Mi"
        };
        let mut spec = json!({
            "image": format!("127.0.0.1:5000/app{}:1.{}", i % 20, i % 3),
            "command": ["/bin/app", "--port", "8080"],
            "env": {"LOG_LEVEL": level, "APP_ID": i.to_string(), "REGION": "eu-west", "MODE": "edge"},
            "ports": [format!("127.0.{}.{}:{}:8080/tcp", i / 250 % 250, i % 250 + 1, 10000 + i % 50000)],
            "volumes": [format!("vol{}:/data", i % 10), {"tmpfs": "/run", "size": "16Mi"}],
            "resources": {"memory": memory, "cpus": 0.5, "pids": 200},
            "restart": "always",
            "healthcheck": {"command": ["/bin/check"], "interval": "10s"},
            "networks": [format!("net{}", i % 4)],
        });
        // Chains of 10: each container links the previous one.
        if i % 10 != 0 {
            spec["links"] = json!([format!("c{}", i - 1)]);
        }
        out.push(doc(json!({"kind": "Container", "apiVersion": "agent/v1",
            "metadata": {"name": format!("c{i}"), "labels": {"app": "bench", "tier": "edge"}},
            "spec": spec})));
    }
    out
}

fn inputs(objects: &[Manifest]) -> Vec<FileInput> {
    objects
        .chunks(50)
        .enumerate()
        .map(|(i, chunk)| FileInput {
            path: format!("/etc/agent.d/f{i:05}.yaml").into(),
            state: FileState::Loaded(chunk.to_vec()),
        })
        .collect()
}

fn resolutions(objects: &[Manifest]) -> Resolutions {
    let mut r = Resolutions::new();
    for m in objects {
        if let Manifest::Container(c) = m {
            let key = plan::ImageSource::registry(&c.spec.image).key();
            let digest = format!("sha256:{:0>64}", key.len() * 7919 % 100_000);
            r.insert(key, digest);
        }
    }
    r
}

/// The host after applying `d`: everything recorded and running.
fn applied(d: &Desired, res: &Resolutions) -> Actual {
    let mut a = Actual {
        images: res.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..Actual::default()
    };
    for (n, v) in &d.volumes {
        a.volumes.insert(n.clone(), v.value.clone());
    }
    for (n, net) in &d.networks {
        a.networks.insert(
            n.clone(),
            ActualNetwork {
                config: Some(net.value.clone()),
            },
        );
    }
    for (n, c) in &d.containers {
        a.containers.insert(
            n.clone(),
            ActualContainer::new(Some(c.value.config.clone()), ContainerState::Running),
        );
    }
    a
}

fn median(mut f: impl FnMut() -> Duration, runs: usize) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs).map(|_| f()).collect();
    times.sort();
    (times[runs / 2], times[0])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    println!(
        "{:>7}  {:>22}  {:>22}  {:>22}  {:>7}",
        "n", "plan, no change", "plan, 20% changed", "Desired::build", "steps"
    );
    for n in [100, 1_000, 10_000] {
        let base = manifests(n, 0);
        let changed = manifests(n, 1);
        let res = resolutions(&base);
        let desired_base = Desired::build(inputs(&base), &res);
        let desired_changed = Desired::build(inputs(&changed), &res);
        let actual = applied(&desired_base, &res);
        let runs = if n >= 10_000 { 11 } else { 31 };

        let same = plan::plan(&desired_base, &actual);
        assert!(same.is_empty(), "unchanged desired must give an empty plan");
        let (same_med, same_min) = median(
            || {
                let t = Instant::now();
                black_box(plan::plan(black_box(&desired_base), black_box(&actual)));
                t.elapsed()
            },
            runs,
        );
        let steps = plan::plan(&desired_changed, &actual).steps.len();
        let (chg_med, chg_min) = median(
            || {
                let t = Instant::now();
                black_box(plan::plan(black_box(&desired_changed), black_box(&actual)));
                t.elapsed()
            },
            runs,
        );
        let (build_med, build_min) = median(
            || {
                let i = inputs(&changed);
                let t = Instant::now();
                black_box(Desired::build(i, &res));
                t.elapsed()
            },
            runs.min(11),
        );
        println!(
            "{n:>7}  {:>10} (min {:>9})  {:>10} (min {:>9})  {:>10} (min {:>9})  {steps:>7}",
            ms(same_med),
            ms(same_min),
            ms(chg_med),
            ms(chg_min),
            ms(build_med),
            ms(build_min),
        );
    }
}
