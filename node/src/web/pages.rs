//! The page's HTML: one shell per page (maud templates, checked when the node is
//! compiled), filled and kept live by `assets/app.js` through the JSON API. No inline
//! script or style anywhere (the Content-Security-Policy forbids both).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use porchlight_proto::report::{Category, MAX_BEHAVIOR_BYTES, MAX_LOCATION_BYTES, MAX_TEXT_BYTES};

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The pages, in the navigation's order: (path, name, id).
const PAGES: [(&str, &str, &str); 6] = [
    ("/", "Feed", "feed"),
    ("/post", "Post", "post"),
    ("/invite", "Invite", "invite"),
    ("/members", "Members", "members"),
    ("/hub", "Hub", "hub"),
    ("/settings", "Settings", "settings"),
];

/// "suspicious-activity" → "Suspicious activity".
pub fn category_label(c: Category) -> String {
    let words = c.as_str().replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

fn category_options(with_all: bool) -> Markup {
    html! {
        @if with_all { option value="" { "All categories" } }
        @for c in Category::ALL {
            option value=(c.as_str()) { (category_label(c)) }
        }
    }
}

fn severity_options(with_all: bool) -> Markup {
    html! {
        @if with_all { option value="" { "Any severity" } }
        option value="info" { "Info" }
        option value="warning" selected[!with_all] { "Warning" }
        option value="urgent" { "Urgent" }
    }
}

fn layout(page: &str, title: &str, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Porchlight" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body data-page=(page)
                data-max-text=(MAX_TEXT_BYTES)
                data-max-behavior=(MAX_BEHAVIOR_BYTES)
                data-max-where=(MAX_LOCATION_BYTES) {
                a.skip href="#main" { "Skip to content" }
                header {
                    p.brand { "Porchlight" span #hood {} }
                    nav aria-label="Pages" {
                        ul {
                            @for (path, name, id) in PAGES {
                                li {
                                    @if id == page {
                                        a href=(path) aria-current="page" { (name) }
                                    } @else {
                                        a href=(path) { (name) }
                                    }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    p #notice role="status" aria-live="polite" {}
                    (main)
                }
            }
        }
    }
}

fn html_response(markup: Markup) -> Response {
    let mut response = markup.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub async fn feed() -> Response {
    html_response(layout(
        "feed",
        "Feed",
        html! {
            form #filters aria-label="Filter the feed" {
                div {
                    label for="filter-category" { "Category" }
                    select #filter-category name="category" { (category_options(true)) }
                }
                div {
                    label for="filter-severity" { "Severity" }
                    select #filter-severity name="severity" { (severity_options(true)) }
                }
            }
            p #live role="status" { "Connecting…" }
            ol #feed aria-label="Reports, newest first" {}
            button #older type="button" hidden { "Show older reports" }
        },
    ))
}

pub async fn post() -> Response {
    html_response(layout(
        "post",
        "Post a report",
        html! {
            form #post-form novalidate {
                p #post-summary.error role="alert" {}
                div.field {
                    label for="category" { "Category" }
                    select #category name="category" { (category_options(false)) }
                }
                div.field {
                    label for="severity" { "Severity" }
                    select #severity name="severity" { (severity_options(false)) }
                }
                div.field {
                    label for="text" { "What happened" }
                    textarea #text name="text" rows="4" aria-describedby="text-hint text-error" {}
                    p #text-hint.hint { "At most " (MAX_TEXT_BYTES) " bytes." }
                    p #text-error.error {}
                }
                div.field {
                    label for="behavior" { "What the person did" }
                    textarea #behavior name="behavior" rows="2" aria-describedby="behavior-hint behavior-error" {}
                    p #behavior-hint.hint {
                        "Required for suspicious activity: describe behavior, never how someone looks."
                    }
                    p #behavior-error.error {}
                }
                div.field {
                    label for="where" { "Where (a block or a corner)" }
                    input #where name="where" type="text" aria-describedby="where-hint where-error";
                    p #where-hint.hint { "For example “400 block of Elm St” or “Elm and 3rd”: no house numbers." }
                    p #where-error.error {}
                }
                div.field {
                    label for="expires" { "Expires in (hours)" }
                    input #expires name="expires" type="number" min="1" step="1" inputmode="numeric" aria-describedby="expires-hint expires-error";
                    p #expires-hint.hint {}
                    p #expires-error.error {}
                }
                div.field {
                    label for="ask_seen" {
                        input #ask_seen name="ask_seen" type="checkbox" aria-describedby="ask_seen-hint ask_seen-error";
                        " Ask neighbors to say they have seen it"
                    }
                    p #ask_seen-hint.hint {
                        "Urgent reports only. Your feed then shows “seen by N of M”; only you see who."
                    }
                    p #ask_seen-error.error {}
                }
                div.field {
                    label for="clip" { "Clip (optional video)" }
                    input #clip name="clip" type="file" accept="video/*" aria-describedby="clip-error";
                    progress #clip-progress max="100" value="0" hidden aria-label="Clip upload" {}
                    p #clip-error.error {}
                }
                button type="submit" { "Post to the hood" }
            }
        },
    ))
}

pub async fn invite() -> Response {
    html_response(layout(
        "invite",
        "Invite a neighbor",
        html! {
            p { "An invite lets one neighbor join, once. Hand it over in person: show the QR code or read the code out." }
            form #invite-form {
                label for="invite-expires" { "Valid for" }
                select #invite-expires name="expires" {
                    option value="3600" { "1 hour" }
                    option value="86400" selected { "1 day" }
                    option value="604800" { "7 days" }
                }
                button type="submit" { "Make an invite" }
            }
            section #invite-result aria-label="The invite" hidden {
                figure {
                    div #invite-qr {}
                    figcaption { "The QR code holds the code below: a phone's camera can read it and copy it." }
                }
                p { "Code: " code #invite-code {} }
                p #invite-expiry {}
            }
        },
    ))
}

pub async fn members() -> Response {
    html_response(layout(
        "members",
        "Members",
        html! {
            p { "Compare a fingerprint with the neighbor in person before you trust a name." }
            ul #members.cards aria-label="Members" {}
        },
    ))
}

pub async fn hub() -> Response {
    html_response(layout(
        "hub",
        "Camera hub",
        html! {
            template #category-options { (category_options(false)) }
            section aria-labelledby="drafts-title" {
                h2 #drafts-title { "Camera drafts" }
                p { "Events from your cameras wait here: nothing leaves your home until you approve it." }
                ul #drafts.cards aria-label="Drafts" {}
            }
            section aria-labelledby="requests-title" {
                h2 #requests-title { "Clip requests" }
                p { "Neighbors asking for clips your reports carry." }
                ul #requests.cards aria-label="Clip requests" {}
            }
        },
    ))
}

pub async fn settings() -> Response {
    html_response(layout(
        "settings",
        "Settings",
        html! {
            dl #settings {}
            form #settings-form novalidate aria-labelledby="settings-form-title" {
                h2 #settings-form-title { "Your settings" }
                div.field {
                    label for="name" { "Your name in the hood" }
                    input #name name="name" type="text" maxlength="64" required autocomplete="nickname" aria-describedby="name-hint name-error";
                    p #name-hint.hint {
                        "What neighbors see beside your fingerprint. A change is signed and sent "
                        "to every neighbor (up to 64 bytes)."
                    }
                    p #name-error.error role="alert" {}
                }
                div.field {
                    label for="clip-policy" { "Who may fetch the clips your reports carry" }
                    select #clip-policy name="clip_policy" aria-describedby="clip-policy-hint clip-policy-error" {
                        option value="members" { "Any member who asks" }
                        option value="ask" { "Ask me each time" }
                        option value="never" { "Nobody" }
                    }
                    p #clip-policy-hint.hint {
                        "Your clips stay on this computer until a neighbor fetches one. A clip you "
                        "shared when approving a camera draft keeps that choice. Saved in "
                        code { "porchlight.toml" } "."
                    }
                    p #clip-policy-error.error role="alert" {}
                }
                button type="submit" { "Save settings" }
            }
            section #lan aria-labelledby="lan-title" {
                h2 #lan-title { "Phones on your home LAN" }
                p #lan-state {}
                div #lan-actions hidden {
                    button #pair type="button" { "Pair a phone" }
                    " "
                    button #unpair.danger type="button" { "Unpair every phone" }
                    p #unpair-confirm.confirm hidden {
                        "Unpair every phone? Each must be paired again. "
                        button #unpair-yes.danger type="button" { "Yes, unpair every phone" }
                        " "
                        button #unpair-no type="button" { "Cancel" }
                    }
                }
                section #pairing aria-label="Pairing link" hidden {
                    figure {
                        div #pair-qr {}
                        figcaption { "Scan it with the phone's camera, on your home Wi-Fi. The link works once, for 10 minutes." }
                    }
                    p { "Or open this link on the phone: " code #pair-url {} }
                    p {
                        "The phone's browser warns that the certificate is the node's own. "
                        "Before going on, check in the certificate's details that its public key SHA-256 is "
                        code #pair-fingerprint {}
                    }
                }
            }
            form method="post" action="/signout" {
                button type="submit" { "Sign out of this browser" }
            }
        },
    ))
}

/// The page for a browser that is not signed in (or whose link was refused).
pub fn signed_out(message: &str) -> Response {
    html_response(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · Porchlight" }
                link rel="stylesheet" href="/assets/style.css";
            }
            body {
                main #main {
                    h1 { "Porchlight" }
                    p #signin-message role="alert" { (message) }
                    p { "On the computer running the node: " code { "porchlight open" } }
                }
            }
        }
    })
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
        .into_response()
}
