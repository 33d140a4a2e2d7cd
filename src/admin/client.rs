//! A minimal client of the admin interface, for `ringway reload`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// POSTs to `path` on the admin base URL (`http://host:port`) with `token` as bearer token if
/// given; returns status and body text.
pub async fn post(base: &str, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
    let authority = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if let Some(token) = token {
        let v = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the admin token is not a valid header value".to_string())?;
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
