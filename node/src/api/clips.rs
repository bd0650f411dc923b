//! `/v1/clips`: fetching a neighbor's clip (in the background, with its progress), and
//! the owner's answers to requests for their own clips.

use super::*;
use crate::clips;

/// Where one clip fetch stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(super) struct FetchState {
    /// `fetching`, `waiting` (for the owner to allow), `done` or `failed`.
    state: &'static str,
    received: u64,
    size: u64,
    owner: Option<String>,
    error: Option<String>,
    /// Where the verified clip is, once `done`.
    path: Option<String>,
}

pub(super) fn parse_sha(hex: &str) -> Result<[u8; 32], Box<Response>> {
    codec::parse_hex::<32>(hex).ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{hex:?} is not a clip SHA-256 (64 hex digits)"),
        ))
    })
}

pub(super) fn lock(
    fetches: &Mutex<HashMap<[u8; 32], FetchState>>,
) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], FetchState>> {
    // A poisoned map only means a fetch task panicked mid-update; its entries are still
    // plain data.
    fetches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn set(
    fetches: &Mutex<HashMap<[u8; 32], FetchState>>,
    sha: [u8; 32],
    update: impl FnOnce(&mut FetchState),
) {
    if let Some(state) = lock(fetches).get_mut(&sha) {
        update(state);
    }
}

/// Starts fetching a clip a neighbor's report references into this node's library
/// (or says where a fetch stands). The answer is the fetch's state; poll
/// `GET /v1/clips/{sha256}` until `done` or `failed`.
pub(super) async fn clip_fetch(
    State(api): State<Api>,
    AxumPath(hex): AxumPath<String>,
) -> Response {
    let sha = match parse_sha(&hex) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    {
        let mut fetches = lock(&api.fetches);
        if let Some(state) = fetches.get(&sha)
            && matches!(state.state, "fetching" | "waiting")
        {
            return (StatusCode::ACCEPTED, axum::Json(state.clone())).into_response();
        }
        if fetches.len() >= MAX_FETCHES {
            fetches.retain(|_, s| matches!(s.state, "fetching" | "waiting"));
        }
        if fetches.len() >= MAX_FETCHES {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{MAX_FETCHES} clip fetches are running; try again later"),
            );
        }
        fetches.insert(
            sha,
            FetchState {
                state: "fetching",
                received: 0,
                size: 0,
                owner: None,
                error: None,
                path: None,
            },
        );
    }
    let (node, dir, fetches) = (api.node.clone(), api.data_dir.clone(), api.fetches.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + FETCH_WAIT;
        loop {
            let progress = |received, size| {
                set(&fetches, sha, |s| {
                    s.state = "fetching";
                    s.received = received;
                    s.size = size;
                })
            };
            match sharing::fetch(&node, &dir, sha, progress).await {
                Ok(Fetched::Done { size }) => {
                    let path = clips::path(&dir, &sha).display().to_string();
                    set(&fetches, sha, |s| {
                        s.state = "done";
                        s.received = size;
                        s.size = size;
                        s.path = Some(path);
                    });
                    return;
                }
                Ok(Fetched::Waiting { owner }) => {
                    let name = match node.members().await {
                        Ok(members) => members
                            .iter()
                            .find(|m| m.member.id == owner)
                            .map_or_else(|| owner.fingerprint(), |m| m.member.name.clone()),
                        Err(_) => owner.fingerprint(),
                    };
                    set(&fetches, sha, |s| {
                        s.state = "waiting";
                        s.owner = Some(name);
                    });
                    if tokio::time::Instant::now() >= deadline {
                        set(&fetches, sha, |s| {
                            s.state = "failed";
                            s.error =
                                Some("the owner did not allow the request within an hour".into());
                        });
                        return;
                    }
                    tokio::time::sleep(FETCH_RETRY).await;
                }
                Err(e) => {
                    tracing::info!(clip = %&codec::hex(&sha)[..12], error = %e, "clip fetch failed");
                    set(&fetches, sha, |s| {
                        s.state = "failed";
                        s.error = Some(e.to_string());
                    });
                    return;
                }
            }
        }
    });
    let state = lock(&api.fetches).get(&sha).cloned();
    (StatusCode::ACCEPTED, axum::Json(state)).into_response()
}

pub(super) async fn clip_state(
    State(api): State<Api>,
    AxumPath(hex): AxumPath<String>,
) -> Response {
    let sha = match parse_sha(&hex) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match lock(&api.fetches).get(&sha) {
        Some(state) => axum::Json(state.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no fetch of this clip: start one with POST /v1/clips/{sha256}/fetch",
        ),
    }
}

pub(super) fn ask_json(ask: &ClipAsk, members: &[crate::node::MemberInfo]) -> Value {
    let name = members
        .iter()
        .find(|m| m.member.id == ask.requester)
        .map(|m| m.member.name.clone())
        .unwrap_or_default();
    json!({
        "id": ask.id,
        "requester": ask.requester.to_hex(),
        "requester_fingerprint": ask.requester.fingerprint(),
        "requester_name": name,
        "sha256": codec::hex(&ask.sha256),
        "asked_at": ask.asked_at,
    })
}

/// Clip requests waiting for this member's decision (policy `ask`).
pub(super) async fn clip_requests(State(api): State<Api>) -> Response {
    let (asks, members) = match (api.node.clip_asks().await, api.node.members().await) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(e), _) | (_, Err(e)) => return node_error(e),
    };
    axum::Json(
        asks.iter()
            .map(|a| ask_json(a, &members))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

pub(super) async fn clip_decide(api: Api, id: String, allow: bool) -> Response {
    match api.node.clip_decide(id.trim(), allow).await {
        Ok(ask) => {
            let members = api.node.members().await.unwrap_or_default();
            let mut v = ask_json(&ask, &members);
            v["allowed"] = json!(allow);
            axum::Json(v).into_response()
        }
        Err(NodeError::Sharing(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => node_error(e),
    }
}

pub(super) async fn clip_allow(State(api): State<Api>, AxumPath(id): AxumPath<String>) -> Response {
    clip_decide(api, id, true).await
}

pub(super) async fn clip_deny(State(api): State<Api>, AxumPath(id): AxumPath<String>) -> Response {
    clip_decide(api, id, false).await
}
