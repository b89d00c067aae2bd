//! Every accepted socket gives up once nothing moves: a read or write that waits while no byte
//! has gone either way for the idle time fails with `TimedOut`. This bounds a client that
//! pipelines requests and never reads the answers, and any socket hyper's own header timeout
//! (10 s for each request head, an idle keep-alive's next one included) does not cover; a
//! WebSocket stays busy through its pings. The idle time must exceed the longest a handler
//! may take without a byte moving (hyper watches the socket meanwhile): Redis commands have 2 s,
//! a JWKS fetch 10 s.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket with an idle deadline, renewed by every byte read or written.
#[derive(Debug)]
pub struct Deadline<IO> {
    io: IO,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<IO> Deadline<IO> {
    /// `io`, failing after `idle` without progress.
    pub fn new(io: IO, idle: Duration) -> Self {
        Deadline {
            io,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn progressed(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }

    /// A write's outcome: bytes written are progress, a write that waits waits on the deadline.
    fn wrote(
        &mut self,
        written: Poll<io::Result<usize>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx),
        }
    }

    /// `Pending` while the deadline has not passed (the timer wakes the task when it does).
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no progress within the idle deadline",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(written, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(written, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.waiting(cx),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Pending => self.waiting(cx),
            done => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_progress_renews_the_deadline() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut socket = Deadline::new(near, Duration::from_secs(5));
        let mut buf = [0u8; 8];
        tokio::time::sleep(Duration::from_secs(4)).await;
        far.write_all(b"hi").await.expect("write");
        assert_eq!(socket.read(&mut buf).await.expect("read"), 2);
        // 4 s more: within the renewed deadline.
        tokio::time::sleep(Duration::from_secs(4)).await;
        far.write_all(b"!").await.expect("write");
        assert_eq!(socket.read(&mut buf).await.expect("read"), 1);
        let silent = socket.read(&mut buf).await;
        assert_eq!(silent.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_stalls_writes_until_the_deadline() {
        let (near, _far) = tokio::io::duplex(16);
        let mut socket = Deadline::new(near, Duration::from_secs(5));
        let stalled = socket.write_all(&[0u8; 1024]).await;
        assert_eq!(stalled.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }
}
