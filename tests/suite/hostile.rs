//! The hand-made bad inputs of RELIABILITY.md that `tests/formats.rs` does
//! not already feed the readers: a 100 MB line, numbers out of range
//! outside `tags`, stamps far in the future through the whole merge job,
//! duplicate module twins, and invalid UTF-8 in the middle of a file. Each
//! gets its own typed error, naming line, device and field; nothing panics
//! and nothing grows with the input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufReader, Read};
use std::path::PathBuf;

use failback::ReplicaId;
use failback::format::{
    DEFAULT_MAX_LINE, ExportReader, InputFile, ReadError, ReadErrorKind, TwinReader,
    collect_export, collect_twins, read_input,
};
use failback::job::{JobError, MergeJob, run_merge};

// ---------------------------------------------------------------------------
// Memory: a heap counter per thread, so tests running beside each other do
// not count in each other's allocations.

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes, and touch no heap.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most this thread held on the heap while running `f`, beyond what
/// it held before.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(Cell::get) - start)
}

const HUNDRED_MB: u64 = 100 * 1024 * 1024;

/// A line of 100 MB that starts like a device and never ends, then a good
/// line: bytes from a repeating reader, never a 100 MB buffer.
fn endless_line() -> impl Read {
    let start: &[u8] = br#"{"id":"d1","status":"enabled","tags":{"a":""#;
    let good: &[u8] = b"\n{\"id\":\"d2\",\"status\":\"enabled\"}\n";
    start
        .chain(std::io::repeat(b'x').take(HUNDRED_MB))
        .chain(good)
}

#[test]
fn a_100_mb_line_is_cut_at_the_bound_and_reading_goes_on() {
    let ((first, second, rest), peak) = peak_heap(|| {
        let mut reader = ExportReader::new(BufReader::new(endless_line()), "huge.jsonl");
        let first = reader
            .next()
            .map(|r| r.map(|l| l.id).map_err(|e| (e.line, e.kind)));
        let second = reader.next().map(|r| r.map(|l| (l.line, l.id)).ok());
        (first, second, reader.next().is_none())
    });
    assert!(
        matches!(
            first,
            Some(Err((
                1,
                ReadErrorKind::LineTooLong {
                    limit: DEFAULT_MAX_LINE
                }
            )))
        ),
        "{first:?}"
    );
    assert_eq!(second, Some(Some((2, "d2".to_owned()))));
    assert!(rest);
    // The line buffer stops growing at the bound (1 MiB, doubled at most by
    // a Vec's growth): nothing near the 100 MB read.
    assert!(peak < 4 * DEFAULT_MAX_LINE, "peak heap {peak} bytes");
    // The counter does see the buffer that filled up to the bound.
    assert!(peak > DEFAULT_MAX_LINE / 2, "peak heap {peak} bytes");
}

#[test]
fn a_100_mb_twin_line_without_any_newline_is_one_error_in_bounded_memory() {
    let ((errors, kinds), peak) = peak_heap(|| {
        let body =
            br#"{"deviceId":"d1","tags":{"a":""#.chain(std::io::repeat(b'y').take(HUNDRED_MB));
        let results: Vec<_> = TwinReader::new(BufReader::new(body), "huge.jsonl")
            .with_max_line(64 * 1024)
            .collect();
        let kinds: Vec<_> = results
            .into_iter()
            .map(|r| r.err().map(|e| (e.line, e.kind)))
            .collect();
        (kinds.len(), kinds)
    });
    assert_eq!(errors, 1);
    assert!(
        matches!(
            kinds.first(),
            Some(Some((1, ReadErrorKind::LineTooLong { limit: 65_536 })))
        ),
        "{kinds:?}"
    );
    assert!(
        (64 * 1024..1024 * 1024).contains(&peak),
        "peak heap {peak} bytes"
    );
}

// ---------------------------------------------------------------------------
// Numbers out of range where tests/formats.rs does not look: twin versions,
// floats beyond f64, integers deep in desired properties and in arrays.

fn export_error(line: &str) -> ReadError {
    let input = format!("{{\"id\":\"ok\",\"status\":\"enabled\"}}\n{line}\n");
    match collect_export(ExportReader::new(input.as_bytes(), "devices.txt")) {
        Err(e) => e,
        Ok(_) => panic!("accepted: {line}"),
    }
}

fn twin_error(line: &str) -> ReadError {
    let input = format!("{{\"deviceId\":\"ok\"}}\n{line}\n");
    match collect_twins(TwinReader::new(input.as_bytes(), "twins.jsonl")) {
        Err(e) => e,
        Ok(_) => panic!("accepted: {line}"),
    }
}

#[test]
fn twin_versions_out_of_range_are_wrong_types() {
    for (version, found) in [
        ("-1", "an out-of-range number"),
        ("18446744073709551616", "a number"),
        ("1.5", "a number"),
    ] {
        let e = twin_error(&format!(r#"{{"deviceId":"d1","version":{version}}}"#));
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(e.device.as_deref(), Some("d1"), "{e}");
        assert_eq!(e.field.as_deref(), Some("version"), "{e}");
        assert!(
            matches!(
                &e.kind,
                ReadErrorKind::WrongType { expected, found: f } if expected == "an integer" && f == found
            ),
            "{version}: {e}"
        );
    }
    let e = twin_error(r#"{"deviceId":"d1","version":1e400}"#);
    assert_eq!(e.field.as_deref(), Some("version"), "{e}");
    assert!(
        matches!(&e.kind, ReadErrorKind::InvalidJson { message, .. } if message == "number out of range"),
        "{e}"
    );
}

#[test]
fn a_float_beyond_f64_is_invalid_json_naming_its_field() {
    for section in ["tags", "properties"] {
        let value = if section == "tags" {
            r#"{"t":1e400}"#
        } else {
            r#"{"desired":{"t":-1e400}}"#
        };
        let e = export_error(&format!(
            r#"{{"id":"d1","status":"enabled","{section}":{value}}}"#
        ));
        assert_eq!(e.line, 2);
        assert_eq!(e.device.as_deref(), Some("d1"));
        assert!(
            e.field.as_deref().is_some_and(|f| f.starts_with(section)),
            "{e}"
        );
        assert!(
            matches!(&e.kind, ReadErrorKind::InvalidJson { message, .. } if message == "number out of range"),
            "{e}"
        );
    }
}

#[test]
fn integers_out_of_range_are_found_deep_and_in_arrays() {
    use failback::validate::ValidationErrorKind;
    for (value, path) in [
        (r#"{"a":{"b":9007199254740993}}"#, "properties.desired.a.b"),
        (r#"{"a":[1,-9007199254740993]}"#, "properties.desired.a"),
    ] {
        let e = export_error(&format!(
            r#"{{"id":"d1","status":"enabled","properties":{{"desired":{value}}}}}"#
        ));
        assert!(
            matches!(
                e.kind,
                ReadErrorKind::Invalid(ValidationErrorKind::IntegerOutOfRange)
            ),
            "{e}"
        );
        assert!(
            e.field.as_deref().is_some_and(|f| f.starts_with(path)),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------
// Stamps far in the future: the twin reader takes any valid time, the merge
// job rejects those beyond the drift bound before anything is written.

fn scratch(name: &str) -> PathBuf {
    crate::common::scratch("hostile", name)
}

/// 2024-03-01T12:00:00Z.
const NOW_MS: i64 = 1_709_294_400_000;

fn twin_merge(name: &str, secondary: &str) -> (Result<(), JobError>, PathBuf) {
    twin_merge_read(name, secondary, failback::job::Reading::Auto)
}

fn twin_merge_read(
    name: &str,
    secondary: &str,
    reading: failback::job::Reading,
) -> (Result<(), JobError>, PathBuf) {
    let dir = scratch(name);
    let primary = dir.join("primary.jsonl");
    std::fs::write(
        &primary,
        r#"{"deviceId":"d1","status":"enabled","statusUpdateTime":"2024-03-01T11:00:00Z","properties":{"desired":{"a":1,"$metadata":{"a":{"$lastUpdated":"2024-03-01T11:00:00Z"}}}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let second = dir.join("secondary.jsonl");
    std::fs::write(&second, secondary).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("out");
    let hub = |n: &str| ReplicaId::new(n).unwrap_or_else(|e| panic!("{e}"));
    let job = MergeJob {
        base: None,
        hubs: vec![(hub("primary"), primary), (hub("secondary"), second)],
        reading,
        // Twin files carry no keys: these tests are about times and streaming.
        allow_new_keys: true,
        ..MergeJob::new(&out, NOW_MS)
    };
    (run_merge(&job).map(|_| ()), out)
}

#[test]
fn a_metadata_time_far_in_the_future_is_rejected_by_the_merge() {
    // Streamed, and on the indexed path (which finds the newest time as
    // it indexes the file).
    for reading in [
        failback::job::Reading::Auto,
        failback::job::Reading::Indexed,
    ] {
        future_metadata_rejected(reading);
    }
}

fn future_metadata_rejected(reading: failback::job::Reading) {
    let (result, out) = twin_merge_read(
        &format!("future-metadata-{reading:?}"),
        r#"{"deviceId":"d1","status":"enabled","properties":{"reported":{"fw":{"v":2},"$metadata":{"fw":{"$lastUpdated":"2024-03-01T11:00:00Z","v":{"$lastUpdated":"2999-01-01T00:00:00Z"}}}}}}"#,
        reading,
    );
    match result {
        Err(JobError::Drift {
            file,
            device,
            path,
            source,
        }) => {
            assert!(file.ends_with("secondary.jsonl"), "{file}");
            assert_eq!(device, "d1");
            assert_eq!(path, "properties.reported.fw.v");
            assert!(source.ahead_ms > source.max_drift_ms);
            assert_eq!(source.stamp, "2999-01-01T00:00:00.000Z");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists(), "output left behind");
}

#[test]
fn a_status_time_just_beyond_the_drift_is_rejected_and_one_within_is_taken() {
    let (result, out) = twin_merge(
        "future-status",
        r#"{"deviceId":"d1","status":"disabled","statusUpdateTime":"2024-03-01T12:05:00.001Z"}"#,
    );
    assert!(
        matches!(&result, Err(JobError::Drift { path, source, .. }) if path == "status" && source.ahead_ms == 300_001),
        "{result:?}"
    );
    assert!(result.as_ref().is_err_and(JobError::is_input));
    assert!(!out.exists(), "output left behind");
    let (result, out) = twin_merge(
        "near-status",
        r#"{"deviceId":"d1","status":"disabled","statusUpdateTime":"2024-03-01T12:05:00Z"}"#,
    );
    assert!(result.is_ok(), "{result:?}");
    assert!(out.join("merged.jsonl").exists());
}

#[test]
fn a_time_beyond_year_9999_is_an_unparseable_timestamp() {
    for (i, time) in ["+262143-12-31T23:59:59Z", "+10000-01-01T00:00:00"]
        .into_iter()
        .enumerate()
    {
        let (result, out) = twin_merge(
            &format!("beyond-calendar-{i}"),
            &format!(
                r#"{{"deviceId":"d1","statusUpdateTime":"{time}","properties":{{"desired":{{"a":1,"$metadata":{{"a":{{"$lastUpdated":"{time}"}}}}}}}}}}"#
            ),
        );
        match result {
            Err(JobError::Read(e)) => {
                assert!(
                    matches!(e.kind, ReadErrorKind::InvalidTimestamp { .. }),
                    "{e}"
                );
                // `statusUpdateTime` is a runtime field: no time, no error.
                assert_eq!(
                    e.field.as_deref(),
                    Some("properties.desired.$metadata.a.$lastUpdated")
                );
                assert_eq!((e.line, e.device.as_deref()), (1, Some("d1")));
            }
            other => panic!("{time}: {other:?}"),
        }
        assert!(!out.exists(), "output left behind");
    }
}

// ---------------------------------------------------------------------------
// Duplicates tests/formats.rs does not cover: a module twin twice.

#[test]
fn a_module_twin_twice_names_both_lines() {
    let input = concat!(
        r#"{"deviceId":"d1","status":"enabled"}"#,
        "\n",
        r#"{"deviceId":"d1","moduleId":"m1","version":1}"#,
        "\n",
        "Warning: query page 2\n",
        r#"{"deviceId":"d1","moduleId":"m1","version":2}"#,
        "\n",
    );
    let e = collect_twins(TwinReader::new(input.as_bytes(), "twins.jsonl")).err();
    let e = e.map(|e| (e.line, e.device, e.module, e.kind));
    assert!(
        matches!(
            &e,
            Some((4, Some(d), Some(m), ReadErrorKind::DuplicateModule { first_line: 2 }))
                if d == "d1" && m == "m1"
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// Invalid UTF-8 in the middle of a file, good lines on both sides.

const MIDDLE_BAD: &[u8] = b"{\"id\":\"d1\",\"status\":\"enabled\"}\n\
{\"id\":\"d2\",\"status\":\"enabled\",\"tags\":{\"site\":\"ly\xF0\x28\x8C\x28n\"}}\n\
{\"id\":\"d3\",\"status\":\"enabled\"}\n";

#[test]
fn invalid_utf8_mid_file_is_one_error_and_the_stream_goes_on() {
    let results: Vec<_> = ExportReader::new(MIDDLE_BAD, "devices.txt")
        .map(|r| r.map(|l| l.id).map_err(|e| (e.line, e.kind)))
        .collect();
    assert_eq!(results.len(), 3);
    assert!(matches!(&results[0], Ok(id) if id == "d1"));
    assert!(
        matches!(
            results[1],
            Err((2, ReadErrorKind::InvalidUtf8 { valid_up_to: 48 }))
        ),
        "{:?}",
        results[1]
    );
    assert!(matches!(&results[2], Ok(id) if id == "d3"));
    let e = collect_export(ExportReader::new(MIDDLE_BAD, "devices.txt")).err();
    assert!(matches!(
        e.map(|e| (e.line, e.kind)),
        Some((2, ReadErrorKind::InvalidUtf8 { .. }))
    ));
}

#[test]
fn invalid_utf8_mid_twin_file_fails_the_whole_read() {
    let dir = scratch("utf8");
    let path = dir.join("twins.jsonl");
    let mut bytes = b"{\"deviceId\":\"d1\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"deviceId\":\"d2\",\"tags\":{\"a\":\"\xC3\"}}\n");
    bytes.extend_from_slice(b"{\"deviceId\":\"d3\"}\n");
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    match read_input(&path, None) {
        Err(e) => {
            assert_eq!(e.line, 2, "{e}");
            assert!(
                matches!(e.kind, ReadErrorKind::InvalidUtf8 { valid_up_to: 30 }),
                "{e}"
            );
        }
        Ok(InputFile::Twin(file)) => panic!("accepted {} devices", file.devices.len()),
        Ok(InputFile::Export(_) | InputFile::Identity(_)) => panic!("read as another format"),
    }
}
