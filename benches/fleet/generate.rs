//! A realistic fleet: the common base and the two hubs' exports after a
//! failover, written sorted by id as IoT Hub writes them.
//!
//! Devices: 70% SAS sensors, 15% self-signed X.509, 10% leaves behind an
//! edge gateway (CA-signed, with scopes), 5% edge gateways with
//! `$edgeAgent`, `$edgeHub` and one or two custom modules (a module line
//! before its device line in a third of them, as hubs do); 3% disabled.
//! Divergence: each hub edits 10% of the base's devices (desired, reported,
//! tags, keys, status, removed and reshaped properties), deletes 0.5% and
//! creates new ones; 0.1% are created on both hubs under one id.
//! Everything is a function of (seed, device index), so the files are the
//! same on every run and any device can be regenerated alone.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use failback::doc::{
    AuthType, Authentication, DeviceSnapshot, Entity, Secret, SectionMap, Status, StatusValue,
    X509Thumbprint,
};
use failback::format::{DeviceEtags, RecordMeta, write_device};
use serde_json::{Value, json};

/// splitmix64: a tiny, good, seedable mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic draw for device `i` and purpose `salt`.
fn draw(seed: u64, i: usize, salt: u64) -> u64 {
    mix(seed ^ mix(i as u64 ^ mix(salt)))
}

/// A draw in 0..1000.
fn permille(seed: u64, i: usize, salt: u64) -> u64 {
    draw(seed, i, salt) % 1000
}

fn obj(value: Value) -> SectionMap {
    match value {
        Value::Object(map) => map.into(),
        _ => SectionMap::new(),
    }
}

fn key(seed: u64, i: usize, salt: u64) -> Secret {
    // 44 characters of base64, as IoT Hub generates.
    let a = draw(seed, i, salt);
    let b = mix(a);
    let c = mix(b);
    Secret::new(&format!("{a:016x}{b:016x}{:08x}AAA=", c as u32))
}

fn thumbprint(seed: u64, i: usize, salt: u64) -> Secret {
    let a = draw(seed, i, salt);
    Secret::new(&format!(
        "{a:016X}{:016X}{:08X}",
        mix(a),
        mix(mix(a)) as u32
    ))
}

const SITES: [&str; 6] = [
    "berlin-03",
    "lyon-2",
    "austin-1",
    "osaka-7",
    "leeds-4",
    "porto-1",
];

/// Device kinds by the first draw.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sas,
    SelfSigned,
    Leaf,
    Edge,
}

fn kind(seed: u64, i: usize) -> Kind {
    match permille(seed, i, 1) {
        0..700 => Kind::Sas,
        700..850 => Kind::SelfSigned,
        850..950 => Kind::Leaf,
        _ => Kind::Edge,
    }
}

fn device_id(i: usize) -> String {
    format!("device-{i:07}")
}

fn edge_of(i: usize) -> usize {
    // The nearest gateway index below, by convention (scopes only name it).
    i - i % 20
}

/// A device of the base, with its etags.
fn base_device(seed: u64, i: usize, id: String) -> (DeviceSnapshot, Tags) {
    let kind = kind(seed, i);
    let site = SITES[(draw(seed, i, 2) % SITES.len() as u64) as usize];
    let mut d = DeviceSnapshot {
        id,
        ..Default::default()
    };
    let disabled = permille(seed, i, 3) < 30;
    d.device.status = Some(StatusValue {
        status: if disabled {
            Status::Disabled
        } else {
            Status::Enabled
        },
        reason: disabled.then(|| "decommissioned pending audit".to_owned()),
    });
    d.device.authentication = Some(match kind {
        Kind::Sas | Kind::Edge => Authentication::sas(key(seed, i, 10), key(seed, i, 11)),
        Kind::SelfSigned => Authentication {
            symmetric_key: None,
            x509_thumbprint: Some(X509Thumbprint {
                primary_thumbprint: Some(thumbprint(seed, i, 12)),
                secondary_thumbprint: Some(thumbprint(seed, i, 13)),
            }),
            auth_type: Some(AuthType::SelfSigned),
        },
        Kind::Leaf => Authentication {
            symmetric_key: None,
            x509_thumbprint: Some(X509Thumbprint::default()),
            auth_type: Some(AuthType::CertificateAuthority),
        },
    });
    d.device.capabilities = Some(json!({ "iotEdge": kind == Kind::Edge }));
    match kind {
        Kind::Edge => {
            d.device.device_scope = Some(format!(
                "ms-azure-iot-edge://{}-{}",
                d.id,
                637_000_000_000_000_000u64 + draw(seed, i, 4) % 1_000_000_000
            ));
        }
        Kind::Leaf => {
            let gw = device_id(edge_of(i));
            let scope = format!("ms-azure-iot-edge://{gw}-{}", 637_000_000_000_000_000u64);
            d.device.device_scope = Some(scope.clone());
            d.device.parent_scopes = Some(json!([scope]));
        }
        _ => {}
    }
    let floor = draw(seed, i, 5) % 12;
    d.device.tags = obj(json!({
        "site": site,
        "location": {"building": format!("b{}", draw(seed, i, 6) % 9), "floor": floor, "room": format!("r{}", draw(seed, i, 7) % 300)},
        "owner": "facilities",
        "model": if kind == Kind::Edge { "gw-500" } else { "th-200" },
        "commissioned": "2025-03-14",
    }));
    d.device.desired = obj(json!({
        "telemetry": {"interval": 30, "batch": 10, "enabled": true, "fields": ["temp", "humidity", "battery"]},
        "firmware": {"version": "4.2.1", "channel": "stable", "url": format!("https://fw.example.com/th-200/4.2.1.bin?d={i}")},
        "thresholds": {"temp": {"high": 28.5, "low": 16.0}, "humidity": 70},
        "mode": "eco",
        "rev": draw(seed, i, 8) % 1000,
    }));
    d.device.reported = obj(json!({
        "firmware": {"version": "4.2.1", "installed": "2026-10-01T10:00:00Z"},
        "telemetry": {"interval": 30, "lastSent": "2026-11-26T06:00:00Z"},
        "battery": draw(seed, i, 9) % 100, "rssi": -61, "uptime": draw(seed, i, 14) % 1_000_000,
        "temp": 22.4, "humidity": 41, "errors": 0,
        "network": {"type": "wifi", "ip": format!("10.{}.{}.{}", i % 250, (i / 250) % 250, i % 7), "ssid": "plant-iot"},
    }));
    let mut tags = Tags {
        etag: format!("MTA{:08x}", draw(seed, i, 20) as u32),
        twin_etag: format!("AAAAAAAA{:04x}=", draw(seed, i, 21) as u16),
        modules: BTreeMap::new(),
    };
    if kind == Kind::Edge {
        let mut modules = vec!["$edgeAgent", "$edgeHub", "filter"];
        if draw(seed, i, 22) % 2 == 0 {
            modules.push("opcua");
        }
        for (n, m) in modules.into_iter().enumerate() {
            let entity = module(seed, i, m);
            d.modules.insert(m.to_owned(), entity);
            let meta = RecordMeta {
                etag: Some(format!(
                    "ODc{:06x}",
                    draw(seed, i, 30 + n as u64) as u32 >> 8
                )),
                twin_etag: Some(format!("AAAAAAAAAA{n}=")),
                ..RecordMeta::default()
            };
            tags.modules.insert(m.to_owned(), meta);
        }
    }
    (d, tags)
}

fn module(seed: u64, i: usize, name: &str) -> Entity {
    let mut e = Entity {
        authentication: Some(Authentication::sas(
            key(seed, i, 40 + name.len() as u64),
            key(seed, i, 50 + name.len() as u64),
        )),
        ..Entity::default()
    };
    match name {
        "$edgeAgent" => {
            e.desired = obj(json!({
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "registryCredentials": {"contoso": {"address": "contoso.azurecr.io", "username": "pull"}}}},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.4", "createOptions": "{}"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.4", "createOptions": "{\"HostConfig\":{\"PortBindings\":{\"443/tcp\":[{\"HostPort\":\"443\"}]}}}"}}
                },
                "modules": {
                    "filter": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always", "settings": {"image": "contoso.azurecr.io/filter:2.3.1", "createOptions": "{}"}},
                    "opcua": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "on-failure", "settings": {"image": "mcr.microsoft.com/iotedge/opc-publisher:2.9", "createOptions": "{\"Hostname\":\"publisher\"}"}}
                }
            }));
            e.reported = obj(json!({
                "schemaVersion": "1.1",
                "runtime": {"platform": {"os": "linux", "architecture": "x86_64", "version": "1.4.10"}},
                "systemModules": {"edgeAgent": {"runtimeStatus": "running", "lastStartTimeUtc": "2026-11-20T08:00:00Z"}, "edgeHub": {"runtimeStatus": "running", "restartCount": draw(seed, i, 60) % 5}},
                "lastDesiredStatus": {"code": 200, "description": ""}
            }));
        }
        "$edgeHub" => {
            e.desired = obj(json!({
                "schemaVersion": "1.1",
                "routes": {"upstream": "FROM /messages/* INTO $upstream", "filterToHub": "FROM /messages/modules/filter/outputs/* INTO $upstream"},
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
            }));
            e.reported = obj(
                json!({"schemaVersion": "1.1", "lastDesiredStatus": {"code": 200}, "clients": {"filter": {"status": "Connected"}}}),
            );
        }
        other => {
            e.desired =
                obj(json!({"window": 60, "threshold": 25, "output": format!("{other}-out")}));
            e.reported = obj(json!({"processed": draw(seed, i, 61) % 100_000, "dropped": 0}));
        }
    }
    e
}

/// The etags of a device and its modules.
#[derive(Clone)]
struct Tags {
    etag: String,
    twin_etag: String,
    modules: BTreeMap<String, RecordMeta>,
}

impl Tags {
    fn of(&self) -> DeviceEtags<'_> {
        DeviceEtags {
            etag: Some(&self.etag),
            twin_etag: Some(&self.twin_etag),
            modules: Some(&self.modules),
        }
    }
}

/// What one hub did to a device of the base.
enum Fate {
    Kept,
    Edited,
    Deleted,
}

fn fate(seed: u64, i: usize, side: u64) -> Fate {
    match permille(seed, i, 100 + side) {
        0..5 => Fate::Deleted,
        5..105 => Fate::Edited,
        _ => Fate::Kept,
    }
}

/// Applies one of the edits operators and devices make during an outage.
fn edit(seed: u64, i: usize, side: u64, d: &mut DeviceSnapshot, tags: &mut Tags) {
    let what = permille(seed, i, 200 + side);
    let n = draw(seed, i, 300 + side);
    let twin = |tags: &mut Tags| tags.twin_etag = format!("AAAAAAAB{:04x}=", n as u16);
    match what {
        0..300 => {
            d.device.desired.insert(
                "telemetry".into(),
                json!({"interval": 10 + n % 50, "batch": 10, "enabled": true, "fields": ["temp", "humidity"]}),
            );
            if side == 1 {
                d.device.desired.insert("mode".into(), json!("boost"));
            }
            twin(tags);
        }
        300..600 => {
            d.device.reported.insert("battery".into(), json!(n % 100));
            d.device
                .reported
                .insert("uptime".into(), json!(n % 2_000_000));
            if let Some(Value::Object(t)) = d.device.reported.get_mut("telemetry") {
                t.insert(
                    "lastSent".into(),
                    json!(format!("2026-11-27T0{}:00:00Z", side + 1)),
                );
            }
            twin(tags);
        }
        600..750 => {
            if let Some(Value::Object(loc)) = d.device.tags.get_mut("location") {
                loc.insert("room".into(), json!(format!("r{}", n % 300)));
            }
            d.device.tags.insert(
                "owner".into(),
                json!(if side == 1 { "ops" } else { "field-team" }),
            );
            twin(tags);
        }
        750..850 => {
            if let Some(auth) = &mut d.device.authentication {
                if auth.symmetric_key.is_some() {
                    *auth = Authentication::sas(key(seed, i, 400 + side), key(seed, i, 410 + side));
                } else if auth.auth_type == Some(AuthType::SelfSigned) {
                    auth.x509_thumbprint = Some(X509Thumbprint {
                        primary_thumbprint: Some(thumbprint(seed, i, 420 + side)),
                        secondary_thumbprint: Some(thumbprint(seed, i, 430 + side)),
                    });
                }
            }
            tags.etag = format!("MTB{:08x}", n as u32);
        }
        850..900 => {
            d.device.status = Some(StatusValue {
                status: Status::Disabled,
                reason: Some(format!("disabled during outage by hub {side}")),
            });
            tags.etag = format!("MTC{:08x}", n as u32);
        }
        900..950 => {
            d.device.desired.remove("thresholds");
            twin(tags);
        }
        _ => {
            // A scalar where the base has an object.
            d.device.desired.insert("firmware".into(), json!("4.3.0"));
            if let Some(agent) = d.modules.get_mut("$edgeAgent") {
                agent
                    .reported
                    .insert("lastDesiredVersion".into(), json!(n % 90));
            }
            twin(tags);
        }
    }
}

/// Sizes of what [`write`] produced.
pub struct Written {
    /// Devices in the base.
    pub base_devices: usize,
    /// Bytes of the three files.
    pub bytes: [u64; 3],
}

/// Writes `base.jsonl`, `primary.jsonl` and `secondary.jsonl` of a fleet
/// of `n` devices into `dir`.
pub fn write(dir: &Path, n: usize, seed: u64) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let open = |name: &str| -> std::io::Result<BufWriter<File>> {
        Ok(BufWriter::with_capacity(
            1 << 20,
            File::create(dir.join(name))?,
        ))
    };
    let mut base = open("base.jsonl")?;
    let mut hubs = [open("primary.jsonl")?, open("secondary.jsonl")?];
    hubs[0].write_all(b"Warning: 3 devices were skipped: twin too large\n")?;
    let mut line = Vec::with_capacity(8192);
    for i in 0..n {
        let (device, tags) = base_device(seed, i, device_id(i));
        put(&mut base, &mut line, &device, &tags, i)?;
        for (side, hub) in hubs.iter_mut().enumerate() {
            let side = side as u64;
            match fate(seed, i, side) {
                Fate::Deleted => {}
                Fate::Kept => put(hub, &mut line, &device, &tags, i)?,
                Fate::Edited => {
                    let (mut d, mut t) = (device.clone(), tags.clone());
                    edit(seed, i, side, &mut d, &mut t);
                    put(hub, &mut line, &d, &t, i)?;
                }
            }
        }
        // Creations sort right after the base device they are named after.
        let both = permille(seed, i, 500) < 1;
        for (side, hub) in hubs.iter_mut().enumerate() {
            let side = side as u64;
            let own = permille(seed, i, 510 + side) < 3 + 7 * side;
            if both {
                let (mut d, t) =
                    base_device(seed ^ (side + 1), i, format!("{}-both", device_id(i)));
                d.device.tags.insert("createdBy".into(), json!(side));
                put(hub, &mut line, &d, &t, i)?;
            }
            if own {
                let (d, t) = base_device(seed ^ 0xC0FFEE, i, format!("{}-new{side}", device_id(i)));
                put(hub, &mut line, &d, &t, i)?;
            }
        }
    }
    let [primary, secondary] = hubs;
    let mut bytes = [0; 3];
    for (slot, mut w) in bytes.iter_mut().zip([base, primary, secondary]) {
        w.flush()?;
        *slot = w.get_ref().metadata()?.len();
    }
    Ok(Written {
        base_devices: n,
        bytes,
    })
}

/// Writes a device and its modules; in a third of the devices with
/// modules, the first module line comes before the device line.
fn put(
    w: &mut impl Write,
    line: &mut Vec<u8>,
    d: &DeviceSnapshot,
    tags: &Tags,
    i: usize,
) -> std::io::Result<()> {
    line.clear();
    write_device(line, d, tags.of())?;
    let ends: Vec<usize> = line
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(n, _)| n + 1)
        .take(2)
        .collect();
    match ends.as_slice() {
        [device, module] if i % 3 == 0 => {
            w.write_all(&line[*device..*module])?;
            w.write_all(&line[..*device])?;
            w.write_all(&line[*module..])
        }
        _ => w.write_all(line),
    }
}
