//! `GET /v1/status` and `GET /v1/health`.

use super::*;

/// The hood's policy as `GET /v1/status` shows it.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "invite": crate::words::permission(p.invite),
        "remove": crate::words::permission(p.remove),
        "posts_per_window": p.rate_limit.max_items,
        "window_secs": p.rate_limit.window_secs,
        "default_report_lifetime_secs": p.default_ttl_secs,
        "max_report_lifetime_secs": p.max_ttl_secs,
    })
}

pub(super) async fn status(State(api): State<Api>) -> Response {
    let (status, members) = (api.node.status_brief().await, api.node.members().await);
    // Peers connected now: members, and the rest (a neighbor presenting an invite, a
    // removed member being cut off, a stranger's node found on the LAN).
    let connected_members = match &members {
        Ok(members) => members
            .iter()
            .filter(|m| m.connected && m.member.id != api.node.member())
            .count(),
        Err(_) => 0,
    };
    match status {
        Ok(s) => axum::Json(json!({
            "member": s.member.to_hex(),
            "fingerprint": s.member.fingerprint(),
            "peer_id": s.peer_id.to_string(),
            "hood": s.hood.map(|h| h.to_hex()),
            "hood_name": s.hood_name,
            "epoch": s.sealing_epoch.map(|e| e.to_string()),
            "members": s.members,
            "connected": s.connected.len(),
            "connected_members": connected_members,
            "connected_others": s.connected.len().saturating_sub(connected_members),
            "peers": s.connected.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "known_peers": s.known_peers,
            "listen": s.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "api": s_addr(&api),
            "items": s.items,
            "outbox": s.outbox,
            "removed": s.removed,
            "policy": s.policy.as_ref().map(policy_json),
            "history_missing": s.history_missing,
        }))
        .into_response(),
        Err(e) => node_error(e),
    }
}

/// 200 when the store takes writes, 503 when it does not (the node is then stopping).
pub(super) async fn health(State(api): State<Api>) -> Response {
    match api.node.health().await {
        Ok(h) => {
            let code = if h.store_writable {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = json!({
                "ok": h.store_writable,
                "store_writable": h.store_writable,
                "store_error": h.store_error,
                "members_connected": h.members_connected,
                "last_item_at": h.last_item_at,
            });
            (code, axum::Json(body)).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

pub(super) fn s_addr(api: &Api) -> String {
    format!("http://{}", api.addr)
}
