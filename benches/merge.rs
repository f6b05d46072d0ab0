//! Criterion benches of the kernel and of one device's merge.
//! Run: `cargo bench --bench merge`; CI runs them once with `-- --test`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use failback::doc::{Policies, Status, StatusValue};
use failback::kernel::{Causal, Merge, MvReg, OrMap};
use failback::reconcile::{Base, HubDevice, merge_device};
use failback::{ReplicaId, Stamp};
use serde_json::json;

fn kernel(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    for keys in [10usize, 100] {
        let a = ReplicaId::new("a").expect("valid");
        let b = ReplicaId::new("b").expect("valid");
        let mut left: Causal<OrMap<u32, MvReg<u64>>> = Causal::default();
        for k in 0..keys as u32 {
            let d = left.update(k, |r| r.write(&a, Stamp::new(1, 0, a.clone()), 1));
            left.merge(&d);
        }
        let mut right = left.clone();
        for k in (0..keys as u32).step_by(2) {
            let d = right.update(k, |r| r.write(&b, Stamp::new(2, 0, b.clone()), 2));
            right.merge(&d);
        }
        group.throughput(Throughput::Elements(keys as u64));
        group.bench_with_input(BenchmarkId::new("ormap_join", keys), &keys, |bench, _| {
            bench.iter(|| {
                let mut m = left.clone();
                m.merge(&right);
                m
            });
        });
    }
    group.finish();
}

fn device(c: &mut Criterion) {
    let (p, s) = (
        ReplicaId::new("primary").expect("valid"),
        ReplicaId::new("secondary").expect("valid"),
    );
    let (sp, ss) = (Stamp::new(1, 0, p.clone()), Stamp::new(2, 0, s.clone()));
    let base = common::typical_device(1);
    let mut on_p = base.clone();
    on_p.device.desired.insert("mode".into(), json!("turbo"));
    let mut on_s = base.clone();
    on_s.device.status = Some(StatusValue {
        status: Status::Disabled,
        reason: Some("stolen".into()),
    });
    on_s.device.reported.insert("battery".into(), json!(12));
    let mut group = c.benchmark_group("device_merge");
    group.throughput(Throughput::Elements(1));
    // The primary kept the base (fast path) or changed it too (CRDT path).
    for (name, primary) in [("one_side_changed", &base), ("both_sides_changed", &on_p)] {
        group.bench_function(name, |bench| {
            let hubs = [
                HubDevice {
                    hub: &p,
                    device: Some(primary),
                    times: None,
                    stamp: &sp,
                    recreated: false,
                },
                HubDevice {
                    hub: &s,
                    device: Some(&on_s),
                    times: None,
                    stamp: &ss,
                    recreated: false,
                },
            ];
            bench.iter(|| merge_device(Base::Present(&base), &hubs, &Policies::default()));
        });
    }
    group.finish();
}

criterion_group!(benches, kernel, device);
criterion_main!(benches);
