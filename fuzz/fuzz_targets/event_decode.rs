//! The event decoder on arbitrary bytes: it answers an envelope or an error, never panics, and
//! whatever it accepts survives an encode and a second decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(envelope) = model::codec::decode(bytes) {
        let encoded = model::codec::encode(&envelope);
        let again = model::codec::decode(&encoded)
            .unwrap_or_else(|error| panic!("re-decoding what we encoded failed: {error}"));
        assert_eq!(again, envelope, "an envelope changed on its round trip");
    }
});
