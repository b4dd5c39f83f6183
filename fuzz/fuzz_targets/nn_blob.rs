//! Model blobs: arbitrary bytes, and the committed face model with fuzzer-chosen byte edits in
//! its header and tables, go through `nn::Model::parse` / `parse_skip_checksum`; an accepted
//! model is run on a 32×32 input and its heads decoded. Nothing may panic, and an accepted model
//! must report consistent sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veil_core::detect::Class;
use veil_core::nn::resize::Letterbox;
use veil_core::nn::{decode, exec, Model, NnError};

const FACE: &[u8] = include_bytes!("../../models/int8/retinaface-mnet025.vlnn");

fn exercise(m: &Model<'_>) {
    let Ok(n) = m.arena_len(32, 32) else { return };
    if n > 1 << 22 {
        return;
    }
    assert_eq!(n, m.arena_units() as usize);
    let mut arena = vec![0u8; n];
    if exec::run(m, &mut arena, 32, 32).is_ok() {
        let lb = Letterbox::plan(32, 32, 32, 32).expect("valid plan");
        let _ = decode::decode::<NnError>(m, &arena, &lb, 0, |c| {
            assert!(matches!(c.class, Class::Face | Class::Plate));
            Ok(())
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        if let Ok(m) = Model::parse(rest) {
            exercise(&m);
        }
        return;
    }
    // Edits: (offset u16 LE, value) triples applied to the header and tables.
    let tables_end = FACE.len() - 32 - Model::parse(FACE).expect("committed blob").data().len();
    let mut blob = FACE.to_vec();
    for e in rest.chunks_exact(3) {
        let off = u16::from_le_bytes([e[0], e[1]]) as usize % tables_end;
        blob[off] = e[2];
    }
    if let Ok(m) = Model::parse_skip_checksum(&blob) {
        exercise(&m);
    }
});
