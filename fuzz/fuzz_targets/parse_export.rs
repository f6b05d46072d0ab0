//! Arbitrary bytes into the export reader: either a typed error, or a file
//! that the canonical writer writes back and the reader re-reads to the same
//! snapshots, with the same twin etags, and whose canonical form is a fixed
//! point of writing and reading. The same bytes read as registry
//! identities give either a typed error or devices that, written as export
//! lines, re-read to the same snapshots.
//!
//! A device line in a mode that writes no identity (`delete`,
//! `updateTwin`, ...) may lack `status`; the writer writes such a device as
//! an `updateTwin` line, which needs none
//! (`tests/suite/fuzz_regressions.rs`, `status_less_device_line_round_trips`).
#![no_main]

use failback::format::{
    DeviceFile, ExportReader, IdentityReader, collect_export, collect_identities, write_device,
};
use libfuzzer_sys::fuzz_target;

fn write(file: &DeviceFile) -> Vec<u8> {
    let mut out = Vec::new();
    for device in file.devices.values() {
        write_device(&mut out, &device.snapshot, device.etags()).expect("writing to a Vec");
    }
    out
}

fn reread(bytes: &[u8]) -> DeviceFile {
    match collect_export(ExportReader::new(bytes, "rewritten.jsonl")) {
        Ok(file) => file,
        Err(e) => panic!(
            "the writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fn identities(data: &[u8]) {
    match collect_identities(IdentityReader::new(data, "fuzz.json")) {
        Ok(file) => {
            let again = reread(&write(&file));
            for (id, device) in &file.devices {
                assert_eq!(
                    again.devices[id].snapshot, device.snapshot,
                    "identity {id:?}"
                );
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    identities(data);
    let file = match collect_export(ExportReader::new(data, "fuzz.jsonl")) {
        Ok(file) => file,
        Err(e) => {
            // A typed error that displays on one line.
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
            return;
        }
    };
    let written = write(&file);
    let again = reread(&written);
    assert_eq!(
        file.devices.keys().collect::<Vec<_>>(),
        again.devices.keys().collect::<Vec<_>>()
    );
    for (id, device) in &file.devices {
        let back = &again.devices[id];
        assert_eq!(back.snapshot, device.snapshot, "device {id:?} changed");
        assert_eq!(
            back.meta.twin_etag, device.meta.twin_etag,
            "twin etag of {id:?}"
        );
        assert_eq!(
            back.modules.keys().collect::<Vec<_>>(),
            device.modules.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(again.skipped, 0, "the writer wrote a line the reader skips");
    // The canonical form is stable: writing what was re-read changes only
    // eTags that kept a further pair of quotes.
    let twice = reread(&write(&again));
    for (id, device) in &again.devices {
        assert_eq!(twice.devices[id].snapshot, device.snapshot);
    }
});
