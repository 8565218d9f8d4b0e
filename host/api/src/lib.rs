//! `p2pc-api`: the gateway. One versioned HTTP API (`/v1`) that every
//! client uses, `p2pctl` included, served by a running node on loopback
//! (`[api] listen`, default `127.0.0.1:7420`) and on the Unix socket
//! `<data_dir>/api.sock`, with its OpenAPI 3.1 document generated from the
//! route code at `/v1/openapi.json`; and [`Client`], the typed client
//! `p2pctl` and the tests use.
//!
//! It is not a node: it reaches the node only through
//! [`p2pc_node::Handle`], and never touches the swarm, a wasmtime store or
//! the database directly.
//!
//! Every `/v1` route needs the node's token (`<data_dir>/api.token`), as
//! `Authorization: Bearer <token>` or, for a browser's WebSocket, as a
//! `bearer.<token>` item of `Sec-WebSocket-Protocol`. `/healthz` and
//! `/v1/openapi.json` are open, and so is the dashboard at `/` (its files
//! only: the page sends the token on every call it makes). Errors are
//! RFC 9457 problem details.

#![deny(missing_docs)]

mod client;
mod dashboard;
pub mod events;
mod extract;
pub mod fuzzing;
mod issuer;
mod problem;
mod routes;
mod serve;
pub mod types;

pub use client::{Body as ClientBody, Client, ClientError, Endpoint, EventStream};
pub use problem::{PROBLEM_JSON, Problem, Resume};
pub use serve::{Gateway, Settings, router, serve, serve_with, url_of};

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "p2pc node API",
        description = "The HTTP API of a p2pc node: blobs, bundles, jobs, ledger and market. \
            Every /v1 route needs the node's token as a bearer token (`p2pctl node token`).",
        license(name = "Apache-2.0"),
    ),
    security(("bearer" = [])),
    modifiers(&Bearer),
    tags(
        (name = "node", description = "The node itself"),
        (name = "blobs", description = "Content-addressed blobs, streamed"),
        (name = "bundles", description = "Signed bundles"),
        (name = "jobs", description = "Jobs and their tasks"),
        (name = "ledger", description = "Credits, escrows and transfers"),
        (name = "market", description = "Offers, prices and reputation"),
        (name = "events", description = "The event stream, over WebSocket or NDJSON"),
        (name = "issuer", description = "The issuer service: payment webhooks, payments, payouts"),
    )
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of every `/v1` route, as `/v1/openapi.json`
/// serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = ApiDoc::openapi();
    api.merge(routes::json_routes().split_for_parts().1);
    api.merge(routes::long_routes().split_for_parts().1);
    api.merge(routes::stream_routes().split_for_parts().1);
    api.merge(routes::metrics_routes().split_for_parts().1);
    api.merge(issuer::routes().split_for_parts().1);
    api.merge(issuer::open_routes().split_for_parts().1);
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}

/// The document as the committed `docs/api/openapi.json` holds it.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    /// The committed document is the one the code generates. Run with
    /// `P2PC_BLESS=1` to rewrite it after changing a route.
    #[test]
    fn the_committed_openapi_document_matches_the_routes() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json");
        let generated = super::openapi_json();
        if std::env::var_os("P2PC_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("docs/api");
            std::fs::write(&path, &generated).expect("write the document");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/api/openapi.json differs from the routes; regenerate it with \
             `P2PC_BLESS=1 cargo test -p p2pc-api the_committed_openapi`"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc = super::openapi();
        assert!(doc.openapi == utoipa::openapi::OpenApiVersion::Version31);
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            // Prometheus scrapes /metrics by convention; all else is versioned.
            assert!(path.starts_with("/v1/") || path == "/metrics", "{path}");
            let ops = [&item.get, &item.post, &item.put, &item.delete];
            for op in ops.into_iter().flatten() {
                operations += 1;
                assert!(
                    op.responses.responses.contains_key("401"),
                    "{path}: no 401 documented"
                );
            }
        }
        assert!(operations >= 30, "{operations} operations");
    }
}
