//! Arbitrary bytes into the twin reader: either a typed error, or a file
//! that the twin writer writes back and the reader re-reads to the same
//! snapshots, etags, versions and times, and writing that again gives the
//! same bytes.
#![no_main]

use failback::format::{DeviceFile, TwinReader, collect_twins, write_twin_device};
use libfuzzer_sys::fuzz_target;

fn write(file: &DeviceFile) -> Vec<u8> {
    let mut out = Vec::new();
    for device in file.devices.values() {
        write_twin_device(&mut out, device).expect("writing to a Vec");
    }
    out
}

fn reread(bytes: &[u8]) -> DeviceFile {
    match collect_twins(TwinReader::new(bytes, "rewritten.jsonl")) {
        Ok(file) => file,
        Err(e) => panic!(
            "the writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let file = match collect_twins(TwinReader::new(data, "fuzz.jsonl")) {
        Ok(file) => file,
        Err(e) => {
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
        let (mine, theirs) = (&device.meta, &back.meta);
        assert_eq!(
            (&theirs.etag, &theirs.twin_etag, theirs.version),
            (&mine.etag, &mine.twin_etag, mine.version),
            "twin of {id:?}"
        );
        assert_eq!(back.times, device.times, "times of {id:?}");
        assert_eq!(back.modules.len(), device.modules.len());
        for (module, mine) in &device.modules {
            let theirs = &back.modules[module];
            assert_eq!(
                (&theirs.etag, &theirs.twin_etag, theirs.version),
                (&mine.etag, &mine.twin_etag, mine.version),
                "twin of module {id:?}/{module:?}"
            );
        }
    }
    assert_eq!(again.skipped, 0, "the writer wrote a line the reader skips");
    assert_eq!(write(&again), written, "the twin writer is not canonical");
});
