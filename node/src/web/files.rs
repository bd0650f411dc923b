//! Clips in the page: `GET /web/clips/{sha256}` plays a clip from this node's library
//! (byte ranges, so a video can seek), `POST /web/clips` uploads one into it.

use std::io::{Read, Seek, SeekFrom, Write};

use axum::body::Body;
use axum::extract::{Path as AxumPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use porchlight_proto::codec;
use rand_core::Rng;
use serde_json::json;

use super::Web;
use crate::clips;

/// Uploads at once (each is written to disk as it arrives).
pub const MAX_UPLOADS: usize = 2;
/// Largest clip the page uploads (the CLI takes up to `clips::MAX_CLIP_BYTES`).
pub const MAX_UPLOAD_BYTES: u64 = 512 * 1024 * 1024;
/// Bytes of a clip read per chunk of an answer.
const CHUNK: usize = 64 * 1024;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// The media type of a clip, from its first bytes (clips are stored by hash, without a
/// name to go by).
fn media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        "video/webm"
    } else if head.get(4..8) == Some(b"ftyp") {
        "video/mp4"
    } else {
        "application/octet-stream"
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over a file of `size` bytes: the inclusive
/// range, or `None` for a header we do not serve as a range (then the whole file).
fn range(headers: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = spec.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let parsed = match (a.trim(), b.trim()) {
        ("", n) => n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1))),
        (a, "") => a.parse::<u64>().ok().map(|a| (a, size.saturating_sub(1))),
        (a, b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) => Some((a, b.min(size.saturating_sub(1)))),
            _ => None,
        },
    };
    Some(match parsed {
        Some((a, b)) if a <= b && b < size => Ok((a, b)),
        _ => Err(()),
    })
}

/// A clip from the library, whole or a byte range of it.
pub async fn clip(
    State(web): State<Web>,
    AxumPath(hex): AxumPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(sha) = codec::parse_hex::<32>(&hex) else {
        return error(StatusCode::BAD_REQUEST, "a clip is named by 64 hex digits");
    };
    let path = clips::path(&web.data_dir, &sha);
    let opened = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let size = file.metadata()?.len();
        let mut head = [0u8; 12];
        let n = file.read(&mut head)?;
        Ok::<_, std::io::Error>((file, size, media_type(&head[..n])))
    })
    .await;
    let (mut file, size, media) = match opened {
        Ok(Ok(found)) => found,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "this clip is not in this node's library: fetch it first",
            );
        }
    };
    let (status, start, end) = match range(&headers, size) {
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
        Some(Ok((a, b))) => (StatusCode::PARTIAL_CONTENT, a, b),
        Some(Err(())) => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "bad range");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let length = if size == 0 { 0 } else { end - start + 1 };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the clip");
    }
    // One chunk at a time, off the async threads; the stream ends at `length` bytes.
    let stream = futures::stream::unfold((Some(file), length), |(file, left)| async move {
        let mut file = file?;
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => {
                let left = left - buf.len() as u64;
                Some((Ok::<_, std::io::Error>(buf), (Some(file), left)))
            }
            // The answer ends here; the next poll ends the stream.
            Ok(Err(e)) => Some((Err(e), (None, 0))),
            Err(e) => Some((Err(std::io::Error::other(e)), (None, 0))),
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

/// Uploads a clip into the library: the body is written to a temporary file in the
/// library as it arrives (at most [`MAX_UPLOAD_BYTES`]), then imported by hash. Answers
/// `{sha256, size}` for `POST /v1/reports`' `clips[].sha256`.
pub async fn upload(State(web): State<Web>, request: Request) -> Response {
    let Ok(_permit) = web.uploads.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_UPLOADS} uploads are running; try again when one is done"),
        );
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES) {
        return too_large();
    }
    let library = web.data_dir.join(clips::DIR);
    if let Err(e) = std::fs::create_dir_all(&library) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut name = [0u8; 8];
    crate::rng().fill_bytes(&mut name);
    // `.import-*`: a temp file a killed node left is deleted at the next start.
    let temp = library.join(format!(".import-web-{}", codec::hex(&name)));
    let result = receive(&temp, request.into_body()).await;
    let imported = match result {
        Ok(0) => Err(error(StatusCode::BAD_REQUEST, "the clip is empty")),
        Ok(_) => {
            let (dir, file) = (web.data_dir.clone(), temp.clone());
            match tokio::task::spawn_blocking(move || clips::import(&dir, &file, |_, _| {})).await {
                Ok(Ok(i)) => Ok(i),
                Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
                Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
            }
        }
        Err(r) => Err(r),
    };
    let _ = std::fs::remove_file(&temp);
    match imported {
        Ok(i) => (
            StatusCode::CREATED,
            axum::Json(json!({
                "sha256": codec::hex(&i.clip.sha256),
                "size": i.clip.size,
            })),
        )
            .into_response(),
        Err(r) => r,
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the clip is over the page's {} MiB limit (`porchlight post --clip` takes larger ones)",
            MAX_UPLOAD_BYTES / (1024 * 1024)
        ),
    )
}

/// Writes `body` to `temp`, at most [`MAX_UPLOAD_BYTES`]; returns the bytes written.
async fn receive(temp: &std::path::Path, body: Body) -> Result<u64, Response> {
    let internal = |e: std::io::Error| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut file = std::fs::File::create(temp).map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        written += chunk.len() as u64;
        if written > MAX_UPLOAD_BYTES {
            return Err(too_large());
        }
        // Small chunks (tens of KiB) to the page cache: not worth a blocking task each.
        file.write_all(&chunk).map_err(internal)?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn ranges_are_read_or_refused() {
        assert_eq!(range(&HeaderMap::new(), 100), None);
        assert_eq!(range(&with_range("bytes=0-9"), 100), Some(Ok((0, 9))));
        assert_eq!(range(&with_range("bytes=90-"), 100), Some(Ok((90, 99))));
        assert_eq!(range(&with_range("bytes=-10"), 100), Some(Ok((90, 99))));
        assert_eq!(range(&with_range("bytes=50-500"), 100), Some(Ok((50, 99))));
        assert_eq!(range(&with_range("bytes=100-"), 100), Some(Err(())));
        assert_eq!(range(&with_range("bytes=9-2"), 100), Some(Err(())));
        assert_eq!(range(&with_range("bytes=0-1,5-6"), 100), None);
        assert_eq!(range(&with_range("items=0-1"), 100), None);
    }

    #[test]
    fn media_types_come_from_the_first_bytes() {
        assert_eq!(media_type(&[0x1a, 0x45, 0xdf, 0xa3, 1]), "video/webm");
        assert_eq!(media_type(b"\0\0\0\x20ftypisom"), "video/mp4");
        assert_eq!(media_type(b"hello"), "application/octet-stream");
    }
}
