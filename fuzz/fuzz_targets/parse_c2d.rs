//! Arbitrary bytes as a cloud-to-device outbox and, after the first NUL
//! byte, as a hub's feedback: each read is either a typed error on one
//! line, which leaves the inputs as they were, or records whose settlement
//! obeys two laws. Reading the same feedback again changes no output byte
//! (feedback is a set), and `to-send.jsonl`, read back as an outbox and
//! settled at the same time, is itself again (the writer writes what the
//! reader takes, canonically, and what it sends is what is due).
#![no_main]

use failback::ReplicaId;
use failback::c2d::{AsOf, Inputs};
use libfuzzer_sys::fuzz_target;

/// 2026-11-28T12:00:00Z.
const AS_OF: AsOf = AsOf::Given(1_795_867_200_000);

fn outputs(inputs: &Inputs) -> [Vec<u8>; 3] {
    let settlement = inputs.settle(AS_OF);
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    settlement
        .write_to_send(&mut out[0])
        .expect("writing to a Vec");
    settlement
        .write_settled(&mut out[1])
        .expect("writing to a Vec");
    settlement
        .write_report(&mut out[2])
        .expect("writing to a Vec");
    out
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (outbox, feedback) = data.split_at(split);
    let feedback = feedback.get(1..).unwrap_or_default();
    let hub = ReplicaId::new("fuzz").expect("valid literal");
    let mut inputs = Inputs::new();
    let empty = outputs(&inputs);
    if let Err(e) = inputs.read_outbox(outbox, "outbox.jsonl") {
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown:?}");
        assert_eq!(outputs(&inputs), empty, "a failed read changed the inputs");
    }
    let before = outputs(&inputs);
    if let Err(e) = inputs.read_feedback(&hub, feedback, "feedback.json") {
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown:?}");
        assert_eq!(outputs(&inputs), before, "a failed read changed the inputs");
    }
    let first = outputs(&inputs);
    // The same feedback again, as another file of the same hub.
    let _ = inputs.read_feedback(&hub, feedback, "again.json");
    assert!(
        outputs(&inputs) == first,
        "the same feedback twice changed the outputs"
    );

    let mut again = Inputs::new();
    if let Err(e) = again.read_outbox(first[0].as_slice(), "to-send.jsonl") {
        panic!(
            "the writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(&first[0])
        );
    }
    assert!(
        outputs(&again)[0] == first[0],
        "to-send.jsonl is not a fixed point"
    );
});
