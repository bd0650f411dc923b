//! `GET /v1/settings`, `POST /v1/settings`: the owner's settings that may change while
//! the node runs (the page's Settings): `clip_policy`, and `name`, the member's display
//! name, which neighbors read from the hood's signed membership log: a change is a
//! `Rename` operation every neighbor applies (docs/protocol.md § Renames).

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

/// A change of settings, judged.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Change {
    policy: Option<ClipPolicy>,
    name: Option<String>,
}

/// `POST /v1/settings` judged: the new clip policy and name, if any. A name that breaks
/// the rules of a member's name is refused here, in the request's words, before anything
/// changes.
pub(super) fn settings_request(body: &[u8]) -> Result<Change, Box<Response>> {
    let new: NewSettings = parse(body)?;
    if let Some(name) = &new.name
        && let Err(e) = porchlight_proto::rename::check_name(name)
    {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        )));
    }
    let policy = clip_policy(new.clip_policy.as_deref())?;
    Ok(Change {
        policy,
        name: new.name,
    })
}

fn clip_policy(value: Option<&str>) -> Result<Option<ClipPolicy>, Box<Response>> {
    match value {
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
        "name_editable": true,
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
    let Change { policy, name } = match settings_request(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    // The name first: it is the change the node may refuse (a removed member, a history
    // still arriving), and then nothing else changed either.
    if let Some(name) = name {
        if let Err(e) = api.node.rename(name.clone()).await {
            return node_error(e);
        }
        // What a later join from this data dir would use.
        let dir = api.data_dir.clone();
        let saved = tokio::task::spawn_blocking(move || crate::config::set_name(&dir, &name)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!("renamed in the hood, but porchlight.toml keeps the old name");
        }
        tracing::info!("renamed from the API");
    }
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
            Some(Change {
                policy: Some(ClipPolicy::Members),
                name: None
            })
        );
        assert_eq!(
            settings_request(br#"{"name": "Al"}"#).ok(),
            Some(Change {
                policy: None,
                name: Some("Al".into())
            })
        );
        assert_eq!(
            settings_request(b"{}").ok(),
            Some(Change {
                policy: None,
                name: None
            })
        );
        for bad in [
            &br#"{"clip_policy": "everyone"}"#[..],
            br#"{"name": ""}"#,
            br#"{"name": " "}"#,
            br#"{"name": "Al\u0007"}"#,
            br#"{"name": "Al", "clip_policy": "everyone"}"#,
            br#"{"colour": 1}"#,
            b"[]",
            b"\xff",
        ] {
            let r = settings_request(bad).expect_err("refused");
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }
}
