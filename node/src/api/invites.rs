//! `POST /v1/invites`.

use super::*;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NewInvite {
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

/// How long an invite may be valid, in the one wording the API and the command share.
pub fn invite_lifetime_rule() -> String {
    format!(
        "an invite is valid from 1 second to {} ({MAX_INVITE_SECS} seconds)",
        crate::words::span(MAX_INVITE_SECS)
    )
}

/// `POST /v1/invites` judged: the validity in seconds.
pub(super) fn invite_request(body: &[u8]) -> Result<u64, Box<Response>> {
    let new: NewInvite = parse_or_default(body)?;
    let secs = new.expires_in_secs.unwrap_or(DEFAULT_INVITE_SECS);
    if secs == 0 || secs > MAX_INVITE_SECS {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("expires_in_secs: {}", invite_lifetime_rule()),
        )));
    }
    Ok(secs)
}

pub(super) async fn invite(State(api): State<Api>, body: Bytes) -> Response {
    let secs = match invite_request(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match api.node.invite(Duration::from_secs(secs)).await {
        Ok(code) => (
            StatusCode::CREATED,
            axum::Json(json!({ "code": code, "expires_at": crate::now().saturating_add(secs) })),
        )
            .into_response(),
        Err(e) => node_error(e),
    }
}
