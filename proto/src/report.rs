//! What neighbors tell each other: reports, and the updates, all-clears and retractions
//! that refer to them. Each body carries its own `created_at` and `expires_at` (Unix
//! seconds), so both are covered by the author's signature.

use serde::{Deserialize, Serialize};

use crate::codec::{FieldError, check_len, check_text};
use crate::hood::Policy;
use crate::ids::ItemId;
use crate::seen::SeenAsk;

pub const MAX_TEXT_BYTES: usize = 1000;
pub const MAX_BEHAVIOR_BYTES: usize = 500;
pub const MAX_LOCATION_BYTES: usize = 120;
pub const MAX_CAMERA_BYTES: usize = 64;
pub const MAX_CLIPS: usize = 8;
/// A geohash of 7 characters is a cell of about 153 m × 153 m: a block, not a house.
pub const MAX_GEOHASH_CHARS: usize = 7;
const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Category {
    SuspiciousActivity,
    PackageTheft,
    BreakIn,
    Vehicle,
    Fire,
    Medical,
    Hazard,
    LostPet,
    FoundPet,
    Other,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Category::SuspiciousActivity,
        Category::PackageTheft,
        Category::BreakIn,
        Category::Vehicle,
        Category::Fire,
        Category::Medical,
        Category::Hazard,
        Category::LostPet,
        Category::FoundPet,
        Category::Other,
    ];

    /// The kebab-case name used by the CLI, the API and MQTT.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::SuspiciousActivity => "suspicious-activity",
            Category::PackageTheft => "package-theft",
            Category::BreakIn => "break-in",
            Category::Vehicle => "vehicle",
            Category::Fire => "fire",
            Category::Medical => "medical",
            Category::Hazard => "hazard",
            Category::LostPet => "lost-pet",
            Category::FoundPet => "found-pet",
            Category::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Urgent,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Urgent]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A coarse place: free text ("corner of Elm and 3rd") and an optional geohash of at most
/// seven characters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Location {
    pub text: String,
    pub geohash: Option<String>,
}

impl Location {
    pub fn check(&self) -> Result<(), FieldError> {
        check_text("location", &self.text, MAX_LOCATION_BYTES, false)?;
        if let Some(g) = &self.geohash {
            if g.is_empty() || g.len() > MAX_GEOHASH_CHARS {
                return Err(FieldError::Invalid {
                    what: "geohash",
                    why: "must be 1 to 7 characters (no finer than a block)",
                });
            }
            if !g.chars().all(|c| GEOHASH_ALPHABET.contains(c)) {
                return Err(FieldError::Invalid {
                    what: "geohash",
                    why: "has a character outside the geohash alphabet",
                });
            }
        }
        Ok(())
    }
}

/// A reference to a doorbell clip that stays at home: its hash and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipRef {
    pub sha256: [u8; 32],
    pub size: u64,
    pub camera: String,
    pub captured_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub created_at: u64,
    pub expires_at: u64,
    pub category: Category,
    pub severity: Severity,
    pub text: String,
    /// What a person *did*: required for suspicious activity, so that a report is about
    /// behavior, not about how someone looks.
    pub behavior: Option<String>,
    pub location: Location,
    pub clips: Vec<ClipRef>,
    /// An urgent report's request for acknowledgements ("seen by", `seen`). Not a serde
    /// field: on the wire it follows the others only when present (`Body::encode`), so
    /// a report that asks for none keeps its encoding and its id.
    #[serde(skip)]
    pub ask_seen: Option<SeenAsk>,
}

impl Report {
    pub fn check(&self) -> Result<(), FieldError> {
        if let Some(ask) = &self.ask_seen {
            if self.severity != Severity::Urgent {
                return Err(FieldError::Invalid {
                    what: "ask_seen",
                    why: "only an urgent report may ask who has seen it",
                });
            }
            if !ask.is_usable() {
                return Err(FieldError::Invalid {
                    what: "ask_seen",
                    why: "the key acknowledgements are sealed to is not usable",
                });
            }
        }
        check_text("text", &self.text, MAX_TEXT_BYTES, true)?;
        if self.text.trim().is_empty() {
            return Err(FieldError::Empty { what: "text" });
        }
        match &self.behavior {
            Some(b) => {
                check_text("behavior", b, MAX_BEHAVIOR_BYTES, true)?;
                if b.trim().is_empty() {
                    return Err(FieldError::Empty { what: "behavior" });
                }
            }
            None if self.category == Category::SuspiciousActivity => {
                return Err(FieldError::Invalid {
                    what: "behavior",
                    why: "a suspicious-activity report must say what the person did",
                });
            }
            None => {}
        }
        self.location.check()?;
        check_len("clips", self.clips.len(), MAX_CLIPS)?;
        for clip in &self.clips {
            check_text("camera", &clip.camera, MAX_CAMERA_BYTES, false)?;
        }
        Ok(())
    }
}

/// New information on a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub created_at: u64,
    pub expires_at: u64,
    pub report: ItemId,
    pub severity: Option<Severity>,
    pub text: String,
}

impl Update {
    pub fn check(&self) -> Result<(), FieldError> {
        check_text("text", &self.text, MAX_TEXT_BYTES, true)?;
        if self.text.trim().is_empty() {
            return Err(FieldError::Empty { what: "text" });
        }
        Ok(())
    }
}

/// "All clear": the report's situation is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    pub created_at: u64,
    pub expires_at: u64,
    pub report: ItemId,
    pub text: String,
}

impl Resolve {
    pub fn check(&self) -> Result<(), FieldError> {
        check_text("text", &self.text, MAX_TEXT_BYTES, true)
    }
}

/// The author takes a report back: every store deletes its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retract {
    pub created_at: u64,
    pub expires_at: u64,
    pub report: ItemId,
}

/// The lifetime a body asks for, checked against the hood's policy.
pub(crate) fn check_lifetime(
    created_at: u64,
    expires_at: u64,
    policy: &Policy,
) -> Result<(), FieldError> {
    if expires_at <= created_at {
        return Err(FieldError::Invalid {
            what: "expires_at",
            why: "must be after created_at",
        });
    }
    if expires_at - created_at > u64::from(policy.max_ttl_secs) {
        return Err(FieldError::Invalid {
            what: "expires_at",
            why: "lifetime is longer than the hood's maximum",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(category: Category, behavior: Option<&str>) -> Report {
        Report {
            created_at: 1000,
            expires_at: 2000,
            category,
            severity: Severity::Warning,
            text: "man trying car door handles on Elm St".into(),
            behavior: behavior.map(Into::into),
            location: Location {
                text: "Elm St, 400 block".into(),
                geohash: Some("9q8yyk8".into()),
            },
            clips: vec![],
            ask_seen: None,
        }
    }

    #[test]
    fn suspicious_activity_without_behavior_is_invalid() {
        let r = report(Category::SuspiciousActivity, None);
        assert!(matches!(
            r.check(),
            Err(FieldError::Invalid {
                what: "behavior",
                ..
            })
        ));
        assert_eq!(
            report(Category::SuspiciousActivity, Some("tried handles")).check(),
            Ok(())
        );
        assert_eq!(report(Category::LostPet, None).check(), Ok(()));
    }

    #[test]
    fn fine_geohash_is_invalid() {
        let mut r = report(Category::Other, None);
        r.location.geohash = Some("9q8yyk8z".into());
        assert!(r.check().is_err());
        r.location.geohash = Some("9q8yyka".into()); // 'a' is not in the alphabet
        assert!(r.check().is_err());
    }

    #[test]
    fn terminal_escapes_are_invalid() {
        let mut r = report(Category::Other, None);
        r.text = "all fine\u{1b}[2J".into();
        assert_eq!(
            r.check(),
            Err(FieldError::ControlCharacter { what: "text" })
        );
    }

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }
}
