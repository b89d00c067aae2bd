//! [`Connection`]: the one owner of a WebSocket and its buffers.
//!
//! It hands out whole inbound messages and sends whole frames, each write bounded by a timeout,
//! so a peer that stops reading can only stall its own task, and only for that long.

use super::fragments::FragmentLimit;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use thiserror::Error;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// Longest wait for the peer's answer to our close frame.
pub const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// The WebSocket of one upgraded HTTP connection.
pub type Socket = WebSocketStream<FragmentLimit<TokioIo<Upgraded>>>;

/// One message from the peer, reduced to what the router cares about.
#[derive(Debug)]
pub enum Inbound {
    /// A binary message.
    Binary(Bytes),
    /// A text message (never valid here).
    Text,
    /// A ping, pong or raw frame: proof of life only.
    Control,
    /// A message over the size limit.
    TooLarge,
    /// The peer closed, or the connection broke.
    Closed,
}

/// A write that did not complete.
#[derive(Debug, Error)]
pub enum SendError {
    /// The peer did not take the bytes in time.
    #[error("write timed out")]
    Timeout,
    /// The socket failed.
    #[error("write failed: {0}")]
    Socket(#[from] WsError),
}

/// Owns one WebSocket.
pub struct Connection {
    ws: Socket,
    write_timeout: Duration,
}

impl Connection {
    /// Wraps an upgraded socket; every write must complete within `write_timeout`.
    pub fn new(ws: Socket, write_timeout: Duration) -> Self {
        Connection { ws, write_timeout }
    }

    /// The next message. Cancel-safe.
    pub async fn read(&mut self) -> Inbound {
        match self.ws.next().await {
            Some(Ok(Message::Binary(bytes))) => Inbound::Binary(bytes),
            Some(Ok(Message::Text(_))) => Inbound::Text,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Inbound::Control,
            Some(Err(WsError::Capacity(_))) => Inbound::TooLarge,
            Some(Ok(Message::Close(_)) | Err(_)) | None => Inbound::Closed,
        }
    }

    /// Sends one binary frame.
    pub async fn send(&mut self, frame: Bytes) -> Result<(), SendError> {
        within(self.write_timeout, self.ws.send(Message::Binary(frame))).await
    }

    /// Queues one binary frame, written once the queue holds a few KiB or at the next
    /// [`Connection::flush`] or send: several frames waiting for one connection go out in one
    /// write.
    pub async fn feed(&mut self, frame: Bytes) -> Result<(), SendError> {
        within(self.write_timeout, self.ws.feed(Message::Binary(frame))).await
    }

    /// Sends a ping.
    pub async fn ping(&mut self) -> Result<(), SendError> {
        within(
            self.write_timeout,
            self.ws.send(Message::Ping(Bytes::new())),
        )
        .await
    }

    /// Writes out anything queued (such as the automatic answer to a ping).
    pub async fn flush(&mut self) -> Result<(), SendError> {
        within(self.write_timeout, self.ws.flush()).await
    }

    /// Closes with `code`, then reads until the peer's own close (for at most [`CLOSE_LINGER`])
    /// so that unread input does not turn the close into a reset that loses the frame.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let deadline = tokio::time::Instant::now() + self.write_timeout.min(CLOSE_LINGER);
        let closing = async {
            if self.ws.close(Some(frame)).await.is_err() {
                return;
            }
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout_at(deadline, closing).await;
    }
}

async fn within<T>(
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, WsError>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SendError::Timeout),
    }
}
