//! Arbitrary bytes as an MQTT payload on `frigate/reviews` and `frigate/events`: what
//! anyone who can publish to the home broker can send the bridge.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porchlight_node::hub::frigate::{ClipSource, parse_event, parse_review};
use porchlight_node::hub::settings::path_segment;

fuzz_target!(|data: &[u8]| {
    for parsed in [parse_review(data), parse_event(data)] {
        if let Ok(Some(candidate)) = parsed {
            // Whatever becomes a draft carries only checked names, never recognition labels.
            for label in &candidate.labels {
                assert!(!["face", "license_plate", "plate"].contains(&label.as_str()));
                assert!(!label.ends_with("-verified"));
            }
            assert!(candidate.camera.len() <= 64);
            // Ids and cameras go into Frigate URL paths: never a path separator.
            match &candidate.clip {
                Some(ClipSource::Review {
                    id,
                    camera,
                    start,
                    end,
                }) => {
                    assert!(!id.contains('/') && !id.contains(".."));
                    let segment = path_segment(camera);
                    assert!(!segment.contains('/') && !segment.contains('.'));
                    assert!(start <= end);
                }
                Some(ClipSource::Event { id }) => {
                    assert!(!id.contains('/') && !id.contains(".."));
                }
                None => {}
            }
        }
    }
});
