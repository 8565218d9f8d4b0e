//! The issuer's routes (`/v1/issuer/...`) and an operator's payout routes
//! (`/v1/payouts`). The webhook route is the one `/v1` route without the
//! bearer token: a payment provider cannot hold the node's token, and the
//! webhook's own signature, checked before its body is read, is its
//! authentication.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use p2pc_node::api::{
    IssuerStatus, PaymentView, PayoutRequestBody, PayoutUpdate, PayoutView, WebhookReceipt,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::extract::{Json, Path, RawBody};
use crate::problem::{ApiResult, Problem};
use crate::routes::AppState;
use crate::types::RawBytes;

/// The largest webhook body taken: providers' events are a few KiB.
pub(crate) const MAX_WEBHOOK: usize = 256 << 10;
/// Webhooks answered at once, apart from the other routes' permits.
pub(crate) const WEBHOOK_CONCURRENCY: usize = 64;
/// How long a webhook's sender has to send its body.
pub(crate) const WEBHOOK_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The webhook route: open, its body bounded by [`MAX_WEBHOOK`].
pub(crate) fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issuer_webhook))
}

/// The issuer's and the operator's routes behind the token.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issuer_status))
        .routes(routes!(issuer_payments))
        .routes(routes!(issuer_payouts))
        .routes(routes!(issuer_payout_update))
        .routes(routes!(payout_request, payout_list))
}

/// A payment provider's signed webhook. No bearer token: the provider's
/// signature header (`Stripe-Signature` for `stripe`) is checked over the
/// raw body before anything in it is read. A repeated event is answered
/// as the first was and does nothing again.
#[utoipa::path(post, path = "/v1/issuer/webhooks/{provider}", tag = "issuer",
    security(()),
    params(("provider" = String, Path, description = "The provider: `stripe`")),
    request_body(content = RawBytes, content_type = "application/json"),
    responses((status = 200, body = WebhookReceipt),
        (status = 400, description = "The body is not an event", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No signature, a wrong or malformed one, or a timestamp outside the tolerance", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This node runs no issuer, or not for that provider", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A signed event the issuer cannot act on: no account, a malformed account, a currency with no rate", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The node could not record the event; nothing was done, send it again", body = Problem, content_type = "application/problem+json")))]
async fn issuer_webhook(
    State(s): State<AppState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<WebhookReceipt>> {
    let header = p2pc_payments::signature_header(&provider).ok_or_else(|| {
        Problem::not_found(format!("{provider:?} is not a payment provider p2pc knows"))
    })?;
    let signature = match headers.get(header) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                format!("the {header} header is not text"),
            )
        })?),
    };
    Ok(Json(
        s.node.issuer_webhook(&provider, signature, &body).await?,
    ))
}

/// The issuer service's summary: minted, clearing, debts, payouts.
#[utoipa::path(get, path = "/v1/issuer", tag = "issuer",
    responses((status = 200, body = IssuerStatus), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This node runs no issuer", body = Problem, content_type = "application/problem+json")))]
async fn issuer_status(State(s): State<AppState>) -> ApiResult<Json<IssuerStatus>> {
    Ok(Json(s.node.issuer_status().await?))
}

/// Every payment the issuer recorded, by payment id.
#[utoipa::path(get, path = "/v1/issuer/payments", tag = "issuer",
    responses((status = 200, body = Vec<PaymentView>), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This node runs no issuer", body = Problem, content_type = "application/problem+json")))]
async fn issuer_payments(State(s): State<AppState>) -> ApiResult<Json<Vec<PaymentView>>> {
    Ok(Json(s.node.issuer_payments().await?))
}

/// Every payout the issuer recorded, by id.
#[utoipa::path(get, path = "/v1/issuer/payouts", tag = "issuer",
    responses((status = 200, body = Vec<PayoutView>), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "This node runs no issuer", body = Problem, content_type = "application/problem+json")))]
async fn issuer_payouts(State(s): State<AppState>) -> ApiResult<Json<Vec<PayoutView>>> {
    Ok(Json(s.node.issuer_payouts().await?))
}

/// Mark a requested payout sent (with the provider's reference) or failed
/// (its credits are transferred back to the operator).
#[utoipa::path(post, path = "/v1/issuer/payouts/{id}", tag = "issuer",
    params(("id" = String, Path, description = "The payout's id (its transfer's op id, hex)")),
    request_body = PayoutUpdate,
    responses((status = 200, body = PayoutView),
        (status = 400, description = "Not a payout id, or the payout is no longer requested", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn issuer_payout_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(update): Json<PayoutUpdate>,
) -> ApiResult<Json<PayoutView>> {
    Ok(Json(s.node.issuer_update_payout(&id, update).await?))
}

/// Ask the network's issuer (`[payouts] issuer_peer`) to pay out some of
/// this node's credits: they move to the issuer in a signed transfer, and
/// the issuer records the payout.
#[utoipa::path(post, path = "/v1/payouts", tag = "ledger", request_body = PayoutRequestBody,
    responses((status = 201, body = PayoutView),
        (status = 400, description = "A zero amount, a bad destination, no issuer configured, or no ledger", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Too few credits (`urn:p2pc:problem:insufficient-credits`)",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn payout_request(
    State(s): State<AppState>,
    Json(body): Json<PayoutRequestBody>,
) -> ApiResult<(StatusCode, Json<PayoutView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.node.request_payout(body).await?),
    ))
}

/// This node's payout requests, each not yet final asked about again.
#[utoipa::path(get, path = "/v1/payouts", tag = "ledger",
    responses((status = 200, body = Vec<PayoutView>), (status = 400, description = "No ledger", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn payout_list(State(s): State<AppState>) -> ApiResult<Json<Vec<PayoutView>>> {
    Ok(Json(s.node.payouts().await?))
}
