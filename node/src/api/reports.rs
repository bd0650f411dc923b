//! `POST /v1/reports` (with clips attached from files or the library), and a report's
//! update, resolve and retract.

use super::*;
use crate::clips;

pub(super) fn parse_category(name: &str) -> Result<Category, Box<Response>> {
    Category::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("unknown category {name:?}: one of {}", all.join(", ")),
        ))
    })
}

pub(super) fn parse_severity(name: Option<&str>) -> Result<Option<Severity>, Box<Response>> {
    match name {
        None => Ok(None),
        Some(s) => Severity::parse(s).map(Some).ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("unknown severity {s:?}: one of info, warning, urgent"),
            ))
        }),
    }
}

/// A clip to attach: a file for the node to import into its library, or the SHA-256 of
/// one already there (`porchlight post --clip` imports first, with progress).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewClip {
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    camera: Option<String>,
    #[serde(default)]
    captured_at: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewReport {
    category: String,
    text: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    behavior: Option<String>,
    #[serde(default, rename = "where")]
    place: Option<String>,
    #[serde(default)]
    geohash: Option<String>,
    #[serde(default)]
    expires_in_secs: Option<u64>,
    #[serde(default)]
    clips: Vec<NewClip>,
    /// Ask who has seen it (urgent reports only; `seen`).
    #[serde(default)]
    ask_seen: bool,
}

/// Resolves clip requests to library entries, importing files. Returns the references
/// and the clips this call added (to remove again if the post fails).
pub(super) async fn attach(
    data_dir: &Path,
    wanted: Vec<NewClip>,
    now: u64,
) -> Result<(Vec<ClipRef>, Vec<[u8; 32]>), Box<Response>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    if wanted.len() > MAX_CLIPS {
        return Err(bad(format!("at most {MAX_CLIPS} clips per report")));
    }
    let mut refs = Vec::new();
    let mut added = Vec::new();
    for clip in wanted {
        let found = match (clip.path, clip.sha256) {
            (Some(path), None) => {
                if !path.is_absolute() {
                    return Err(bad(format!(
                        "clip path {} must be absolute (the node may run in another directory)",
                        path.display()
                    )));
                }
                if !path.is_file() {
                    return Err(bad(format!("clip file {} not found", path.display())));
                }
                let dir = data_dir.to_path_buf();
                let imported =
                    tokio::task::spawn_blocking(move || clips::import(&dir, &path, |_, _| {}))
                        .await;
                match imported {
                    Ok(Ok(imported)) => {
                        if imported.new {
                            added.push(imported.clip.sha256);
                        }
                        imported.clip
                    }
                    Ok(Err(e @ (ClipError::Read { .. } | ClipError::NotAFile { .. }))) => {
                        return Err(bad(e.to_string()));
                    }
                    Ok(Err(e @ ClipError::TooLarge { .. })) => {
                        return Err(Box::new(error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            e.to_string(),
                        )));
                    }
                    Ok(Err(e)) => {
                        return Err(Box::new(error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            e.to_string(),
                        )));
                    }
                    Err(e) => {
                        return Err(Box::new(error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            e.to_string(),
                        )));
                    }
                }
            }
            (None, Some(hex)) => {
                let Some(sha) = codec::parse_hex::<32>(&hex) else {
                    return Err(bad(format!("clip sha256 {hex:?} is not 64 hex digits")));
                };
                clips::get(data_dir, &sha).map_err(|e| bad(e.to_string()))?
            }
            _ => {
                return Err(bad(
                    "each clip needs exactly one of `path` or `sha256`".into()
                ));
            }
        };
        refs.push(ClipRef {
            sha256: found.sha256,
            size: found.size,
            camera: clip.camera.unwrap_or_default(),
            captured_at: clip.captured_at.unwrap_or(now),
        });
    }
    Ok((refs, added))
}

/// `POST /v1/reports` judged before anything is touched: the report (without its clips,
/// which come from the library) and the clips asked for.
///
/// The report's lifetime is `expires_in_secs`, else the hood's default; the handler
/// checks it against the hood's maximum ([`lifetime`]).
pub(super) fn report_request(
    body: &[u8],
    now: u64,
) -> Result<(Report, Option<u64>, Vec<NewClip>), Box<Response>> {
    let new: NewReport = parse(body)?;
    if new.expires_in_secs == Some(0) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "expires_in_secs must be at least 1 (seconds)",
        )));
    }
    let category = parse_category(&new.category)?;
    let severity = parse_severity(new.severity.as_deref())?.unwrap_or(Severity::Warning);
    let report = Report {
        created_at: now,
        expires_at: now.saturating_add(new.expires_in_secs.unwrap_or(DEFAULT_TTL_SECS)),
        category,
        severity,
        text: new.text,
        behavior: new.behavior,
        location: Location {
            text: new.place.unwrap_or_default(),
            geohash: new.geohash,
        },
        clips: vec![],
        // A stand-in: the node makes the report's own key when it posts.
        ask_seen: new
            .ask_seen
            .then(|| porchlight_proto::seen::SeenAsk::generate(&mut crate::rng()).0),
    };
    report.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok((report, new.expires_in_secs, new.clips))
}

/// A report's lifetime in seconds: the one asked for, else the hood's default, at most
/// the hood's maximum.
pub(super) fn lifetime(policy: &Policy, asked: Option<u64>) -> Result<u64, Box<Response>> {
    let max = u64::from(policy.max_ttl_secs);
    let secs = asked.unwrap_or(u64::from(policy.default_ttl_secs));
    if secs > max {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!(
                "expires_in_secs is {secs} seconds ({}), longer than this hood's maximum \
                 report lifetime of {} ({max} seconds)",
                crate::words::span(secs),
                crate::words::span(max)
            ),
        )));
    }
    Ok(secs)
}

/// An error from posting, with the hood's rate limit spelled out when it was that.
pub(super) fn post_error(api: &Api, e: NodeError) -> Response {
    match e {
        NodeError::Engine(EngineError::Refused(Reason::RateLimited)) => {
            let window = u64::from(api.policy.rate_limit.window_secs.max(1));
            let next = (crate::now() / window + 1) * window;
            error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "over this hood's limit of {} (reports, updates and all-clears count): \
                     try again after {}",
                    crate::words::rate_limit(&api.policy),
                    crate::words::utc(next)
                ),
            )
        }
        other => node_error(other),
    }
}

pub(super) async fn post_report(State(api): State<Api>, body: Bytes) -> Response {
    let now = crate::now();
    // Everything that can be judged before touching the clip library is judged first.
    let (mut report, asked, wanted) = match report_request(&body, now) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match lifetime(&api.policy, asked) {
        Ok(secs) => report.expires_at = now.saturating_add(secs),
        Err(r) => return *r,
    }
    let (refs, added) = match attach(&api.data_dir, wanted, now).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    report.clips = refs;
    match api.node.post(Body::Report(report)).await {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id.to_hex() })),
        )
            .into_response(),
        // Sent, only not durable here: neighbors may ask for the clips.
        Err(e @ NodeError::NotDurable { .. }) => node_error(e),
        Err(e) => {
            for sha in added {
                let _ = std::fs::remove_file(clips::path(&api.data_dir, &sha));
            }
            post_error(&api, e)
        }
    }
}

/// Finds the report `wanted` names (a full id or a unique prefix of at least 4 hex
/// digits) among the live items, and checks that this node's member wrote it or is an
/// admin (the protocol lets admins update, resolve and retract any report).
pub(super) async fn own_report(api: &Api, wanted: &str) -> Result<(ItemId, u64), Box<Response>> {
    let report = find_report(api, wanted).await?;
    let me_admin = || async {
        api.node.members().await.is_ok_and(|m| {
            m.iter()
                .any(|m| m.member.id == api.node.member() && m.member.admin)
        })
    };
    if report.author != api.node.member() && !me_admin().await {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            format!(
                "report {} is {}'s: only its author or an admin can change it",
                &report.id.to_hex()[..8],
                report.author_name
            ),
        )));
    }
    Ok((report.id, report.expires_at))
}

/// The live report `wanted` names: a full id or a unique prefix of at least 4 hex digits.
pub(super) async fn find_report(api: &Api, wanted: &str) -> Result<FeedItem, Box<Response>> {
    let wanted = wanted.to_ascii_lowercase();
    if wanted.len() < 4 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{wanted:?} is not a report id: give at least 4 hex digits of one"),
        )));
    }
    // By the store's index of ids, not a read of the whole feed. Enough to tell one
    // match from several.
    const MOST: usize = 64;
    let prefix = wanted.clone();
    let items = api
        .node
        .read(move |reader| reader.by_prefix(&prefix, MOST))
        .await
        .map_err(|e| Box::new(node_error(e)))?;
    let matches: Vec<&FeedItem> = items
        .iter()
        .filter(|i| matches!(i.body, Body::Report(_)))
        .collect();
    if items.len() >= MOST && matches.len() < 2 {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{wanted} matches {MOST} or more items: give more of the id"),
        )));
    }
    let report = match matches.as_slice() {
        [one] => *one,
        [] => {
            return Err(Box::new(error(
                StatusCode::NOT_FOUND,
                format!("no live report with id {wanted}"),
            )));
        }
        more => {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{wanted} matches {} reports: give more of the id",
                    more.len()
                ),
            )));
        }
    };
    Ok(report.clone())
}

pub(super) fn posted(api: &Api, result: Result<ItemId, NodeError>) -> Response {
    match result {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id.to_hex() })),
        )
            .into_response(),
        Err(e) => post_error(api, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUpdate {
    text: String,
    #[serde(default)]
    severity: Option<String>,
}

/// New information on one of our reports. It lives as long as the report.
/// `POST /v1/reports/{id}/update` judged: an `Update` whose report and times the
/// handler fills in.
pub(super) fn update_request(body: &[u8]) -> Result<Update, Box<Response>> {
    let new: NewUpdate = parse(body)?;
    let update = Update {
        created_at: 0,
        expires_at: 0,
        report: ItemId([0; 32]),
        severity: parse_severity(new.severity.as_deref())?,
        text: new.text,
    };
    update.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok(update)
}

pub(super) async fn update(
    State(api): State<Api>,
    AxumPath(id): AxumPath<String>,
    body: Bytes,
) -> Response {
    let mut update = match update_request(&body) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    (update.report, update.expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    update.created_at = crate::now();
    let result = api.node.post(Body::Update(update)).await;
    posted(&api, result)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewResolve {
    #[serde(default)]
    text: String,
}

/// "All clear" on one of our reports.
/// `POST /v1/reports/{id}/resolve` judged, like [`update_request`].
pub(super) fn resolve_request(body: &[u8]) -> Result<Resolve, Box<Response>> {
    let new: NewResolve = parse_or_default(body)?;
    let resolve = Resolve {
        created_at: 0,
        expires_at: 0,
        report: ItemId([0; 32]),
        text: new.text,
    };
    resolve.check().map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            crate::words::field_error(&e, crate::words::api_field),
        ))
    })?;
    Ok(resolve)
}

pub(super) async fn resolve(
    State(api): State<Api>,
    AxumPath(id): AxumPath<String>,
    body: Bytes,
) -> Response {
    let mut resolve = match resolve_request(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    (resolve.report, resolve.expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    resolve.created_at = crate::now();
    let result = api.node.post(Body::Resolve(resolve)).await;
    posted(&api, result)
}

/// Takes one of our reports back: every member's node deletes its body.
pub(super) async fn retract(
    State(api): State<Api>,
    AxumPath(id): AxumPath<String>,
    body: Bytes,
) -> Response {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    if let Err(r) = parse_or_default::<NoFields>(&body) {
        return *r;
    }
    let (report, expires_at) = match own_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let result = api
        .node
        .post(Body::Retract(Retract {
            created_at: crate::now(),
            expires_at,
            report,
        }))
        .await;
    posted(&api, result)
}

/// `POST /v1/reports/{id}/seen`: this node's person has seen a neighbor's report that
/// asked who has (the CLI's `seen`, and `feed` when it prints one). Sends the ack once;
/// again, it answers that it was sent before and sends nothing.
pub(super) async fn seen(
    State(api): State<Api>,
    AxumPath(id): AxumPath<String>,
    body: Bytes,
) -> Response {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    if let Err(r) = parse_or_default::<NoFields>(&body) {
        return *r;
    }
    let report = match find_report(&api, &id).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let author = report.author_name.clone();
    match api.node.seen(report.id).await {
        Ok(crate::engine::Acked::Sent(ack)) => (
            StatusCode::CREATED,
            axum::Json(json!({
                "report": report.id.to_hex(),
                "author_name": author,
                "ack": ack.to_hex(),
                "already": false,
            })),
        )
            .into_response(),
        Ok(crate::engine::Acked::Already) => axum::Json(json!({
            "report": report.id.to_hex(),
            "author_name": author,
            "already": true,
        }))
        .into_response(),
        Err(e) => post_error(&api, e),
    }
}
