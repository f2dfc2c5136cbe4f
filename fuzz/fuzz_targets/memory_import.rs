//! `zocalo memory import FILE.jsonl`: every line is a memory or a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(m) = zocalo_memory::parse_import_line(line) {
            assert!(m.validate().is_ok());
        }
    }
});
