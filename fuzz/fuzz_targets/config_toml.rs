//! config.toml: any text is a config or an error naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = zocalo_core::Config::parse(text, std::path::Path::new("config.toml")) {
        assert!(e.to_string().contains("config.toml"), "{e}");
    }
});
