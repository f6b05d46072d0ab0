//! Arbitrary bytes into the replica state-file reader (plain or gzip):
//! either a typed error on one line, or a replica whose state file reads
//! back to the same replica and is a fixed point, plain and compressed.
#![no_main]

use failback::replica::{Replica, read_state, write_state, write_state_gzip};
use libfuzzer_sys::fuzz_target;

fn written(replica: &Replica) -> Vec<u8> {
    let mut out = Vec::new();
    write_state(&mut out, replica).expect("writing to a Vec");
    out
}

fuzz_target!(|data: &[u8]| {
    let replica = match read_state(data, "fuzz.json") {
        Ok(replica) => replica,
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "{shown:?}");
            return;
        }
    };
    let bytes = written(&replica);
    let again = match read_state(bytes.as_slice(), "rewritten.json") {
        Ok(again) => again,
        Err(e) => panic!(
            "the writer wrote what the reader rejects: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    assert_eq!(
        again, replica,
        "the state file read back is another replica"
    );
    assert_eq!(
        written(&again),
        bytes,
        "the state file is not a fixed point"
    );
    let mut gz = Vec::new();
    write_state_gzip(&mut gz, &replica).expect("writing to a Vec");
    let from_gz = read_state(gz.as_slice(), "rewritten.json.gz").expect("its own gzip");
    assert_eq!(written(&from_gz), bytes, "gzip changed the state");
});
