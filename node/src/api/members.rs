//! `GET /v1/members`, `POST /v1/members/remove` (a vote under a quorum), `promote`, `mute` and `unmute`.

use super::*;

pub(super) async fn members(State(api): State<Api>) -> Response {
    match api.node.members().await {
        Ok(members) => axum::Json(
            members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.member.id.to_hex(),
                        "fingerprint": m.member.id.fingerprint(),
                        "name": m.member.name,
                        "role": if m.member.admin { "admin" } else { "member" },
                        "admin": m.member.admin,
                        "joined_at": m.member.joined_at,
                        "connected": m.connected,
                        "last_seen": m.last_seen,
                        "me": m.member.id == api.node.member(),
                        "votes_against": m.votes_against,
                        "votes_needed": m.votes_needed,
                        "muted": m.muted,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => node_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemoveMember {
    /// A member id (hex), or a unique prefix of one, or a unique name.
    member: String,
}

/// `POST /v1/members/remove` (and `…/promote`) judged: who, lower-cased.
pub(super) fn remove_request(body: &[u8]) -> Result<(String, String), Box<Response>> {
    let req: RemoveMember = parse(body)?;
    let wanted = req.member.trim().to_lowercase();
    if wanted.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "member: name a member (a name, or the start of a member id)",
        )));
    }
    Ok((wanted, req.member))
}

/// The one current member a request names (a name, or a unique prefix of an id).
pub(super) async fn named_member(
    api: &Api,
    body: &[u8],
) -> Result<porchlight_proto::membership::Member, Box<Response>> {
    let (wanted, asked) = remove_request(body)?;
    let members = api
        .node
        .members()
        .await
        .map_err(|e| Box::new(node_error(e)))?;
    let matches: Vec<&porchlight_proto::membership::Member> = members
        .iter()
        .map(|m| &m.member)
        .filter(|m| m.id.to_hex().starts_with(&wanted) || m.name.to_lowercase() == wanted)
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no member matches {asked:?}"),
        ))),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "{asked:?} matches {} members: give more of the id",
                matches.len()
            ),
        ))),
    }
}

pub(super) fn member_answer(key: &str, member: &porchlight_proto::membership::Member) -> Value {
    json!({
        key: member.id.to_hex(),
        "name": member.name,
        "fingerprint": member.id.fingerprint(),
    })
}

pub(super) async fn remove(State(api): State<Api>, body: Bytes) -> Response {
    let target = match named_member(&api, &body).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match api.node.remove(target.id).await {
        Ok(crate::engine::Removal::Removed) => {
            axum::Json(member_answer("removed", &target)).into_response()
        }
        // Under a quorum policy: a vote, and how many more remove them.
        Ok(crate::engine::Removal::Voted { needed }) => {
            let mut answer = member_answer("voted_against", &target);
            answer["votes_needed"] = json!(needed);
            axum::Json(answer).into_response()
        }
        Err(e) => node_error(e),
    }
}

/// Hides a member's reports on this node only (`mute.rs`): nothing is sent.
pub(super) async fn mute(State(api): State<Api>, body: Bytes) -> Response {
    set_mute(api, body, true).await
}

pub(super) async fn unmute(State(api): State<Api>, body: Bytes) -> Response {
    set_mute(api, body, false).await
}

async fn set_mute(api: Api, body: Bytes, mute: bool) -> Response {
    let target = match named_member(&api, &body).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    if target.id == api.node.member() {
        return error(StatusCode::BAD_REQUEST, "you cannot mute yourself");
    }
    match api.node.mute(target.id, mute).await {
        Ok(changed) => {
            let mut answer = member_answer(if mute { "muted" } else { "unmuted" }, &target);
            answer["changed"] = json!(changed);
            axum::Json(answer).into_response()
        }
        Err(e) => node_error(e),
    }
}

/// Makes a member an admin (admins only): so that a hood keeps one when its admin leaves.
pub(super) async fn promote(State(api): State<Api>, body: Bytes) -> Response {
    let target = match named_member(&api, &body).await {
        Ok(m) => m,
        Err(r) => return *r,
    };
    match api.node.promote(target.id).await {
        Ok(()) => axum::Json(member_answer("promoted", &target)).into_response(),
        Err(e) => node_error(e),
    }
}
