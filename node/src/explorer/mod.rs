//! The block explorer (placeholder while it is built).
use http::StatusCode;
use jsonrpsee::server::HttpResponse;

pub async fn serve(_front: &crate::http::Front, _path: &str, _query: &str) -> HttpResponse {
    crate::http::text(StatusCode::NOT_FOUND, "explorer")
}
