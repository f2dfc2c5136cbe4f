//! `zocalo browser run SCRIPT.json`: any text is a script or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = zocalo_browser::parse_script(text);
});
