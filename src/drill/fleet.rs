//! Realistic simulated devices: ids, keys, thumbprints, tags, desired and
//! reported properties, and edge devices with their system modules.
//!
//! Every value a drill *writes* carries a number unique within its device,
//! so the checks can tell which write a value in the merged state came
//! from. Initial content is drawn from the seed and looks like a real
//! fleet's.

use serde_json::{Value, json};

use super::paths;
use super::rng::Rng;
use crate::doc::{
    AuthType, Authentication, DeviceSnapshot, Entity, JsonMap, Secret, Status, StatusValue,
    SymmetricKey, X509Thumbprint,
};

/// The id of device number `index`: `dev-000123`, zero-padded to `width`.
pub fn device_id(index: u64, width: usize) -> String {
    format!("dev-{index:0width$}")
}

pub(crate) use crate::reconcile::SYSTEM_MODULES;

/// Draws device content and unique write values for one device.
pub(crate) struct Gen<'a> {
    /// The device's random stream.
    pub rng: &'a mut Rng,
    /// The device's counter of unique values.
    pub next: &'a mut u64,
}

impl Gen<'_> {
    /// A number never drawn before for this device.
    pub(super) fn unique(&mut self) -> u64 {
        *self.next += 1;
        *self.next
    }

    fn sas_key(&mut self) -> Secret {
        Secret::from_key_bytes(&self.rng.bytes(32))
    }

    fn thumbprint(&mut self) -> Secret {
        let hex: String = self
            .rng
            .bytes(20)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Secret::new(&hex)
    }

    /// Fresh authentication: SAS keys mostly, self-signed thumbprints for
    /// some devices.
    pub(super) fn auth(&mut self, allow_x509: bool) -> Authentication {
        if allow_x509 && self.rng.chance(150) {
            Authentication {
                symmetric_key: Some(SymmetricKey::default()),
                x509_thumbprint: Some(X509Thumbprint {
                    primary_thumbprint: Some(self.thumbprint()),
                    secondary_thumbprint: Some(self.thumbprint()),
                }),
                auth_type: Some(AuthType::SelfSigned),
            }
        } else {
            Authentication::sas(self.sas_key(), self.sas_key())
        }
    }

    /// A key rotation: one slot regenerated, both, or the secondary
    /// promoted and a new secondary drawn; always a new whole value.
    pub(super) fn rotate(&mut self, old: &Authentication) -> Authentication {
        let mut new = old.clone();
        let how = self.rng.below(3);
        if let Some(keys) = new
            .symmetric_key
            .as_mut()
            .filter(|k| k.primary_key.is_some())
        {
            match how {
                0 => keys.secondary_key = Some(self.sas_key()),
                1 => {
                    keys.primary_key = Some(self.sas_key());
                    keys.secondary_key = Some(self.sas_key());
                }
                _ => {
                    keys.primary_key = keys.secondary_key.take();
                    keys.secondary_key = Some(self.sas_key());
                }
            }
            return new;
        }
        if let Some(prints) = new.x509_thumbprint.as_mut() {
            if how == 0 {
                prints.secondary_thumbprint = Some(self.thumbprint());
            } else {
                prints.primary_thumbprint = Some(self.thumbprint());
                prints.secondary_thumbprint = Some(self.thumbprint());
            }
            return new;
        }
        self.auth(false)
    }

    /// A status with a reason never written before.
    pub(super) fn status(&mut self, status: Status) -> StatusValue {
        let n = self.unique();
        let reason = match status {
            Status::Disabled => {
                let why = ["suspected compromise", "decommissioning", "maintenance"];
                let why = self.rng.pick(&why).copied().unwrap_or("maintenance");
                format!("{why} (ticket {n})")
            }
            Status::Enabled => format!("re-enabled (ticket {n})"),
        };
        StatusValue {
            status,
            reason: Some(reason),
        }
    }

    /// A twin value never written before, shaped like `like` when given.
    pub(super) fn value(&mut self, like: Option<&Value>) -> Value {
        let n = self.unique();
        match like {
            Some(Value::String(s)) => {
                let stem = s.split('#').next().unwrap_or("v");
                let stem: String = stem.chars().take(24).collect();
                json!(format!("{stem}#{n}"))
            }
            Some(Value::Array(_)) => json!([format!("pool-{n}.example.net"), "time.example.net"]),
            Some(Value::Bool(_)) | None if self.rng.chance(300) => json!(format!("v#{n}")),
            _ => json!(1_000_000 + n),
        }
    }

    /// A property name never used before in this device.
    pub(super) fn key(&mut self) -> String {
        let stems = ["feature", "limit", "mode", "profile", "window", "zone"];
        let stem = self.rng.pick(&stems).copied().unwrap_or("k");
        format!("{stem}{}", self.unique())
    }

    fn tags(&mut self) -> JsonMap {
        let r = &mut *self.rng;
        let mut t = json!({
            "site": format!("plant-{:02}", r.below(40)),
            "env": if r.chance(800) { "prod" } else { "staging" },
            "owner": {"team": format!("team-{}", r.below(12)), "costCenter": r.range(1000, 9999)},
        });
        if r.chance(500) {
            t["location"] = json!({"building": format!("B{}", r.below(9)), "floor": r.below(6)});
        }
        t.as_object().cloned().unwrap_or_default()
    }

    fn desired(&mut self) -> JsonMap {
        let r = &mut *self.rng;
        let groups = [
            json!({"fw": {"version": format!("2.{}.{}", r.below(9), r.below(20)), "channel": "stable"}}),
            json!({"telemetry": {"interval": 5 * (1 + r.below(12)), "batch": {"size": 10 * (1 + r.below(5)), "maxAgeSec": 60}}}),
            json!({"thresholds": {"temperature": {"high": 60 + r.below(30), "low": -(r.below(20) as i64)}, "humidity": {"high": 70 + r.below(25)}}}),
            json!({"logLevel": if r.chance(800) { "info" } else { "debug" }}),
            json!({"ntp": ["0.pool.ntp.org", "1.pool.ntp.org"]}),
            json!({"maintenance": {"window": {"start": "02:00", "hours": 1 + r.below(4)}, "autoReboot": r.chance(500)}}),
        ];
        self.merge_some(&groups, 4)
    }

    fn reported(&mut self) -> JsonMap {
        let r = &mut *self.rng;
        let groups = [
            json!({"fw": {"version": format!("2.{}.{}", r.below(9), r.below(20)), "state": "idle"}}),
            json!({"telemetry": {"interval": 5 * (1 + r.below(12)), "sent": r.below(1_000_000)}}),
            json!({"battery": {"level": r.below(101), "charging": r.chance(300)}}),
            json!({"net": {"rssi": -(40 + r.below(60) as i64), "ip": format!("10.{}.{}.{}", r.below(256), r.below(256), 1 + r.below(254)), "type": "wifi"}}),
            json!({"uptimeSec": r.below(10_000_000)}),
            json!({"sensors": {"temperature": {"unit": "C", "value": r.below(400) as f64 / 10.0}}}),
        ];
        self.merge_some(&groups, 4)
    }

    fn merge_some(&mut self, groups: &[Value], at_least: u64) -> JsonMap {
        let n = groups.len() as u64;
        let take = at_least + self.rng.below(n.saturating_sub(at_least) + 1);
        let mut out = JsonMap::new();
        for (i, group) in groups.iter().enumerate() {
            // Keep group i with probability take/n.
            if self.rng.below(n) < take || i == 0 {
                if let Some(obj) = group.as_object() {
                    out.extend(obj.clone());
                }
            }
        }
        out
    }

    /// One module of an edge device.
    pub(super) fn module(&mut self, module_id: &str) -> Entity {
        let n = self.unique();
        let (desired, reported) = match module_id {
            "$edgeAgent" => (
                json!({"schemaVersion": "1.1", "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25"}}}),
                json!({"runtime": {"platform": {"os": "linux", "architecture": "x86_64"}}, "lastDesiredVersion": n}),
            ),
            "$edgeHub" => (
                json!({"schemaVersion": "1.1", "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}}),
                json!({"clients": {"count": self.rng.below(40)}, "lastDesiredVersion": n}),
            ),
            _ => (
                json!({"interval": 10 * (1 + self.rng.below(6)), "threshold": n}),
                json!({"status": "running", "messages": self.rng.below(100_000)}),
            ),
        };
        Entity {
            authentication: Some(self.auth(false)),
            desired: desired.as_object().cloned().unwrap_or_default().into(),
            reported: reported.as_object().cloned().unwrap_or_default().into(),
            ..Entity::default()
        }
    }

    /// A whole new device: provisioned for the first time, or re-created
    /// after a delete (it starts empty of the old one: new keys, new twin).
    pub(super) fn device(&mut self, id: &str) -> DeviceSnapshot {
        let edge = self.rng.chance(200);
        let disabled = self.rng.chance(80);
        let status = if disabled {
            self.status(Status::Disabled)
        } else {
            StatusValue {
                status: Status::Enabled,
                reason: None,
            }
        };
        let mut device = Entity {
            status: Some(status),
            authentication: Some(self.auth(!edge)),
            capabilities: Some(json!({"iotEdge": edge})),
            tags: self.tags().into(),
            desired: self.desired().into(),
            reported: self.reported().into(),
            ..Entity::default()
        };
        let mut snapshot = DeviceSnapshot {
            id: id.to_owned(),
            ..DeviceSnapshot::default()
        };
        if edge {
            let n = self.unique();
            device.device_scope = Some(format!("ms-azure-iot-edge://{id}-{n}"));
            for m in SYSTEM_MODULES {
                snapshot.modules.insert(m.to_owned(), self.module(m));
            }
            if self.rng.chance(600) {
                let name = if self.rng.chance(500) {
                    "tempSensor"
                } else {
                    "filter"
                };
                snapshot.modules.insert(name.to_owned(), self.module(name));
            }
        }
        snapshot.device = device;
        snapshot
    }

    /// A module name never used before in this device.
    pub(super) fn module_name(&mut self) -> String {
        format!("module{}", self.unique())
    }

    /// Picks a leaf of `map` to overwrite, or a new path to add.
    pub(super) fn leaf_to_write(&mut self, map: &JsonMap) -> Vec<String> {
        let leaves = paths::leaf_refs(map);
        if !leaves.is_empty() && self.rng.chance(700) {
            // Hot leaves first: concurrent writes to one leaf are the
            // conflicts worth rehearsing.
            let hot = leaves.len().min(3) as u64;
            let i = if self.rng.chance(500) {
                self.rng.below(hot)
            } else {
                self.rng.below(leaves.len() as u64)
            };
            if let Some((path, _)) = leaves.get(i as usize) {
                return paths::owned(path);
            }
        }
        let objects = paths::objects(map);
        let mut path = match self.rng.pick(&objects) {
            Some((p, _)) if self.rng.chance(600) => p.clone(),
            _ => Vec::new(),
        };
        path.push(self.key());
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_look_real_and_repeat_from_the_seed() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            let mut next = 0;
            let mut g = Gen {
                rng: &mut rng,
                next: &mut next,
            };
            (0..50)
                .map(|i| g.device(&device_id(i, 6)))
                .collect::<Vec<_>>()
        };
        let fleet = draw(3);
        assert_eq!(fleet, draw(3));
        assert_eq!(fleet[7].id, "dev-000007");
        assert!(fleet.iter().any(|d| d.modules.contains_key("$edgeAgent")));
        for d in &fleet {
            let leaves = paths::leaves(&d.device.desired).len();
            assert!((4..=16).contains(&leaves), "{leaves}");
            assert!(d.device.authentication.is_some());
            assert!(d.modules.values().all(|m| m.authentication.is_some()));
        }
    }

    #[test]
    fn rotations_always_give_a_new_whole_value() {
        let mut rng = Rng::new(5);
        let mut next = 0;
        let mut g = Gen {
            rng: &mut rng,
            next: &mut next,
        };
        let mut auth = g.auth(true);
        for _ in 0..20 {
            let new = g.rotate(&auth);
            assert_ne!(new, auth);
            auth = new;
        }
    }
}
