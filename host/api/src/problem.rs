//! Errors as RFC 9457 problem details: `type`, `title`, `status` and a
//! `detail` a person can act on, served as `application/problem+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One problem, as every error response carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status
    /// says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's short phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, and what to do about it.
    pub detail: String,
    /// On a 410 from `/v1/events`: where the stream stands now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// Where the event stream stands, for a client whose resume point is
/// gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resume {
    /// The stream's epoch now.
    pub epoch: String,
    /// The oldest event kept.
    pub oldest: u64,
    /// The newest event published.
    pub newest: u64,
}

/// The problem type of a request the account cannot pay for (402).
pub const INSUFFICIENT_CREDITS: &str = "urn:p2pc:problem:insufficient-credits";

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            resume: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: what it names does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 500: the node failed.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.detail, self.status, self.title)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl From<p2pc_node::Error> for Problem {
    fn from(e: p2pc_node::Error) -> Self {
        use p2pc_node::Error as E;
        let status = match &e {
            E::NoSuchJob(_) | E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Store(p2pc_store::Error::NotFound(_)) => StatusCode::NOT_FOUND,
            E::Control(_) | E::Config(_) => StatusCode::BAD_REQUEST,
            // The job was understood but cannot be done as asked: no
            // worker, no budget, a ledger that refuses.
            E::Submit(_) | E::Ledger(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::InsufficientCredits(_) => StatusCode::PAYMENT_REQUIRED,
            E::Webhook(w) => {
                use p2pc_payments::WebhookError as W;
                match w {
                    W::MissingSignature(_)
                    | W::MalformedSignature(_)
                    | W::Stale { .. }
                    | W::BadSignature => StatusCode::UNAUTHORIZED,
                    W::Malformed(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                }
            }
            E::Fetch(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut p = Problem::new(status, e.to_string());
        if matches!(e, E::InsufficientCredits(_)) {
            p.kind = INSUFFICIENT_CREDITS.into();
        }
        p
    }
}

impl From<p2pc_store::Error> for Problem {
    fn from(e: p2pc_store::Error) -> Self {
        Problem::from(p2pc_node::Error::from(e))
    }
}

/// A result whose error is a [`Problem`].
pub type ApiResult<T> = Result<T, Problem>;
