//! Arbitrary bytes as a clip request and a clip response, and responses fed to a
//! download: what a member's peer can send during a clip transfer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_proto::clip::{Download, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        assert_eq!(request.encode(), data, "a decoded request re-encodes to its bytes");
    }
    if let Ok(response) = Response::decode(data) {
        assert_eq!(response.encode(), data, "a decoded response re-encodes to its bytes");
        // A download of a small clip takes any decoded response without panicking, and
        // never claims to be done with bytes that do not hash right.
        let mut download = Download::new([7; 32], 1000);
        let _ = download.accept(response);
        assert!(!download.is_done() || download.received() == 1000);
    }
});
