//! A WebSocket message must be finished in time: [`FragmentLimit`] watches the frame headers a
//! client sends, below the WebSocket layer (which keeps an unfinished message to itself), and
//! fails the socket's reads when a message fragmented over several frames is still unfinished
//! `limit` after its first fragment. Without it a client could send one large fragment that is
//! never continued, answer pings, and pin its buffer for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Where the reader is in the client's stream of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a frame header: `have` of its bytes so far.
    Header { have: usize },
    /// Skipping a frame's payload: `left` bytes more.
    Payload { left: u64 },
}

/// What a frame header says of the message it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// A header not complete yet: this many bytes in all.
    Needs(usize),
    /// Complete: the payload length, and what the frame does to the message in progress.
    Done { payload: u64, effect: Effect },
}

/// What a frame does to the message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Starts a fragmented message (a text or binary frame without FIN).
    Opens,
    /// Finishes it (a continuation frame with FIN).
    Closes,
    /// Nothing (a whole message, a control frame, a middle fragment).
    None,
}

/// Reads the header in `bytes` (the first `bytes.len()` bytes of a frame header).
fn header(bytes: &[u8]) -> Header {
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
        return Header::Needs(2);
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let masked = if second & 0x80 != 0 { 4 } else { 0 };
    let total = 2 + extended + masked;
    if bytes.len() < total {
        return Header::Needs(total);
    }
    let payload = match extended {
        0 => u64::from(second & 0x7f),
        n => bytes[2..2 + n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    };
    let fin = first & 0x80 != 0;
    let effect = match (first & 0x0f, fin) {
        (0x1 | 0x2, false) => Effect::Opens,
        (0x0, true) => Effect::Closes,
        _ => Effect::None,
    };
    Header::Done { payload, effect }
}

/// A socket whose fragmented messages must be finished within `limit`.
#[derive(Debug)]
pub struct FragmentLimit<IO> {
    io: IO,
    limit: Duration,
    position: Position,
    /// The header being read (14 bytes at most).
    head: [u8; 14],
    /// Runs out when the message in progress is overdue; only while one is (boxed: most
    /// connections never fragment).
    overdue: Option<Pin<Box<Sleep>>>,
}

impl<IO> FragmentLimit<IO> {
    /// `io`, whose fragmented messages must be finished within `limit` of their first fragment.
    pub fn new(io: IO, limit: Duration) -> Self {
        FragmentLimit {
            io,
            limit,
            position: Position::Header { have: 0 },
            head: [0; 14],
            overdue: None,
        }
    }

    /// Follows the frames in `bytes`, just read.
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.position {
                Position::Payload { left } => {
                    let skip = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[skip..];
                    let left = left - skip as u64;
                    self.position = match left {
                        0 => Position::Header { have: 0 },
                        left => Position::Payload { left },
                    };
                }
                Position::Header { have } => {
                    let need = match header(&self.head[..have]) {
                        Header::Needs(n) => n,
                        Header::Done { .. } => have,
                    };
                    let take = (need - have).min(bytes.len());
                    self.head[have..have + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    let have = have + take;
                    self.position = match header(&self.head[..have]) {
                        Header::Needs(_) => Position::Header { have },
                        Header::Done { payload, effect } => {
                            self.follow(effect);
                            match payload {
                                0 => Position::Header { have: 0 },
                                left => Position::Payload { left },
                            }
                        }
                    };
                }
            }
        }
    }

    fn follow(&mut self, effect: Effect) {
        match effect {
            Effect::Opens => {
                self.overdue = Some(Box::pin(tokio::time::sleep(self.limit)));
            }
            Effect::Closes => self.overdue = None,
            Effect::None => {}
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FragmentLimit<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(overdue) = self.overdue.as_mut() {
            if overdue.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a fragmented message was left unfinished",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let this = &mut *self;
            this.observe(&buf.filled()[before..]);
        }
        read
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FragmentLimit<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN, opcode, masked, `len` payload bytes.
    fn frame(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
        let mut bytes = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => bytes.push(0x80 | len as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend(std::iter::repeat_n(0u8, len));
        bytes
    }

    fn watched(bytes: &[u8], chunk: usize) -> FragmentLimit<()> {
        let mut watch = FragmentLimit::new((), Duration::from_secs(1));
        for piece in bytes.chunks(chunk) {
            watch.observe(piece);
        }
        watch
    }

    #[tokio::test]
    async fn an_unfinished_fragmented_message_is_watched_until_its_last_fragment() {
        for chunk in [1, 3, 7, 1000, 100_000] {
            let mut stream = frame(true, 0x2, 10);
            stream.extend(frame(false, 0x2, 64_000));
            assert!(watched(&stream, chunk).overdue.is_some(), "chunk {chunk}");
            stream.extend(frame(true, 0x9, 4));
            stream.extend(frame(false, 0x0, 300));
            assert!(
                watched(&stream, chunk).overdue.is_some(),
                "a ping and a middle fragment"
            );
            stream.extend(frame(true, 0x0, 70_000));
            let watch = watched(&stream, chunk);
            assert!(watch.overdue.is_none(), "finished (chunk {chunk})");
            assert_eq!(watch.position, Position::Header { have: 0 });
        }
    }

    #[tokio::test]
    async fn any_bytes_in_any_pieces_are_followed_without_panicking() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            let len = (next() % 96) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            watched(&bytes, (next() % 9 + 1) as usize);
        }
    }

    #[tokio::test]
    async fn whole_messages_are_never_watched() {
        let mut stream = Vec::new();
        for len in [0, 125, 126, 65_535, 65_536] {
            stream.extend(frame(true, 0x2, len));
            stream.extend(frame(true, 0xA, 0));
        }
        assert!(watched(&stream, 5).overdue.is_none());
    }
}
