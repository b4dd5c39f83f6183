//! Arbitrary bytes → pixel format, width, height, stride, buffer length → `Frame::new_checked` /
//! `FrameMut::new_checked`; every accessor of an accepted frame at arbitrary coordinates.
//! The body (and its input encoding) is `veil_fuzz::frame_layout`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = veil_fuzz::frame_layout(data);
});
