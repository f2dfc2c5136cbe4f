//! The body of `POST /v1/chat/completions`, through the server's own checks: any bytes are
//! a request or a 4xx (never a 5xx, which would mean a bug).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zocalo_server::openai::{check_request, to_messages, ChatCompletionRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) else {
        return;
    };
    let checked = check_request(&req).and_then(|()| to_messages(&req));
    if let Err(e) = checked {
        assert!(e.status.is_client_error(), "{e}");
    }
});
