//! What both example clients need: connecting with a token, and reading binary messages.

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url` with the token (and device id) in headers, as handsets do.
pub async fn connect(url: &str, token: &str, device: Option<&str>) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("token", HeaderValue::from_str(token)?);
    if let Some(device) = device {
        request
            .headers_mut()
            .insert("device_id", HeaderValue::from_str(device)?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    println!("connected to {url}");
    Ok(ws)
}

/// The next binary message, or `None` once the router has closed (its close frame is printed).
/// Cancel-safe.
pub async fn next_binary(ws: &mut Ws) -> anyhow::Result<Option<Bytes>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(Some(bytes)),
            Some(Ok(Message::Close(frame))) => {
                println!("closed by the router: {frame:?}");
                return Ok(None);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(None),
        }
    }
}
