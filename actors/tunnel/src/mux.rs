//! One tunnel session: streams multiplexed over a WebSocket, both ends the same code.
//!
//! [`Session::open`] (the server) starts a stream and returns its local end, an in-memory duplex
//! pipe; [`run`] drives the WebSocket: it writes the frames every stream queues, pings, and hands
//! incoming frames to their stream. An incoming `OPEN` (the agent) is given to the session's
//! [`Opener`], whose connection is then pumped the same way.

use crate::frame::{Frame, FrameError, Kind};
use crate::{DEAD_AFTER, MAX_DATA, PING_EVERY, STREAM_QUEUE};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A byte stream a tunnel stream is connected to.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Connects an incoming `OPEN` (its target) to a local byte stream.
pub type Opener =
    Arc<dyn Fn(String) -> BoxFuture<'static, std::io::Result<Box<dyn Io>>> + Send + Sync>;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The WebSocket failed.
    #[error("tunnel websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The peer sent something that is not a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer sent a text message.
    #[error("tunnel peer sent a text message; only binary frames are allowed")]
    Text,
    /// Nothing arrived for too long.
    #[error("tunnel peer silent for {0:?}; considering the connection dead")]
    Dead(std::time::Duration),
}

/// What a stream's pump receives from the peer.
#[derive(Debug)]
enum Inbound {
    Data(Bytes),
    Close,
    Reset(String),
}

/// One side of a tunnel session.
#[derive(Debug)]
pub struct Session {
    out: mpsc::Sender<Message>,
    streams: Mutex<HashMap<u32, mpsc::Sender<Inbound>>>,
    next: AtomicU32,
    done: CancellationToken,
}

impl Session {
    /// A new session and the receiver [`run`] writes from.
    pub fn new() -> (Arc<Session>, mpsc::Receiver<Message>) {
        let (out, rx) = mpsc::channel(STREAM_QUEUE);
        (
            Arc::new(Session {
                out,
                streams: Mutex::new(HashMap::new()),
                next: AtomicU32::new(1),
                done: CancellationToken::new(),
            }),
            rx,
        )
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.done.is_cancelled()
    }

    /// Fires when the session ends.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.done.cancelled()
    }

    /// End the session (its [`run`] returns; every stream is reset).
    pub fn close(&self) {
        self.done.cancel();
    }

    /// Number of open streams.
    pub fn streams(&self) -> usize {
        self.streams.lock().len()
    }

    /// Open a stream to `target` on the peer; the returned pipe is its local end.
    pub async fn open(self: &Arc<Self>, target: &str) -> std::io::Result<DuplexStream> {
        if self.is_closed() {
            return Err(not_connected());
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.streams.lock().insert(id, tx);
        let open = Frame::new(Kind::Open, id, target.to_owned());
        if self.send(open).await.is_err() {
            self.streams.lock().remove(&id);
            return Err(not_connected());
        }
        let (local, remote) = tokio::io::duplex(2 * MAX_DATA);
        tokio::spawn(pump(self.clone(), id, Box::new(remote), rx));
        Ok(local)
    }

    async fn send(&self, f: Frame) -> Result<(), ()> {
        self.out
            .send(Message::Binary(f.encode()))
            .await
            .map_err(|_| ())
    }

    /// Hand an incoming frame to its stream.
    async fn dispatch(self: &Arc<Self>, f: Frame, opener: Option<&Opener>) {
        match f.kind {
            Kind::Open => {
                let Some(opener) = opener.cloned() else {
                    let _ = self
                        .send(Frame::new(
                            Kind::Reset,
                            f.stream,
                            "this side accepts no streams",
                        ))
                        .await;
                    return;
                };
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                self.streams.lock().insert(f.stream, tx);
                let target = String::from_utf8_lossy(&f.payload).into_owned();
                let session = self.clone();
                tokio::spawn(async move {
                    match opener(target.clone()).await {
                        Ok(io) => pump(session, f.stream, io, rx).await,
                        Err(e) => {
                            tracing::debug!(stream = f.stream, %target, error = %e, "tunnel open failed");
                            session.streams.lock().remove(&f.stream);
                            let reason = format!("cannot connect to {target}: {e}");
                            let _ = session
                                .send(Frame::new(Kind::Reset, f.stream, reason))
                                .await;
                        }
                    }
                });
            }
            kind => {
                let tx = self.streams.lock().get(&f.stream).cloned();
                let Some(tx) = tx else { return };
                let msg = match kind {
                    Kind::Data => Inbound::Data(f.payload),
                    Kind::Close => Inbound::Close,
                    _ => Inbound::Reset(String::from_utf8_lossy(&f.payload).into_owned()),
                };
                let reset = matches!(msg, Inbound::Reset(_));
                if tx.send(msg).await.is_err() || reset {
                    self.streams.lock().remove(&f.stream);
                }
            }
        }
    }
}

fn not_connected() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the tunnel session has ended",
    )
}

/// Copy between a local byte stream and the peer's stream `id` until both halves are closed or
/// either side resets.
async fn pump(session: Arc<Session>, id: u32, io: Box<dyn Io>, mut rx: mpsc::Receiver<Inbound>) {
    let (mut r, mut w) = tokio::io::split(io);
    let abort = CancellationToken::new();
    let up = async {
        let mut buf = vec![0u8; MAX_DATA];
        loop {
            let n = tokio::select! {
                () = abort.cancelled() => return,
                n = r.read(&mut buf) => n,
            };
            let frame = match n {
                Ok(0) => Frame::new(Kind::Close, id, Bytes::new()),
                Ok(n) => Frame::new(Kind::Data, id, Bytes::copy_from_slice(&buf[..n])),
                Err(e) => {
                    abort.cancel();
                    Frame::new(Kind::Reset, id, e.to_string())
                }
            };
            let last = frame.kind != Kind::Data;
            if session.send(frame).await.is_err() {
                abort.cancel();
                return;
            }
            if last {
                return;
            }
        }
    };
    let down = async {
        loop {
            let msg = tokio::select! {
                () = abort.cancelled() => return,
                m = rx.recv() => m,
            };
            match msg {
                Some(Inbound::Data(b)) => {
                    if let Err(e) = w.write_all(&b).await {
                        let _ = session
                            .send(Frame::new(Kind::Reset, id, e.to_string()))
                            .await;
                        abort.cancel();
                        return;
                    }
                }
                Some(Inbound::Close) => {
                    let _ = w.shutdown().await;
                    return;
                }
                Some(Inbound::Reset(reason)) => {
                    tracing::debug!(stream = id, %reason, "tunnel stream reset by the peer");
                    abort.cancel();
                    return;
                }
                None => {
                    abort.cancel();
                    return;
                }
            }
        }
    };
    futures::join!(up, down);
    session.streams.lock().remove(&id);
}

/// Drive a session over `ws` until it ends; `opener` accepts the peer's `OPEN`s (agent side).
pub async fn run<S>(
    ws: WebSocketStream<S>,
    session: Arc<Session>,
    mut out: mpsc::Receiver<Message>,
    opener: Option<Opener>,
) -> Result<(), SessionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut sink, mut stream) = ws.split();
    let writer = async {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                m = out.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = ping.tick() => Message::Ping(Bytes::new()),
            };
            sink.send(msg).await?;
        }
        Ok::<(), SessionError>(())
    };
    let reader = async {
        loop {
            let next = tokio::time::timeout(DEAD_AFTER, stream.next())
                .await
                .map_err(|_| SessionError::Dead(DEAD_AFTER))?;
            match next {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => {
                    let f = Frame::decode(b)?;
                    session.dispatch(f, opener.as_ref()).await;
                }
                Some(Ok(Message::Text(_))) => return Err(SessionError::Text),
                Some(Ok(_)) => {}
            }
        }
    };
    let result = tokio::select! {
        r = writer => r,
        r = reader => r,
        () = session.done.cancelled() => Ok(()),
    };
    session.done.cancel();
    session.streams.lock().clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// Two sessions over an in-memory WebSocket; the "agent" opens streams to an echo service.
    async fn pair() -> Arc<Session> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let ws_server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let ws_agent = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let (server, server_rx) = Session::new();
        let (agent, agent_rx) = Session::new();
        let opener: Opener = Arc::new(|target: String| {
            Box::pin(async move {
                if target != "echo" {
                    return Err(std::io::Error::other("no such target"));
                }
                let (x, mut y) = tokio::io::duplex(1024);
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(&mut y);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
                Ok(Box::new(x) as Box<dyn Io>)
            })
        });
        tokio::spawn(run(ws_server, server.clone(), server_rx, None));
        tokio::spawn(run(ws_agent, agent, agent_rx, Some(opener)));
        server
    }

    #[tokio::test]
    async fn streams_echo_and_half_close() {
        let server = pair().await;
        let mut handles = Vec::new();
        for i in 0..5u8 {
            let server = server.clone();
            handles.push(tokio::spawn(async move {
                let mut s = server.open("echo").await.expect("open");
                let data = vec![i; 200_000];
                let (mut r, mut w) = tokio::io::split(&mut s);
                let write = async {
                    w.write_all(&data).await.expect("write");
                    w.shutdown().await.expect("shutdown");
                };
                let mut got = Vec::new();
                let read = r.read_to_end(&mut got);
                let ((), n) = tokio::join!(write, read);
                n.expect("read");
                assert_eq!(got, data);
            }));
        }
        for h in handles {
            h.await.expect("stream");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(server.streams(), 0);
    }

    #[tokio::test]
    async fn a_refused_open_resets_the_stream() {
        let server = pair().await;
        let mut s = server.open("nothing").await.expect("open");
        let mut got = Vec::new();
        let n = s.read_to_end(&mut got).await;
        assert!(n.is_err() || got.is_empty());
    }

    #[tokio::test]
    async fn a_closed_session_refuses_streams() {
        let server = pair().await;
        server.close();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(server.open("echo").await.is_err());
    }
}
