//! What every handler shares: error answers (`error`, `node_error`, JSON for axum's own
//! rejections), the bearer-token check, and parsing a body or a query with the field's
//! path in the error.

use super::*;

/// axum's own refusals (body over the limit, no such route, bad path) come as plain text;
/// every error the API gives is JSON `{"error": …}`.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is over the {MAX_BODY_BYTES}-byte limit")
        }
        StatusCode::NOT_FOUND => "no such endpoint (see docs/api.md)".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take that method".to_owned(),
        other => {
            let body = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            let text = if text.trim().is_empty() {
                other.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.trim().to_owned()
            };
            return error(other, text);
        }
    };
    error(status, message)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer …` header. The scheme's name is
/// case-insensitive (RFC 9110, section 11.1): `bearer` and `BEARER` work too.
pub(super) fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

pub(super) async fn auth(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let via = match presented {
        // The bearer-token API answers on the computer only, never to the LAN.
        Some(_) if api.web.face() == crate::web::Face::Lan => {
            return error(
                StatusCode::FORBIDDEN,
                "the bearer-token API answers on the node's loopback address only",
            );
        }
        Some(token) if same(token.as_bytes(), api.token.as_bytes()) => crate::web::Via::Bearer,
        // The page's session cookie, from this node's own page (docs/web.md).
        None if api.web.has_cookie(request.headers()) => match api.web.admit(request.headers()) {
            Ok(()) => crate::web::Via::Session,
            Err(e) => return e.json(),
        },
        None if api.web.face() == crate::web::Face::Lan => return api.web.no_session().json(),
        _ => return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
    };
    request.extensions_mut().insert(via);
    next.run(request).await
}

pub(super) fn node_error(e: NodeError) -> Response {
    match e {
        NodeError::Engine(EngineError::Refused(Reason::InvalidBody(e))) => error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ),
        NodeError::Engine(EngineError::Refused(Reason::RateLimited)) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "over the hood's rate limit for posts: try again later",
        ),
        NodeError::Engine(
            e @ (EngineError::Removed
            | EngineError::FetchingHistory(_)
            | EngineError::InviteForbidden
            | EngineError::LastAdmin(_)
            | EngineError::LastAdminLeaving),
        ) => error(StatusCode::FORBIDDEN, e.to_string()),
        NodeError::Engine(EngineError::Seen(e @ crate::seen::SeenError::UnknownReport(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        NodeError::Engine(EngineError::Seen(
            e @ (crate::seen::SeenError::NotAsking(_) | crate::seen::SeenError::OwnReport(_)),
        )) => error(StatusCode::BAD_REQUEST, e.to_string()),
        NodeError::Engine(e @ EngineError::AlreadyAdmin(_)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        NodeError::Engine(EngineError::Refused(reason)) => {
            error(StatusCode::BAD_REQUEST, format!("refused: {reason}"))
        }
        NodeError::Engine(EngineError::AlreadyPosted) => {
            error(StatusCode::CONFLICT, "this exact report was already posted")
        }
        NodeError::Engine(EngineError::Membership(m)) => {
            error(StatusCode::BAD_REQUEST, m.to_string())
        }
        NodeError::NoHood => error(StatusCode::CONFLICT, e.to_string()),
        NodeError::Mute(e @ crate::mute::MuteError::Full) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        NodeError::Busy => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(crate::feed::RETRY_AFTER_SECS),
            );
            response
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// A request body: a JSON object whose fields `T` names. Errors name the field (with its
/// path, `clips[0].camera`) and never the handler's internal type names.
pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("bad JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(
            "the request body must be a JSON object, {\"field\": value, …} (see docs/api.md)"
                .into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let what = without_type_names(&e.into_inner().to_string());
        if path == "." {
            bad(format!("bad request: {what}"))
        } else {
            bad(format!("{path}: {what}"))
        }
    })
}

/// serde's messages name the Rust type a value should have been (`expected struct
/// NewClip with 4 elements`); a client knows JSON objects, not our types.
pub(super) fn without_type_names(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("struct ") {
        out.push_str(&rest[..at]);
        out.push_str("a JSON object");
        let after = &rest[at + "struct ".len()..];
        let name_end = after
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        rest = &after[name_end..];
        if let Some(tail) = rest.strip_prefix(" with ")
            && let Some(end) = tail.find(" element")
        {
            let after_word = &tail[end + " element".len()..];
            rest = after_word.strip_prefix('s').unwrap_or(after_word);
        }
    }
    out.push_str(rest);
    out
}

/// An optional JSON body: empty means the defaults.
pub(super) fn parse_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(body)
    }
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Box<Response>> {
    q.map(|Query(q)| q).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}", e.body_text()),
        ))
    })
}
