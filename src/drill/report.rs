//! What a drill reports: the human table, `report.json` and a one-page
//! `report.html` with an SVG timeline. Everything here is a function of
//! the seed; wall-clock times appear only in the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::failback::PlanCounts;
use super::invariants::{ALL, Accounting, Findings};
use super::oracle::Hub;
use super::sim::{BUCKETS, Cycle, WriteCounts};
use super::{DrillConfig, PhaseTimes};

/// How many devices a drill had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Devices in the initial fleet.
    pub initial: u64,
    /// Devices provisioned during the drill (a concurrent creation on both
    /// hubs counts twice).
    pub provisioned: u64,
    /// Devices alive after the last failback.
    pub final_devices: u64,
    /// Their modules.
    pub final_modules: u64,
}

impl DeviceCounts {
    pub(crate) fn add(&mut self, o: &DeviceCounts) {
        self.initial += o.initial;
        self.provisioned += o.provisioned;
        self.final_devices += o.final_devices;
        self.final_modules += o.final_modules;
    }
}

/// The result of a drill, a pure function of its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was rehearsed.
    pub config: DrillConfig,
    /// Each cycle's timeline.
    pub cycles: Vec<Cycle>,
    /// Fleet size.
    pub devices: DeviceCounts,
    /// Writes per hub, per kind and over time.
    pub writes: WriteCounts,
    /// Conflict records per rule, over all cycles.
    pub conflicts: BTreeMap<&'static str, u64>,
    /// Merge outcomes per kind, over all cycles.
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Plan sizes.
    pub plans: PlanCounts,
    /// Cloud-to-device messages and jobs.
    pub queues: super::QueueCounts,
    /// The concierge's epochs in each cycle.
    pub concierge: Vec<super::ConciergeCycle>,
    /// Continuous replication: events, and the RPO loss with the export
    /// backup and with the event replica.
    pub replication: super::ReplicationCounts,
    /// How the hubs' files went at each failback: refusals for keys no
    /// input knew, and hubs exported again with keys.
    pub formats: super::FormatCounts,
    /// How every written value was accounted for.
    pub accounting: Accounting,
    /// Violations per invariant.
    pub findings: Findings,
}

fn minutes(ms: i64) -> String {
    format!("{:.1} min", ms as f64 / 60_000.0)
}

fn rfc3339(ms: i64) -> String {
    crate::Stamp::new(ms, 0, crate::ReplicaId::new("t").expect("valid literal"))
        .to_rfc3339()
        .unwrap_or_else(|| ms.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.findings.all_hold()
    }

    /// The names of the invariants that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        ALL.iter()
            .filter(|i| self.findings.count(**i) > 0)
            .map(|i| i.name)
            .collect()
    }

    /// Plan lines per hub.
    fn plan_lines(&self, hub: Hub) -> u64 {
        self.plans
            .lines
            .iter()
            .filter(|((h, _), _)| *h == hub.name())
            .map(|(_, n)| n)
            .sum()
    }

    /// `report.json`: the configuration, counts, timelines and invariants;
    /// no wall-clock time, so the same seed gives the same bytes.
    pub fn to_json(&self) -> String {
        let c = &self.config;
        let cycles: Vec<Value> = self
            .cycles
            .iter()
            .enumerate()
            .map(|(i, cy)| {
                json!({
                    "cycle": i + 1,
                    "start": rfc3339(cy.start),
                    "backup": rfc3339(cy.backup),
                    "restore": rfc3339(cy.restore),
                    "fail": rfc3339(cy.fail),
                    "failback": rfc3339(cy.failback),
                    "rpoWindowMs": cy.fail - cy.backup,
                    "lostWindowMs": cy.fail - cy.restore,
                    "outageMs": cy.failback - cy.fail,
                    "splitBrain": cy.split_brain,
                    "replicationLagMs": cy.replication_lag,
                    "skew": cy.skew.map(|(h, ms)| json!({"hub": h.name(), "ms": ms})),
                    "interrupted": {"hub": cy.interrupt.name(), "atPermille": cy.interrupt_permille},
                    "exportFormats": self.formats_json(i, cy),
                    "concierge": self.concierge.get(i),
                    "timeline": self.writes.timeline.get(i).map(|t| {
                        let lane = |k: usize| t.iter().map(|b| b[k]).collect::<Vec<u64>>();
                        json!({"primary": lane(0), "primaryLost": lane(1), "secondary": lane(2)})
                    }),
                })
            })
            .collect();
        let mut plans = serde_json::Map::new();
        for ((hub, action), n) in &self.plans.lines {
            let entry = plans.entry(hub.to_string()).or_insert_with(|| json!({}));
            entry[*action] = json!(n);
        }
        let invariants: Vec<Value> = ALL
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "summary": i.summary,
                    "holds": self.findings.count(*i) == 0,
                    "violations": self.findings.count(*i),
                    "examples": self.findings.examples(*i).iter().map(|v| json!({
                        "cycle": v.cycle, "device": v.device, "detail": v.detail,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let w = &self.writes;
        let a = &self.accounting;
        let report = json!({
            "seed": c.seed,
            "command": c.command(),
            "config": {
                "devices": c.devices,
                "rpoMs": c.rpo_ms,
                "splitBrain": c.split_brain,
                "skewMs": c.skew_ms,
                "cycles": c.cycles,
                "replication": c.replication.as_str(),
                "exportFormats": c.export_formats.as_str(),
            },
            "passed": self.passed(),
            "devices": {
                "initial": self.devices.initial,
                "provisioned": self.devices.provisioned,
                "final": self.devices.final_devices,
                "finalModules": self.devices.final_modules,
            },
            "writes": {
                "primary": {
                    "inBackup": w.primary_backed_up,
                    "rpoWindowKept": w.primary_rpo_kept,
                    "lostWithRegion": w.primary_lost,
                    "splitBrain": w.primary_split,
                },
                "secondary": w.secondary,
                "byKind": w.kinds,
                "timelineBuckets": BUCKETS,
            },
            "rpoLoss": self.rpo_loss_json(),
            "replication": self.replication_json(),
            "values": {
                "inMerged": a.merged,
                "conflictLosers": a.conflict_losers,
                "superseded": a.superseded,
                "unchangedFromBackup": a.unchanged,
                "rpoLost": a.rpo_lost,
                "notShownByFile": a.unshown,
            },
            "conflicts": self.conflicts,
            "outcomes": self.outcomes,
            "plans": {"lines": plans, "resumedLines": self.plans.resumed},
            "queues": self.queues.to_json(),
            "cycles": cycles,
            "invariants": invariants,
        });
        let mut out = serde_json::to_string_pretty(&report).unwrap_or_default();
        out.push('\n');
        out
    }

    /// The file each hub's state was read from in cycle `i`, and how the
    /// merges of the shards went with them.
    fn formats_json(&self, i: usize, cy: &Cycle) -> Value {
        let counts = self.formats.cycles.get(i).copied().unwrap_or_default();
        let mut out = json!({
            "shards": counts.shards,
            "refusedShards": counts.refused,
            "refusedKeylessLines": counts.keyless_lines,
        });
        for h in Hub::BOTH {
            out[h.name()] = json!({
                "format": cy.formats[h.index()].name(),
                "reexportedWithKeys": counts.reexported[h.index()],
            });
        }
        out
    }

    /// The RPO loss of the run, and with events, what the export backup
    /// alone would have lost beside it.
    fn rpo_loss_json(&self) -> Value {
        let r = &self.replication;
        let loss = |l: &super::Loss| json!({"writes": l.writes, "values": l.values});
        let mut out = json!({
            "writes": self.writes.primary_lost,
            "values": self.accounting.rpo_lost,
            "exportBackup": loss(&r.lost_export),
        });
        if self.config.replication.uses_events() {
            out["eventReplica"] = json!({
                "writes": r.lost_events.writes,
                "values": r.lost_events.values,
                "inFlight": loss(&r.lost_in_flight),
                "noEvent": loss(&r.lost_no_event),
                "keysUnknown": loss(&r.lost_keyless),
            });
        }
        out
    }

    fn replication_json(&self) -> Value {
        let r = &self.replication;
        let mut out = json!({"mode": self.config.replication.as_str()});
        if self.config.replication.uses_events() {
            out["events"] = json!({
                "emitted": r.events,
                "delivered": r.delivered,
                "duplicates": r.duplicates,
                "inFlightAtFailover": r.in_flight,
                "byEnvelope": r.envelopes,
            });
            out["devices"] = json!({
                "seededFromReplica": r.seeded,
                "keptBackupKeysUnknown": r.keyless,
            });
        }
        out
    }

    /// The human summary; with `times`, the time per phase too.
    pub fn table(&self, times: Option<&PhaseTimes>) -> String {
        let mut t = String::new();
        let c = &self.config;
        let w = &self.writes;
        let _ = writeln!(t, "seed {}  ({})", c.seed, c.command());
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<34} {v}");
        };
        let _ = writeln!(t, "fleet");
        row(
            &mut t,
            "devices (initial / provisioned)",
            format!("{} / {}", self.devices.initial, self.devices.provisioned),
        );
        row(
            &mut t,
            "devices after failback (modules)",
            format!(
                "{} ({})",
                self.devices.final_devices, self.devices.final_modules
            ),
        );
        let _ = writeln!(t, "writes");
        row(
            &mut t,
            "primary, in the backup",
            w.primary_backed_up.to_string(),
        );
        row(
            &mut t,
            "primary, RPO window, kept",
            w.primary_rpo_kept.to_string(),
        );
        row(
            &mut t,
            "primary, lost with its region",
            format!(
                "{}  <- RPO loss: data the platform lost ({} values)",
                w.primary_lost, self.accounting.rpo_lost
            ),
        );
        let r = &self.replication;
        row(
            &mut t,
            "RPO loss, export backup",
            format!(
                "{} writes ({} values)",
                r.lost_export.writes, r.lost_export.values
            ),
        );
        if c.replication.uses_events() {
            row(
                &mut t,
                "RPO loss, event replica",
                format!(
                    "{} writes ({} values): {} in flight, {} keys (no event), {} of devices with unknown keys",
                    r.lost_events.writes,
                    r.lost_events.values,
                    r.lost_in_flight.writes,
                    r.lost_no_event.writes,
                    r.lost_keyless.writes
                ),
            );
        }
        row(&mut t, "primary, split brain", w.primary_split.to_string());
        row(
            &mut t,
            "secondary, during the outage",
            w.secondary.to_string(),
        );
        if c.replication.uses_events() {
            let _ = writeln!(t, "replication from events ({})", c.replication);
            let lags: Vec<String> = self
                .cycles
                .iter()
                .filter_map(|cy| cy.replication_lag)
                .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                .collect();
            row(&mut t, "lag per cycle", lags.join(", "));
            row(
                &mut t,
                "events (delivered, duplicates)",
                format!("{} ({}, {})", r.events, r.delivered, r.duplicates),
            );
            row(
                &mut t,
                "in flight at failover (lost)",
                r.in_flight.to_string(),
            );
            let envelopes: Vec<String> = r
                .envelopes
                .iter()
                .map(|(e, n)| format!("{e} {n}"))
                .collect();
            row(&mut t, "records per envelope", envelopes.join(", "));
            row(
                &mut t,
                "devices seeded from the replica",
                format!("{} ({} kept the backup: keys unknown)", r.seeded, r.keyless),
            );
        }
        let _ = writeln!(
            t,
            "export formats ({}: primary, secondary)",
            c.export_formats
        );
        for (i, cy) in self.cycles.iter().enumerate() {
            let counts = self.formats.cycles.get(i).copied().unwrap_or_default();
            let mut text = format!("{}, {}", cy.formats[0], cy.formats[1]);
            if counts.refused > 0 {
                let again: Vec<String> = Hub::BOTH
                    .iter()
                    .filter(|h| counts.reexported[h.index()] > 0)
                    .map(|h| format!("{} {}", h.name(), counts.reexported[h.index()]))
                    .collect();
                text.push_str(&format!(
                    "; {} of {} shards refused ({} lines without keys no file knew), re-exported with keys: {}",
                    counts.refused,
                    counts.shards,
                    counts.keyless_lines,
                    again.join(", ")
                ));
            }
            row(&mut t, &format!("cycle {}", i + 1), text);
        }
        row(
            &mut t,
            "values no hub's file could show",
            self.accounting.unshown.to_string(),
        );
        let _ = writeln!(t, "concierge (epochs: before, outage, after failback)");
        for (i, cc) in self.concierge.iter().enumerate() {
            let split = cc.split_brain.as_ref().map_or(String::new(), |claims| {
                let claims: Vec<&str> = claims.iter().map(String::as_str).collect();
                format!(", split brain: {} claimed", claims.join(" and "))
            });
            row(
                &mut t,
                &format!("cycle {}", i + 1),
                format!(
                    "{} -> {} -> {}, active {}{split}",
                    cc.epoch_before, cc.epoch_outage, cc.epoch_after, cc.active_after
                ),
            );
        }
        let _ = writeln!(t, "conflicts per rule");
        if self.conflicts.is_empty() {
            row(&mut t, "(none)", String::new());
        }
        for (rule, n) in &self.conflicts {
            row(&mut t, rule, n.to_string());
        }
        let _ = writeln!(t, "plans (import lines)");
        for hub in Hub::BOTH {
            let detail: Vec<String> = self
                .plans
                .lines
                .iter()
                .filter(|((h, _), _)| *h == hub.name())
                .map(|((_, a), n)| format!("{a} {n}"))
                .collect();
            row(
                &mut t,
                hub.name(),
                format!("{}  ({})", self.plan_lines(hub), detail.join(", ")),
            );
        }
        row(
            &mut t,
            "resumed after the interruption",
            self.plans.resumed.to_string(),
        );
        let q = &self.queues;
        let _ = writeln!(t, "cloud-to-device messages and jobs");
        row(
            &mut t,
            "messages (feedback records)",
            format!("{} ({})", q.messages, q.feedback),
        );
        row(
            &mut t,
            "settled / to send / over limit",
            format!("{} / {} / {}", q.settled, q.to_send, q.over_limit),
        );
        row(
            &mut t,
            "expired / unmatched feedback",
            format!("{} / {}", q.expired, q.unmatched),
        );
        row(
            &mut t,
            "jobs (to schedule again)",
            format!("{} ({})", q.jobs, q.rescheduled),
        );
        if let Some(times) = times {
            let _ = writeln!(t, "time per phase (summed over threads)");
            for (k, v) in [
                ("generate", times.generate),
                ("simulate", times.simulate),
                ("failback (merge, plans, apply)", times.failback),
                ("check", times.check),
                ("total (wall clock)", times.total),
            ] {
                row(&mut t, k, format!("{:.2} s", v.as_secs_f64()));
            }
        }
        let _ = writeln!(t, "invariants");
        for i in ALL {
            let n = self.findings.count(*i);
            let verdict = if n == 0 {
                "PASS".to_string()
            } else {
                format!("FAIL ({n})")
            };
            let _ = writeln!(t, "  {verdict:<10} {:<24} {}", i.name, i.summary);
            for v in self.findings.examples(*i) {
                let _ = writeln!(
                    t,
                    "             cycle {} {}: {}",
                    v.cycle, v.device, v.detail
                );
            }
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(t, "{verdict}: seed {}", c.seed);
        t
    }

    /// A one-page HTML report with an inline SVG timeline.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let c = &self.config;
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>failback drill, seed {seed}</title>\n<style>\
body{{font:14px system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}\
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}\
td.n{{text-align:right;font-variant-numeric:tabular-nums}}.pass{{color:#176117;font-weight:bold}}.fail{{color:#b00020;font-weight:bold}}\
code{{background:#f4f4f4;padding:1px 4px}}</style></head><body>\n\
<h1>failback drill — <span class=\"{cls}\">{verdict}</span></h1>\n<p>Seed {seed}. Replay with <code>{cmd}</code>.</p>\n",
            seed = c.seed,
            cls = verdict.to_lowercase(),
            cmd = escape(&c.command()),
        );
        h.push_str("<h2>Timeline</h2>\n");
        h.push_str(&self.timeline_svg());
        h.push_str("<h2>Invariants</h2>\n<table><tr><th>result</th><th>invariant</th><th>what it asserts</th><th>first violations</th></tr>\n");
        for i in ALL {
            let n = self.findings.count(*i);
            let (cls, text) = if n == 0 {
                ("pass", "PASS".to_string())
            } else {
                ("fail", format!("FAIL ({n})"))
            };
            let examples: Vec<String> = self
                .findings
                .examples(*i)
                .iter()
                .take(3)
                .map(|v| escape(&format!("cycle {} {}: {}", v.cycle, v.device, v.detail)))
                .collect();
            let _ = writeln!(
                h,
                "<tr><td class=\"{cls}\">{text}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i.name,
                escape(i.summary),
                examples.join("<br>")
            );
        }
        h.push_str("</table>\n<h2>Summary</h2>\n<table>\n");
        let w = &self.writes;
        let mut rows: Vec<(String, u64)> = vec![
            ("devices, initial".into(), self.devices.initial),
            ("devices, provisioned".into(), self.devices.provisioned),
            ("devices after failback".into(), self.devices.final_devices),
            ("primary writes in the backup".into(), w.primary_backed_up),
            (
                "primary writes in the RPO window, kept".into(),
                w.primary_rpo_kept,
            ),
            (
                "primary writes lost with the region (RPO loss)".into(),
                w.primary_lost,
            ),
            (
                "RPO loss with the export backup (writes)".into(),
                self.replication.lost_export.writes,
            ),
            (
                "RPO loss with the export backup (values)".into(),
                self.replication.lost_export.values,
            ),
            ("primary writes in split brain".into(), w.primary_split),
            ("secondary writes during the outage".into(), w.secondary),
            ("plan lines, primary".into(), self.plan_lines(Hub::Primary)),
            (
                "plan lines, secondary".into(),
                self.plan_lines(Hub::Secondary),
            ),
        ];
        if c.replication.uses_events() {
            let r = &self.replication;
            rows.extend([
                (
                    "RPO loss with the event replica (writes)".into(),
                    r.lost_events.writes,
                ),
                (
                    "RPO loss with the event replica (values)".into(),
                    r.lost_events.values,
                ),
                ("events emitted by the primary".into(), r.events),
                ("events in flight at failover (lost)".into(), r.in_flight),
                ("devices seeded from the event replica".into(), r.seeded),
            ]);
        }
        for (k, v) in rows {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{v}</td></tr>",
                escape(&k)
            );
        }
        h.push_str("</table>\n<h2>Conflicts per rule</h2>\n");
        h.push_str(&self.conflicts_svg());
        h.push_str("</body></html>\n");
        h
    }

    fn timeline_svg(&self) -> String {
        let (width, height, top, bottom) = (960.0_f64, 220.0_f64, 20.0_f64, 180.0_f64);
        let n = self.cycles.len().max(1) as f64;
        let panel = width / n;
        let max = self
            .writes
            .timeline
            .iter()
            .flatten()
            .map(|b| b.iter().sum::<u64>())
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\" font-size=\"11\">",
            height + 30.0,
            height + 30.0
        );
        for (i, cy) in self.cycles.iter().enumerate() {
            let x0 = i as f64 * panel + 4.0;
            let w = panel - 8.0;
            let span = (cy.failback - cy.start).max(1) as f64;
            let x = |t: i64| x0 + (t - cy.start) as f64 / span * w;
            let band = |s: &mut String, from: i64, to: i64, fill: &str, label: &str| {
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{}\" fill=\"{fill}\"><title>{label}</title></rect>",
                    x(from),
                    (x(to) - x(from)).max(1.0),
                    bottom - top
                );
            };
            band(
                &mut s,
                cy.fail,
                cy.failback,
                "#eeeeee",
                "outage: the secondary is active",
            );
            band(
                &mut s,
                cy.backup,
                cy.fail,
                "#fff3c4",
                "RPO window: after the last backup",
            );
            if cy.restore < cy.fail {
                band(
                    &mut s,
                    cy.restore,
                    cy.fail,
                    "#ffd0d0",
                    "lost with the region",
                );
            }
            if let Some(lag) = cy.replication_lag {
                // The events of the writes in this band may still be in
                // flight at the failure: the event replica's loss window.
                let _ = writeln!(
                    s,
                    "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"8\" fill=\"#1b8a5a\"><title>replication lag: {:.1} s before the failure, events may still be in flight</title></rect>",
                    x(cy.fail - lag),
                    bottom - 8.0,
                    (x(cy.fail) - x(cy.fail - lag)).max(2.0),
                    lag as f64 / 1000.0
                );
            }
            let bucket_w = w / BUCKETS as f64;
            if let Some(buckets) = self.writes.timeline.get(i) {
                for (b, lanes) in buckets.iter().enumerate() {
                    let mut y = bottom;
                    for (lane, color) in [(0, "#3866c4"), (1, "#d2302c"), (2, "#f08c00")] {
                        let hgt = lanes[lane] as f64 / max * (bottom - top);
                        if hgt > 0.0 {
                            y -= hgt;
                            let _ = writeln!(
                                s,
                                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{hgt:.1}\" fill=\"{color}\"/>",
                                x0 + b as f64 * bucket_w + 0.5,
                                (bucket_w - 1.0).max(0.5)
                            );
                        }
                    }
                }
            }
            // Backup and failure are often a minute apart: label the
            // backup left of its line and the failure right of its line.
            for (t, label, anchor, dx) in [
                (cy.backup, "backup", "end", -2.0),
                (cy.fail, "failure", "start", 2.0),
                (cy.failback, "failback", "end", -2.0),
            ] {
                let _ = writeln!(
                    s,
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{bottom}\" stroke=\"#555\" stroke-dasharray=\"3,2\"/><text x=\"{1:.1}\" y=\"{2}\" text-anchor=\"{anchor}\">{label}</text>",
                    x(t),
                    x(t) + dx,
                    top - 6.0
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{x0:.1}\" y=\"{}\">cycle {}: outage {}, RPO window {}, files {}/{}{}{}</text>",
                bottom + 16.0,
                i + 1,
                minutes(cy.failback - cy.fail),
                minutes(cy.fail - cy.backup),
                cy.formats[0],
                cy.formats[1],
                cy.replication_lag.map_or(String::new(), |ms| format!(
                    ", replication lag {:.1} s",
                    ms as f64 / 1000.0
                )),
                if cy.split_brain { ", split brain" } else { "" }
            );
        }
        let _ = writeln!(
            s,
            "<g transform=\"translate(4,{})\"><rect width=\"10\" height=\"10\" fill=\"#3866c4\"/><text x=\"14\" y=\"9\">primary writes</text>\
<rect x=\"120\" width=\"10\" height=\"10\" fill=\"#d2302c\"/><text x=\"134\" y=\"9\">lost with the region</text>\
<rect x=\"270\" width=\"10\" height=\"10\" fill=\"#f08c00\"/><text x=\"284\" y=\"9\">secondary writes</text>\
<rect x=\"400\" width=\"10\" height=\"10\" fill=\"#fff3c4\" stroke=\"#ccc\"/><text x=\"414\" y=\"9\">RPO window</text>\
<rect x=\"500\" width=\"10\" height=\"10\" fill=\"#eeeeee\" stroke=\"#ccc\"/><text x=\"514\" y=\"9\">outage</text>\
<rect x=\"580\" width=\"10\" height=\"10\" fill=\"#1b8a5a\"/><text x=\"594\" y=\"9\">replication lag (events in flight)</text></g>",
            height + 12.0
        );
        s.push_str("</svg>\n");
        s
    }

    fn conflicts_svg(&self) -> String {
        let rows = self.conflicts.len().max(1);
        let max = self.conflicts.values().copied().max().unwrap_or(1).max(1) as f64;
        let height = rows * 22 + 10;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"700\" height=\"{height}\" font-size=\"12\">"
        );
        if self.conflicts.is_empty() {
            s.push_str("<text x=\"4\" y=\"16\">no conflicts</text>\n");
        }
        for (i, (rule, n)) in self.conflicts.iter().enumerate() {
            let y = i * 22 + 4;
            let bar = *n as f64 / max * 450.0;
            let _ = writeln!(
                s,
                "<text x=\"150\" y=\"{}\" text-anchor=\"end\">{rule}</text><rect x=\"160\" y=\"{y}\" width=\"{bar:.1}\" height=\"16\" fill=\"#6b4fbb\"/><text x=\"{:.1}\" y=\"{}\">{n}</text>",
                y + 12,
                165.0 + bar,
                y + 12
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
