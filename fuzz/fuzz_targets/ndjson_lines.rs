//! The collector's NDJSON splitter and line check on arbitrary bodies: line numbers count
//! up, no line holds a newline or is blank, each line gets a verdict without a panic, and an
//! accepted line round-trips.
#![no_main]

use ingest::collector::{CollectorConfig, lines, validate};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_764_547_200_000;

fuzz_target!(|body: &[u8]| {
    let config = CollectorConfig::default();
    let mut previous = 0;
    for (number, line) in lines(body) {
        assert!(number > previous, "line {number} after line {previous}");
        previous = number;
        assert!(!line.contains(&b'\n'), "line {number} holds a newline");
        assert!(
            !line.iter().all(u8::is_ascii_whitespace),
            "line {number} is blank"
        );
        if let Ok(envelope) = validate(line, NOW, &config, None) {
            let encoded = model::codec::encode(&envelope);
            assert!(model::codec::decode(&encoded).is_ok());
        }
    }
});
