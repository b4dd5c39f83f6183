//! Arbitrary bytes → `Record::parse` (emit must give the input back) and `verify_bytes` over the
//! whole input, checked against parse + `verify_chain`. The body is `veil_fuzz::evidence_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = veil_fuzz::evidence_parse(data);
});
