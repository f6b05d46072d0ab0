//! Arbitrary bytes into the event reader: each line is either a typed error
//! on one line, or an event that the canonical writer writes back and the
//! reader re-reads to the same event, writing that again giving the same
//! bytes. The events read are then ingested into a replica whose state
//! file reads back to the same replica and the same bytes.
//!
//! The reader tells the envelope from the bytes, so this target covers
//! every one: JSON records of the canonical, storage-routing,
//! monitor-events, Event Grid and CloudEvents envelopes by their keys, and
//! Avro object container files (storage routing, Event Hubs Capture) by
//! their magic `Obj\x01`, the Avro mode of this target (seeds written by
//! `tests/suite/envelopes.rs`, `write_avro_fuzz_seeds`). Whatever the envelope,
//! the event must write back canonically and re-read as the same event.
//!
//! Each line is also read both ways a JSON record can be read, in one
//! pass and the checked way (`parse_event_record_checked`): the same
//! event or the same error. And the whole input is read again as a
//! replica holds events (`EventReader::held`: twins checked, not built):
//! the same error, or the same event without its twin, for every record,
//! and a replica fed those is the same replica.
#![no_main]

use failback::ReplicaId;
use failback::format::{
    EventReader, parse_event_line, parse_event_record, parse_event_record_checked, write_event_line,
};
use failback::replica::{Replica, read_state};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            let once = parse_event_record("fuzz.jsonl", n, line, None);
            let checked = parse_event_record_checked("fuzz.jsonl", n, line, None);
            match (&once, &checked) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{line}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{line}"),
                _ => panic!("{line}: {once:?} against {checked:?}"),
            }
        }
    }
    let mut replica = Replica::new(ReplicaId::new("fuzz").expect("valid literal"));
    let mut held_replica = replica.clone();
    let mut held = EventReader::new(data, "fuzz.jsonl").held();
    for event in EventReader::new(data, "fuzz.jsonl") {
        match (&event, held.next()) {
            (Err(a), Some(Err(b))) => assert_eq!(a.to_string(), b.to_string()),
            (Ok(full), Some(Ok(held))) => {
                assert!(held.twin.is_none());
                assert_eq!(held.version(), full.version());
                let (mut a, mut b) = (Vec::new(), Vec::new());
                write_event_line(&mut a, full).expect("writing to a Vec");
                write_event_line(&mut b, &held).expect("writing to a Vec");
                assert_eq!(a, b, "a held event is not the event read in full");
                let _ = held_replica.ingest(held);
            }
            (full, held) => panic!("read in full {full:?}, held {held:?}"),
        }
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let shown = e.to_string();
                assert!(!shown.contains('\n'), "{shown:?}");
                continue;
            }
        };
        let mut written = Vec::new();
        write_event_line(&mut written, &event).expect("writing to a Vec");
        let text = String::from_utf8(written.clone()).expect("the writer writes UTF-8");
        let again = match parse_event_line("rewritten.jsonl", event.line, text.trim_end()) {
            Ok(again) => again,
            Err(e) => panic!("the writer wrote what the reader rejects: {e}\n{text}"),
        };
        assert_eq!(again, event, "the event changed on a round trip");
        let mut rewritten = Vec::new();
        write_event_line(&mut rewritten, &again).expect("writing to a Vec");
        assert_eq!(rewritten, written, "the event writer is not canonical");
        // An id reused with another payload is refused; nothing else is.
        let _ = replica.ingest(event);
    }
    assert!(held.next().is_none(), "the held reading reads more events");
    assert!(held_replica == replica, "held events gave another replica");
    let bytes = replica.to_bytes();
    let back = match read_state(bytes.as_slice(), "state.json") {
        Ok(back) => back,
        Err(e) => panic!(
            "the state writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert!(back == replica, "the replica changed on a round trip");
    assert_eq!(back.to_bytes(), bytes, "the state writer is not canonical");
});
