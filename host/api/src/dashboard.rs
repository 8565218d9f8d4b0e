//! The dashboard: the operator's web page, served at `/` from files
//! compiled into the binary (nothing to deploy, nothing fetched from
//! elsewhere). The files are open; the page asks for the token once and
//! reads everything it shows from the `/v1` routes and the event stream,
//! as any other client does. Its sources are `host/api/dashboard/`:
//! plain ES modules and CSS, no build step.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the page.
struct Asset {
    path: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        path: "/dashboard/charts.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/charts.js"),
    },
    Asset {
        path: "/dashboard/style.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/style.css"),
    },
    Asset {
        path: "/dashboard/icon.svg",
        mime: "image/svg+xml",
        body: include_bytes!("../dashboard/icon.svg"),
    },
];

/// The page loads only its own files and talks only to this node; no
/// inline script or style can run, and no other site may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Each file's entity tag, from its contents.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = blake3::hash(a.body).to_hex();
            HeaderValue::from_str(&format!("\"{}\"", &hash[..20])).expect("hex is a header value")
        })
        .collect()
});

fn serve(index: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes());
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.mime)),
        (header::ETAG, etag.clone()),
        // Revalidated every load, so a new binary's page is seen at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body).into_response()
    }
}

/// The dashboard's routes, all open.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for (index, asset) in ASSETS.iter().enumerate() {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(index, &headers) }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// Every file the page names is one the node serves, so a renamed
    /// module cannot leave the page half loaded.
    #[test]
    fn every_file_the_page_loads_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("text");
            for quote in ['"', '\''] {
                for part in text.split(quote).skip(1).step_by(2) {
                    let named = part
                        .strip_prefix("./")
                        .map(|p| format!("/dashboard/{p}"))
                        .or_else(|| part.starts_with("/dashboard/").then(|| part.to_owned()));
                    if let Some(path) = named
                        && (path.ends_with(".js")
                            || path.ends_with(".css")
                            || path.ends_with(".svg"))
                    {
                        assert!(served.contains(&path.as_str()), "{path} is not served");
                    }
                }
            }
        }
    }
}
