//! `GET /v1/settings`, `POST /v1/settings`: the owner's settings that may change while
//! the node runs (the page's Settings). Today: `clip_policy`. The display name is shown
//! but not changed: it is in the hood's signed membership log, fixed at joining.

use super::*;

use crate::clips::sharing::ClipPolicy;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSettings {
    #[serde(default)]
    clip_policy: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Why the name cannot be changed, in the words the page shows.
pub const NAME_FIXED: &str = "name: your name in the hood was set when you founded or joined \
     it, and neighbors read it from the hood's signed membership log; it cannot be changed \
     yet";

/// `POST /v1/settings` judged: the new clip policy, if any.
pub(super) fn settings_request(body: &[u8]) -> Result<Option<ClipPolicy>, Box<Response>> {
    let new: NewSettings = parse(body)?;
    if new.name.is_some() {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, NAME_FIXED)));
    }
    match new.clip_policy.as_deref() {
        None => Ok(None),
        Some("members") => Ok(Some(ClipPolicy::Members)),
        Some("ask") => Ok(Some(ClipPolicy::Ask)),
        Some("never") => Ok(Some(ClipPolicy::Never)),
        Some(other) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "clip_policy: one of \"members\" (any member may fetch your clips), \"ask\" \
                 (you allow each request) or \"never\", not {other:?}"
            ),
        ))),
    }
}

async fn current(api: &Api) -> Response {
    let policy = match api.node.clip_policy().await {
        Ok(p) => p,
        Err(e) => return node_error(e),
    };
    let me = api.node.member();
    let name = match api.node.members().await {
        Ok(members) => members
            .into_iter()
            .find(|m| m.member.id == me)
            .map(|m| m.member.name)
            .unwrap_or_default(),
        Err(e) => return node_error(e),
    };
    axum::Json(json!({
        "name": name,
        "name_editable": false,
        "clip_policy": policy.as_str(),
    }))
    .into_response()
}

pub(super) async fn settings(State(api): State<Api>) -> Response {
    current(&api).await
}

/// Saves the change to porchlight.toml first (what the next start reads), then applies
/// it to the running node.
pub(super) async fn change_settings(State(api): State<Api>, body: Bytes) -> Response {
    let policy = match settings_request(&body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if let Some(policy) = policy {
        let dir = api.data_dir.clone();
        let saved =
            tokio::task::spawn_blocking(move || crate::config::set_clip_policy(&dir, policy)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
        if let Err(e) = api.node.set_clip_policy(policy).await {
            return node_error(e);
        }
        tracing::info!(
            clip_policy = policy.as_str(),
            "clip policy changed from the API"
        );
    }
    current(&api).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_bodies_are_judged() {
        assert_eq!(
            settings_request(br#"{"clip_policy": "members"}"#).ok(),
            Some(Some(ClipPolicy::Members))
        );
        assert_eq!(settings_request(b"{}").ok(), Some(None));
        for bad in [
            &br#"{"clip_policy": "everyone"}"#[..],
            br#"{"name": "Al"}"#,
            br#"{"colour": 1}"#,
            b"[]",
            b"\xff",
        ] {
            let r = settings_request(bad).expect_err("refused");
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }
}
